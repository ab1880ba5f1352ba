"""Disconnect = cancel; many concurrent streams; a bounded, fair queue; no hangs."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
from helpers import Outcomes, is_sync, wait_until

from lmstream import FakeLLM

STREAM = {"model": "m", "prompt": "p", "stream": True, "max_tokens": 400}


def read_first_frame_and_leave(url: str, flavour: str, path: str, body: dict[str, Any]) -> None:
    if is_sync(flavour):
        with httpx.stream("POST", url + path, json=body) as response:
            next(response.iter_lines())
        return

    async def run() -> None:
        async with httpx.AsyncClient() as client, client.stream("POST", url + path, json=body) as r:
            await r.aiter_lines().__anext__()

    asyncio.run(run())


def test_a_client_leaving_a_stream_stops_the_model(serve: Any, flavour: str) -> None:
    ends = Outcomes()
    llm = FakeLLM(["x" * 400], delay=0.01, callbacks=[ends])
    with serve({"m": llm}) as server:
        read_first_frame_and_leave(server.url, flavour, "/v1/completions", STREAM)
        at_close = llm.tokens_produced
        assert wait_until(lambda: ends.outcomes == ["cancelled"])
        stopped = llm.tokens_produced
        assert wait_until(lambda: False, timeout=0.2) is False  # let a runaway show itself
    assert llm.tokens_produced == stopped
    assert stopped <= at_close + 2  # what was in flight when the disconnect was seen


def test_a_client_leaving_a_runnable_stream_stops_the_model(serve: Any, flavour: str) -> None:
    ends = Outcomes()
    llm = FakeLLM(["y" * 400], delay=0.01, callbacks=[ends])
    with serve({"m": llm}) as server:
        read_first_frame_and_leave(server.url, flavour, "/stream_events", {"input": "p"})
        assert wait_until(lambda: ends.outcomes == ["cancelled"])
    assert llm.tokens_produced < 400


def test_a_client_giving_up_on_a_plain_request_stops_the_model(serve: Any) -> None:
    ends = Outcomes()
    llm = FakeLLM(["z" * 100], delay=0.05, callbacks=[ends])
    with serve({"m": llm}) as server:
        with contextlib.suppress(httpx.TimeoutException):
            httpx.post(f"{server.url}/invoke", json={"input": "p"}, timeout=0.3)
        assert wait_until(lambda: ends.outcomes == ["cancelled"])
        stopped = llm.tokens_produced
        assert wait_until(lambda: False, timeout=0.2) is False
    assert llm.tokens_produced == stopped
    assert stopped <= 0.3 / 0.05 + 2  # it ran only while the client was there


def test_many_concurrent_streams_are_all_complete(serve: Any) -> None:
    llm = FakeLLM(["0123456789" * 5], delay=0.001)

    async def one(client: httpx.AsyncClient, i: int) -> str:
        body = {**STREAM, "prompt": f"p{i}"}
        text = []
        async with client.stream("POST", "/v1/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    import json

                    text.append(json.loads(line[6:])["choices"][0]["text"])
        return "".join(text)

    async def run(url: str) -> list[str]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
            return await asyncio.gather(*(one(client, i) for i in range(60)))

    with serve({"m": llm}) as server:
        texts = asyncio.run(run(server.url))
    assert texts == ["0123456789" * 5] * 60


def test_a_serializing_model_queues_fairly_and_turns_away_the_overflow(serve: Any) -> None:
    ends = Outcomes()
    llm = FakeLLM(["abcdefghij"], delay=0.03, callbacks=[ends])
    llm.thread_safe = False  # like llama.cpp: one generation at a time

    async def run(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            tasks = []
            for i in range(8):
                body = {"model": "m", "prompt": f"p{i}", "max_tokens": 20}
                tasks.append(asyncio.ensure_future(client.post("/v1/completions", json=body)))
                await asyncio.sleep(0.02)  # arrive in order
            return await asyncio.gather(*tasks)

    with serve({"m": llm}, max_waiting=3) as server:
        answers = asyncio.run(run(server.url))
    codes = [a.status_code for a in answers]
    assert codes[:4] == [200] * 4  # one generating, three waiting
    assert 429 in codes[4:]
    for answer in answers:
        if answer.status_code == 429:
            assert int(answer.headers["retry-after"]) >= 1
            assert answer.json()["error"]["code"] == "server_busy"
    served = [f"p{i}" for i, code in enumerate(codes) if code == 200]
    assert ends.starts == served  # first come, first served
