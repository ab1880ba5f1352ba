"""Time limits per phase: the error names the phase that ran out (never timings), keeps
the partial text, and the server sees the connection close."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Callable, Iterator

import pytest
from helpers import collect, invoke_of, is_sync, stream_of
from servers.scripted import Reply, ScriptedServer, Send, Stall, completion, frames, stream

from lmstream import APITimeoutError
from lmstream.providers.openai import OpenAI

Make = Callable[..., OpenAI]


def _timeout(llm: OpenAI, flavour: str, how: str = "stream") -> APITimeoutError:
    def run() -> object:
        if how == "stream":
            return collect(stream_of(llm, flavour, "hi"))
        return invoke_of(llm, flavour, "hi")

    with pytest.raises(APITimeoutError) as info:
        run()
    return info.value


@pytest.mark.parametrize("how", ["stream", "invoke"])
def test_no_first_chunk_in_time(
    scripted: ScriptedServer, make_llm: Make, flavour: str, how: str
) -> None:
    scripted.script(Reply(steps=[Stall()]))
    exc = _timeout(make_llm(first_token_timeout=0.3), flavour, how)
    assert exc.phase == "first_token" and exc.partial_text == ""
    assert scripted.wait(lambda: scripted.requests[0].disconnected is not None)
    assert len(scripted.requests) == 1  # the server is slow, not gone: not retried


@pytest.mark.parametrize("how", ["stream", "invoke"])
def test_no_response_headers_in_time(
    scripted: ScriptedServer, make_llm: Make, flavour: str, how: str
) -> None:
    scripted.script(Reply(delay=30))
    exc = _timeout(make_llm(first_token_timeout=0.3), flavour, how)
    assert exc.phase == "first_token"


def test_keep_alives_do_not_count_as_chunks(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(Reply(steps=[Send(b": ping\n\n", 0.05)] * 200))
    assert _timeout(make_llm(first_token_timeout=0.4), flavour).phase == "first_token"


def test_keep_alives_do_not_reset_the_idle_clock(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    first, *_ = frames(["a"])
    scripted.script(Reply(steps=[Send(first), *[Send(b": ping\n\n", 0.05)] * 200]))
    exc = _timeout(make_llm(idle_timeout=0.4), flavour)
    assert exc.phase == "idle" and exc.partial_text == "a"


def test_a_stall_after_the_first_chunk_is_idle(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(stream(["a", "b"], done=False, finish_reason=None, usage=None, then=[Stall()]))
    exc = _timeout(make_llm(idle_timeout=0.3), flavour)
    assert exc.phase == "idle" and exc.partial_text == "ab"
    assert exc.usage is not None and exc.usage.estimated
    assert scripted.wait(lambda: scripted.requests[0].disconnected is not None)


def test_the_total_limit_covers_a_steady_stream(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(stream(["tick"] * 1000, delay=0.02))
    exc = _timeout(make_llm(timeout=0.5, idle_timeout=5), flavour)
    assert exc.phase == "total" and exc.partial_text.startswith("ticktick")


def test_the_total_limit_covers_waiting_for_headers(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(Reply(delay=30))
    assert _timeout(make_llm(timeout=0.3), flavour, "invoke").phase == "total"


def test_an_idle_limit_longer_than_the_first_token_limit_is_honoured(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    first, *rest = frames(["a", "b"])
    gap = Reply(steps=[Send(first), Send(b"".join(rest), 1.0)])
    # the gap after the first chunk passes the first-token limit but not the idle one
    scripted.script(gap)
    llm = make_llm(first_token_timeout=0.8, idle_timeout=5)
    assert "".join(collect(stream_of(llm, flavour, "hi"))) == "ab"
    scripted.script(gap)
    assert _timeout(make_llm(first_token_timeout=5, idle_timeout=0.25), flavour).phase == "idle"


def _slow_sync(llm: OpenAI) -> str:
    out = []
    for chunk in llm.stream("hi"):
        out.append(chunk)
        time.sleep(0.3)
    return "".join(out)


async def _slow_async(llm: OpenAI) -> str:
    out = []
    async for chunk in llm.astream("hi"):
        out.append(chunk)
        await asyncio.sleep(0.3)
    return "".join(out)


def test_a_slow_consumer_is_not_an_idle_server(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(stream(["a", "b", "c"]))
    llm = make_llm(idle_timeout=0.2)
    text = _slow_sync(llm) if is_sync(flavour) else asyncio.run(_slow_async(llm))
    assert text == "abc"


def test_a_slow_whole_answer_is_cut_at_the_first_token_limit(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    body = completion("late").steps[0]
    assert isinstance(body, Send)
    scripted.script(Reply(200, {"content-type": "application/json"},
                          [Send(body.data[:5]), Stall()]))  # fmt: skip
    assert _timeout(make_llm(first_token_timeout=0.3), flavour, "invoke").phase == "first_token"


@pytest.fixture
def unaccepting() -> Iterator[str]:
    """A base URL whose listening socket never accepts: its backlog is full, so a new
    connection attempt hangs in the handshake."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(8):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        for filler in fillers:
            filler.close()
        server.close()


linux_only = pytest.mark.skipif(
    sys.platform != "linux", reason="a full listen backlog stalls connects on Linux only"
)


@linux_only
def test_no_connection_in_time(unaccepting: str, flavour: str) -> None:
    with OpenAI(base_url=unaccepting, connect_timeout=0.2, max_retries=1,
                retry_backoff=0.001) as llm:  # fmt: skip
        exc = _timeout(llm, flavour)
    assert exc.phase == "connect"


@linux_only
def test_the_total_limit_cuts_a_connect(unaccepting: str, flavour: str) -> None:
    with OpenAI(base_url=unaccepting, connect_timeout=5, timeout=0.3) as llm:
        assert _timeout(llm, flavour).phase == "total"
