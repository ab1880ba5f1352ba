"""OpenTelemetry over HTTP: the OpenAI provider's span on every exit path, against the
scripted server: where the server is, what it answered, each time limit, cancellation."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import collect, invoke_of, stream_of, take
from opentelemetry.trace import StatusCode
from otel_support import Telemetry, installed
from servers.scripted import Reply, ScriptedServer, Send, Stall, completion, error, frames, stream
from servers.scripted_chat import chat_completion, chat_stream

from lmstream import APITimeoutError, BadRequestError
from lmstream.providers.openai import OpenAI
from lmstream.providers.openai_chat import ChatOpenAI

Make = Callable[..., OpenAI]
MakeChat = Callable[..., ChatOpenAI]
DETAILS = {"prompt_tokens_details": {"cached_tokens": 5},
           "completion_tokens_details": {"reasoning_tokens": 1}}  # fmt: skip


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    yield from installed(monkeypatch)


def _attrs(otel: Telemetry) -> dict[str, Any]:
    return dict(otel.span().attributes or {})


def test_a_finished_stream(
    otel: Telemetry, scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(stream(["Hi", " there"], usage=(7, 2)))
    llm = make_llm(model="gpt-test", top_p=0.9, seed=3)
    assert collect(stream_of(llm, flavour, "hello", max_tokens=9)) == ["Hi", " there"]
    attrs = _attrs(otel)
    port = int(scripted.url.rsplit(":", 1)[1].split("/")[0])
    assert otel.span().name == "text_completion gpt-test"
    assert (attrs["server.address"], attrs["server.port"]) == ("127.0.0.1", port)
    assert attrs["gen_ai.system"] == "openai"
    assert attrs["gen_ai.request.model"] == "gpt-test"
    assert (attrs["gen_ai.request.top_p"], attrs["gen_ai.request.seed"]) == (0.9, 3)
    assert attrs["gen_ai.request.max_tokens"] == 9
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (7, 2)
    assert attrs["lmstream.usage.estimated"] is False
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert otel.span().status.status_code is StatusCode.UNSET
    point = otel.points("gen_ai.client.operation.duration")[0]
    assert dict(point.attributes)["server.port"] == port


def test_an_error_status(
    otel: Telemetry, scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(error(400, "no such thing", type="invalid_request_error"))
    with pytest.raises(BadRequestError):
        invoke_of(make_llm(), flavour, "p")
    span = otel.span()
    attrs = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert attrs["error.type"] == "lmstream.errors.BadRequestError"
    assert attrs["http.response.status_code"] == 400
    assert attrs["lmstream.run.outcome"] == "failed"


def test_retried_errors_make_one_span(
    otel: Telemetry, scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(error(503, headers={"retry-after": "0"}), stream(["ok"]))
    assert collect(stream_of(make_llm(), flavour, "p")) == ["ok"]
    assert _attrs(otel)["lmstream.run.outcome"] == "finished"
    assert len(scripted.requests) == 2


def test_close_cancels_and_the_server_sees_it(
    otel: Telemetry, scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(stream(["a", "b", "c"], then=[Stall()], done=False))
    assert take(stream_of(make_llm(), flavour, "p"), 2) == ["a", "b"]
    span = otel.span()
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {})["lmstream.run.outcome"] == "cancelled"
    assert scripted.wait(lambda: scripted.requests[0].disconnected is not None)


def _timed_out(llm: OpenAI, flavour: str) -> APITimeoutError:
    with pytest.raises(APITimeoutError) as info:
        collect(stream_of(llm, flavour, "p"))
    return info.value


@pytest.mark.parametrize("phase", ["first_token", "idle", "total"])
def test_each_time_limit(
    otel: Telemetry, scripted: ScriptedServer, make_llm: Make, flavour: str, phase: str
) -> None:
    first, *_ = frames(["a"])
    if phase == "first_token":
        scripted.script(Reply(steps=[Stall()]))
        llm = make_llm(first_token_timeout=0.3)
    elif phase == "idle":
        scripted.script(Reply(steps=[Send(first), Stall()]))
        llm = make_llm(idle_timeout=0.3)
    else:
        scripted.script(stream(["tick"] * 1000, delay=0.02))
        llm = make_llm(timeout=0.4, idle_timeout=5)
    assert _timed_out(llm, flavour).phase == phase
    span = otel.span()
    attrs = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert attrs["error.type"] == "lmstream.errors.APITimeoutError"
    assert attrs["lmstream.timeout.phase"] == phase
    assert ("gen_ai.response.time_to_first_chunk" in attrs) == (phase != "first_token")


@pytest.mark.skipif(sys.platform != "linux", reason="a full backlog stalls connects on Linux")
def test_the_connect_limit(otel: Telemetry, flavour: str) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = [socket.socket() for _ in range(8)]
    for filler in fillers:
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
    time.sleep(0.05)
    try:
        url = f"http://127.0.0.1:{port}/v1"
        with OpenAI(base_url=url, connect_timeout=0.2, max_retries=0) as llm:
            assert _timed_out(llm, flavour).phase == "connect"
    finally:
        for filler in fillers:
            filler.close()
        server.close()
    attrs = _attrs(otel)
    assert attrs["lmstream.timeout.phase"] == "connect" and attrs["server.port"] == port


def test_task_cancellation(otel: Telemetry, scripted: ScriptedServer, make_llm: Make) -> None:
    scripted.script(stream(["a"] * 100, delay=0.05))

    async def consume() -> None:
        async for _ in make_llm().astream("p"):
            pass

    async def run() -> None:
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    span = otel.span()
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {})["lmstream.run.outcome"] == "cancelled"
    assert scripted.wait(lambda: scripted.requests[0].disconnected is not None)


def _answered(otel: Telemetry, model: str) -> dict[str, Any]:
    """The span's response attributes, checked against what the scripted server sent."""
    attrs = _attrs(otel)
    assert attrs["gen_ai.response.model"] == model != attrs["gen_ai.request.model"]
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (7, 2)
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 5
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 1
    assert "gen_ai.usage.cache_creation.input_tokens" not in attrs  # OpenAI doesn't say
    [point] = otel.points("gen_ai.client.operation.duration")
    assert dict(point.attributes)["gen_ai.response.model"] == model
    return attrs


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "invoke"])
def test_the_response_id_model_and_token_details(
    otel: Telemetry, scripted: ScriptedServer, make_llm: Make, flavour: str, streamed: bool
) -> None:
    if streamed:
        scripted.script(stream(["Hi", "!"], usage=(7, 2), usage_details=DETAILS))
        assert collect(stream_of(make_llm(model="gpt-test"), flavour, "p")) == ["Hi", "!"]
    else:
        scripted.script(completion("Hi!", usage=(7, 2), usage_details=DETAILS))
        assert invoke_of(make_llm(model="gpt-test"), flavour, "p") == "Hi!"
    attrs = _answered(otel, "scripted")
    assert attrs["gen_ai.response.id"] == "cmpl-scripted"


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "invoke"])
def test_a_chat_answer_s_id_model_and_token_details(
    otel: Telemetry, scripted: ScriptedServer, make_chat: MakeChat, flavour: str, streamed: bool
) -> None:
    chat = make_chat(model="gpt-chat")
    if streamed:
        scripted.script(chat_stream(["Hi", "!"], usage=(7, 2), usage_details=DETAILS))
        assert "".join(c.text for c in collect(stream_of(chat, flavour, "p"))) == "Hi!"
    else:
        scripted.script(chat_completion("Hi!", usage=(7, 2), usage_details=DETAILS))
        message = invoke_of(chat, flavour, "p")
        assert message.response_metadata["id"] == "chatcmpl-scripted"
    attrs = _answered(otel, "scripted-chat")
    assert attrs["gen_ai.response.id"] == "chatcmpl-scripted"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    tokens = {dict(p.attributes)["gen_ai.token.type"]: p.sum
              for p in otel.points("gen_ai.client.token.usage")}  # fmt: skip
    assert tokens == {"input": 7, "output": 2}


