"""ChatOpenAI has what the text provider has: typed errors that keep the partial message
(tool-call fragments included), time limits per phase, retries before the first chunk
only, and the response closed the moment the consumer stops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
from helpers import collect, invoke_of, is_sync, stream_of, take
from servers.scripted import Reply, Reset, ScriptedServer, Send, Stall, error, sse
from servers.scripted_chat import chat_completion, chat_frames, chat_stream, tool_delta

from lmstream import (
    APIConnectionError,
    APITimeoutError,
    BadRequestError,
    GenerationError,
    ProtocolError,
    ServerError,
)
from lmstream.providers.openai_chat import ChatOpenAI

Make = Callable[..., ChatOpenAI]


def _error(chat: ChatOpenAI, flavour: str, how: str = "stream") -> GenerationError:
    def run() -> object:
        if how == "stream":
            return collect(stream_of(chat, flavour, "hi"))
        return invoke_of(chat, flavour, "hi")

    with pytest.raises(GenerationError) as info:
        run()
    return info.value


def test_an_in_band_error_mid_stream_keeps_the_partial_message(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    head = b"".join(chat_frames(["par", "tial", {"tool_calls": [tool_delta(0, "f", '{"a"',
                                                                     id="c1")]}],
                                finish_reason=None, usage=None, done=False))  # fmt: skip
    tail = sse({"error": {"message": "overloaded", "code": 503}}, done=False)
    scripted.script(Reply(steps=[Send(head), Send(tail)]))
    exc = _error(make_chat(), flavour)
    assert isinstance(exc, ServerError) and "overloaded" in str(exc)
    assert exc.partial_text == "partial"
    assert exc.partial_message.text == "partial"
    assert exc.partial_message.tool_call_chunks[0]["name"] == "f"
    assert len(scripted.requests) == 1  # chunks were handed on: no retry


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        (b'data: {"choices": [{"delta": {"content": 5}, "index": 0}]}\n\n', "not a string"),
        (b'data: {"choices": [{"delta": {"tool_calls": [{"index": -1}]}, "index": 0}]}\n\n',
         "bad index"),
        (b'data: {"choices": [{"delta": [], "index": 0}]}\n\n', "not an object"),
        (b"data: [DONE]\n\n", "without a finish_reason"),
        (b'data: {"choi', "middle of an event"),
    ],
)  # fmt: skip
def test_malformed_or_cut_streams_are_protocol_errors(
    scripted: ScriptedServer, make_chat: Make, flavour: str, frames: bytes, expected: str
) -> None:
    head = b"".join(chat_frames(["a"], finish_reason=None, usage=None, done=False))
    scripted.script(Reply(steps=[Send(head + frames)]))
    exc = _error(make_chat(), flavour)
    assert isinstance(exc, ProtocolError) and expected in str(exc)
    assert exc.partial_message.text == "a"


@pytest.mark.parametrize("rst", [True, False])
def test_a_connection_dropped_mid_stream_is_a_connection_error(
    scripted: ScriptedServer, make_chat: Make, flavour: str, rst: bool
) -> None:
    scripted.script(chat_stream(["a", "b"], done=False, finish_reason=None, then=[Reset(rst)]))
    exc = _error(make_chat(), flavour)
    assert isinstance(exc, APIConnectionError) and exc.partial_message.text == "ab"
    assert len(scripted.requests) == 1


@pytest.mark.parametrize("how", ["stream", "invoke"])
def test_no_first_chunk_in_time(
    scripted: ScriptedServer, make_chat: Make, flavour: str, how: str
) -> None:
    scripted.script(Reply(steps=[Stall()]))
    exc = _error(make_chat(first_token_timeout=0.3), flavour, how)
    assert isinstance(exc, APITimeoutError) and exc.phase == "first_token"
    assert scripted.wait(lambda: scripted.requests[0].disconnected is not None)


def test_a_stall_after_the_first_chunk_is_idle(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    scripted.script(chat_stream(["a"], done=False, finish_reason=None, then=[Stall()]))
    exc = _error(make_chat(idle_timeout=0.3), flavour)
    assert isinstance(exc, APITimeoutError) and exc.phase == "idle"
    assert exc.partial_message.text == "a"


def _ok(how: str) -> Reply:
    return chat_stream(["fine"]) if how == "stream" else chat_completion("fine")


@pytest.mark.parametrize("how", ["stream", "invoke"])
@pytest.mark.parametrize(
    "failure", [error(429, headers={"retry-after": "0"}), error(503), Reply(steps=[Reset()])],
    ids=["429", "503", "reset"],
)  # fmt: skip
def test_transient_failures_are_retried(
    scripted: ScriptedServer, make_chat: Make, flavour: str, how: str, failure: Reply
) -> None:
    scripted.script(failure, failure, _ok(how))
    chat = make_chat(max_retries=2)
    if how == "stream":
        assert "".join(c.text for c in collect(stream_of(chat, flavour, "hi"))) == "fine"
    else:
        assert invoke_of(chat, flavour, "hi").text == "fine"
    assert len(scripted.requests) == 3


def test_client_errors_are_not_retried(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    scripted.script(error(400, "bad messages", type="invalid_request_error"), _ok("stream"))
    assert isinstance(_error(make_chat(max_retries=3), flavour), BadRequestError)
    assert len(scripted.requests) == 1


def test_nothing_is_retried_after_the_first_chunk(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    scripted.script(chat_stream(["a"], done=False, finish_reason=None, then=[Reset()]))
    assert isinstance(_error(make_chat(max_retries=3), flavour), APIConnectionError)
    assert len(scripted.requests) == 1


def _endless() -> Reply:
    return chat_stream(["first", " second"], finish_reason=None, usage=None, done=False,
                       then=[Stall()])  # fmt: skip


def _gone(scripted: ScriptedServer) -> bool:
    return scripted.wait(lambda: scripted.requests[-1].disconnected is not None)


def test_closing_the_stream_closes_the_response(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    scripted.script(_endless())
    assert [c.text for c in take(stream_of(make_chat(), flavour, "hi"), 1)] == ["first"]
    assert _gone(scripted)
    assert scripted.requests[-1].ended is None


async def test_cancelling_the_task_closes_the_response(
    scripted: ScriptedServer, make_chat: Make
) -> None:
    scripted.script(_endless())
    chat, first = make_chat(), asyncio.Event()

    async def consume() -> None:
        async for _ in chat.astream("hi"):
            first.set()

    task = asyncio.ensure_future(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(_gone, scripted)


def test_a_stop_sequence_closes_the_response(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    scripted.script(_endless())
    chunks = collect(stream_of(make_chat(), flavour, "hi", stop=["sec"]))
    assert "".join(c.text for c in chunks) == "first "
    assert _gone(scripted)


def _many_sync(chat: ChatOpenAI, n: int) -> None:
    for _ in range(n):
        for _ in chat.stream("hi"):
            break


async def _many_async(chat: ChatOpenAI, n: int) -> None:
    for _ in range(n):
        async with contextlib.aclosing(chat.astream("hi")) as chunks:
            async for _ in chunks:
                break


def test_many_broken_streams_leave_no_connection_open(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    n = 200
    scripted.handler = lambda body: _endless()  # type: ignore[assignment,return-value]
    chat = make_chat()
    _many_sync(chat, n) if is_sync(flavour) else asyncio.run(_many_async(chat, n))
    assert len(scripted.requests) == n
    assert scripted.wait(lambda: scripted.open_connections == 0)
    assert not any(r.ended for r in scripted.requests)
