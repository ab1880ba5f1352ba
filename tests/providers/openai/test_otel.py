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
from servers.scripted import Reply, ScriptedServer, Send, Stall, error, frames, stream

from lmstream import APITimeoutError, BadRequestError
from lmstream.providers.openai import OpenAI

Make = Callable[..., OpenAI]


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