def _parent_of(request_headers: dict[str, str]) -> tuple[str, str]:
    version, trace_id, span_id, flags = request_headers["traceparent"].split("-")
    assert version == "00" and int(flags, 16) & 1  # sampled
    return trace_id, span_id


@pytest.mark.parametrize("kind", ["text", "chat"])
def test_the_request_carries_the_model_span_s_traceparent(
    otel: Telemetry,
    scripted: ScriptedServer,
    make_llm: Make,
    make_chat: MakeChat,
    flavour: str,
    kind: str,
) -> None:
    if kind == "text":
        scripted.script(error(503, headers={"retry-after": "0"}), stream(["ok"]))
        collect(stream_of(make_llm(), flavour, "p"))
    else:
        scripted.script(error(503, headers={"retry-after": "0"}), chat_stream(["ok"]))
        collect(stream_of(make_chat(), flavour, "p"))
    span = otel.span()
    expected = (f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")
    assert [_parent_of(r.headers) for r in scripted.requests] == [expected, expected]


def test_no_traceparent_without_a_tracer(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(stream(["ok"]))
    collect(stream_of(make_llm(), flavour, "p"))
    assert "traceparent" not in scripted.requests[0].headers


def test_no_traceparent_once_tracing_stops(
    otel: Telemetry,
    scripted: ScriptedServer,
    make_llm: Make,
    flavour: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A call left open while traced does not lend its span to a later call's request."""
    from opentelemetry import trace

    scripted.script(stream(["a", "b"], then=[Stall()], done=False), stream(["ok"]))
    first, second = make_llm(), make_llm()

    def untraced() -> None:
        monkeypatch.setattr(trace, "_TRACER_PROVIDER", None)  # metrics only from here on

    if flavour == "sync":
        left_open = first.stream("p")
        assert next(left_open) == "a"
        untraced()
        assert list(second.stream("p")) == ["ok"]
        left_open.close()
    else:

        async def run() -> None:
            left_open = first.astream("p")
            assert await anext(left_open) == "a"
            untraced()
            assert [c async for c in second.astream("p")] == ["ok"]
            await left_open.aclose()

        asyncio.run(run())
    headers = [r.headers for r in scripted.requests]
    assert "traceparent" in headers[0] and "traceparent" not in headers[1]
