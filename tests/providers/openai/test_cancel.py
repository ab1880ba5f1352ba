"""When the consumer stops, the response is closed at once: the server sees the client go
before its answer ends, and no connection is left open behind."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
from helpers import collect, is_sync, stream_of, take
from servers.scripted import ScriptedServer, Stall, stream

from lmstream.providers.openai import OpenAI

Make = Callable[..., OpenAI]


def _endless() -> object:
    """A stream that sends two chunks, then nothing until the client goes away."""
    return stream(["first", " second"], finish_reason=None, usage=None, done=False,
                  then=[Stall()])  # fmt: skip


def _gone(scripted: ScriptedServer, index: int = -1) -> bool:
    return scripted.wait(lambda: scripted.requests[index].disconnected is not None)


def test_closing_the_stream_closes_the_response(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(_endless())
    assert take(stream_of(make_llm(), flavour, "hi"), 1) == ["first"]
    assert _gone(scripted)
    assert scripted.requests[-1].ended is None


def _break_sync(llm: OpenAI) -> list[str]:
    out = []
    for chunk in llm.stream("hi"):
        out.append(chunk)
        break
    return out


async def _break_async(llm: OpenAI) -> list[str]:
    out = []
    async with contextlib.aclosing(llm.astream("hi")) as chunks:
        async for chunk in chunks:
            out.append(chunk)
            break
    return out


def test_breaking_out_of_the_loop_closes_the_response(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(_endless())
    llm = make_llm()
    out = _break_sync(llm) if is_sync(flavour) else asyncio.run(_break_async(llm))
    assert out == ["first"]
    assert _gone(scripted)


async def test_cancelling_the_task_closes_the_response(
    scripted: ScriptedServer, make_llm: Make
) -> None:
    scripted.script(_endless())
    llm = make_llm()
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in llm.astream("hi"):
            first.set()

    task = asyncio.ensure_future(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(_gone, scripted)


def test_a_stop_sequence_closes_the_response(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(_endless())
    assert collect(stream_of(make_llm(), flavour, "hi", stop=["sec"])) == ["first", " "]
    assert _gone(scripted)


def test_the_instance_works_after_a_cancelled_stream(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    llm = make_llm()
    scripted.script(_endless())
    take(stream_of(llm, flavour, "hi"), 1)
    assert "".join(collect(stream_of(llm, flavour, "a b"))) == "a b "


def _thousand_sync(llm: OpenAI, n: int) -> None:
    for _ in range(n):
        for _ in llm.stream("hi"):
            break


async def _thousand_async(llm: OpenAI, n: int) -> None:
    for _ in range(n):
        async with contextlib.aclosing(llm.astream("hi")) as chunks:
            async for _ in chunks:
                break


def test_a_thousand_broken_streams_leave_no_connection_open(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    n = 1000
    scripted.handler = lambda body: _endless()  # type: ignore[assignment,return-value]
    llm = make_llm()
    if is_sync(flavour):
        _thousand_sync(llm, n)
    else:
        asyncio.run(_thousand_async(llm, n))
    assert len(scripted.requests) == n
    assert scripted.wait(lambda: scripted.open_connections == 0)
    assert scripted.wait(lambda: all(r.disconnected is not None for r in scripted.requests))
    assert not any(r.ended for r in scripted.requests)
