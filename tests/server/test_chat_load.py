"""200 streamed chat requests at once against a real ``lmstream serve --chat`` process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from helpers import is_sync
from server.test_serve_command import served

STREAMS = 200
WORDS = [f"w{i}" for i in range(30)]
BODY = {"model": "m", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "count"}]}  # fmt: skip
LIMITS = httpx.Limits(max_connections=STREAMS + 10, max_keepalive_connections=STREAMS + 10)


def _read(lines: list[str]) -> dict[str, Any]:
    """One stream's frames: its text, its finish reason, its usage and its end marker."""
    frames = [line[6:] for line in lines if line.startswith("data: ")]
    events = [json.loads(f) for f in frames if f != "[DONE]"]
    deltas = [c["delta"] for e in events for c in e["choices"]]
    return {
        "text": "".join(d.get("content") or "" for d in deltas),
        "finish": [c["finish_reason"] for e in events for c in e["choices"] if c["finish_reason"]],
        "usage": [e["usage"] for e in events if e.get("usage")],
        "done": frames[-1:] == ["[DONE]"],
    }


def _sync_streams(url: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=url, limits=LIMITS, timeout=120) as client:

        def one(_: int) -> dict[str, Any]:
            with client.stream("POST", "/v1/chat/completions", json=BODY) as response:
                return _read(list(response.iter_lines()))

        with ThreadPoolExecutor(STREAMS) as pool:
            return list(pool.map(one, range(STREAMS)))


async def _async_streams(url: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=url, limits=LIMITS, timeout=120) as client:

        async def one() -> dict[str, Any]:
            async with client.stream("POST", "/v1/chat/completions", json=BODY) as response:
                return _read([line async for line in response.aiter_lines()])

        return await asyncio.gather(*(one() for _ in range(STREAMS)))


def _sockets(pid: int) -> int:
    """The sockets the server process holds (a descriptor closing meanwhile is not one)."""
    count, fds = 0, f"/proc/{pid}/fd"
    for fd in os.listdir(fds):
        with contextlib.suppress(FileNotFoundError):
            count += os.readlink(f"{fds}/{fd}").startswith("socket:")
    return count


def _running(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=30).text
    lines = [line for line in text.splitlines() if line.startswith("lmstream_requests_running")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def test_200_concurrent_chat_streams_all_complete_and_nothing_stays_open(flavour: str) -> None:
    args = ["--chat", "-m", "fake:" + " ".join(WORDS), "--option", "delay=0.01",
            "--option", 'chunking="word"', "--max-waiting", "1000", "--metrics-public"]  # fmt: skip
    with served(*args) as (url, proc):
        idle = _sockets(proc.pid)
        if is_sync(flavour):
            results = _sync_streams(url)
        else:
            results = asyncio.run(_async_streams(url))
        deadline = time.monotonic() + 60  # the server closes its side on its own time
        while (running := _running(url)) and time.monotonic() < deadline:
            time.sleep(0.1)
        while (left_open := _sockets(proc.pid) - idle) > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert len(results) == STREAMS
    for result in results:
        assert result["text"].split() == WORDS
        assert result["finish"] == ["stop"] and result["done"]
        (usage,) = result["usage"]
        assert usage["completion_tokens"] > 0
    assert left_open <= 0 and running == 0
