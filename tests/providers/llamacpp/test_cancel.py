"""Cancellation reaches the model: once the consumer stops, at most one more token.

``tokens_generated`` counts tokens as the generation loop samples them; ``client.n_tokens``
is llama.cpp's own count of tokens in its context (prompt plus evaluated completion).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
from helpers import is_sync

from lmstream.providers.llamacpp import LlamaCpp

LIMIT = 200
Count = Callable[[LlamaCpp, str], int]


def _stop_sync(llm: LlamaCpp, prompt: str, k: int, how: str) -> int:
    if how == "break":
        for i, _ in enumerate(llm.stream(prompt, max_tokens=LIMIT)):
            if i + 1 == k:
                at_stop = llm.tokens_generated
                break
        return at_stop
    stream = llm.stream(prompt, max_tokens=LIMIT)
    for _ in range(k):
        next(stream)
    at_stop = llm.tokens_generated
    stream.close()
    return at_stop


async def _stop_async(llm: LlamaCpp, prompt: str, k: int, how: str) -> int:
    if how == "break":
        async with contextlib.aclosing(llm.astream(prompt, max_tokens=LIMIT)) as stream:
            i = 0
            async for _ in stream:
                i += 1
                if i == k:
                    at_stop = llm.tokens_generated
                    break
        return at_stop
    stream = llm.astream(prompt, max_tokens=LIMIT)
    for _ in range(k):
        await stream.__anext__()
    at_stop = llm.tokens_generated
    await stream.aclose()
    return at_stop


def _check_stopped(llm: LlamaCpp, start: int, at_stop: int, n_prompt: int) -> None:
    assert llm.tokens_generated - at_stop <= 1
    assert llm.tokens_generated - start < LIMIT // 4
    # llama.cpp itself evaluated no more than what was sampled
    assert llm.client.n_tokens <= n_prompt + llm.tokens_generated - start


@pytest.mark.parametrize("how", ["close", "break"])
def test_stopping_a_stream_stops_the_model(
    llm: LlamaCpp, flavour: str, long_prompt: str, how: str, chat_tokens: Count
) -> None:
    expected = llm.invoke(long_prompt, max_tokens=6)
    n_prompt = chat_tokens(llm, long_prompt)
    start = llm.tokens_generated
    if is_sync(flavour):
        at_stop = _stop_sync(llm, long_prompt, 4, how)
    else:
        at_stop = asyncio.run(_stop_async(llm, long_prompt, 4, how))
    _check_stopped(llm, start, at_stop, n_prompt)
    assert llm.invoke(long_prompt, max_tokens=6) == expected  # free and intact


async def test_cancelling_the_task_stops_the_model(
    llm: LlamaCpp, long_prompt: str, chat_tokens: Count
) -> None:
    expected = await llm.ainvoke(long_prompt, max_tokens=6)
    n_prompt = chat_tokens(llm, long_prompt)
    start = llm.tokens_generated
    three = asyncio.Event()

    async def consume() -> None:
        i = 0
        async for _ in llm.astream(long_prompt, max_tokens=LIMIT):
            i += 1
            if i == 3:
                three.set()

    task = asyncio.create_task(consume())
    await three.wait()
    at_stop = llm.tokens_generated
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    _check_stopped(llm, start, at_stop, n_prompt)
    assert await llm.ainvoke(long_prompt, max_tokens=6) == expected


async def test_cancelling_an_ainvoke_stops_the_model(
    llm: LlamaCpp, long_prompt: str, chat_tokens: Count
) -> None:
    n_prompt = chat_tokens(llm, long_prompt)
    start = llm.tokens_generated
    task = asyncio.create_task(llm.ainvoke(long_prompt, max_tokens=LIMIT))
    while llm.tokens_generated - start < 3:  # noqa: ASYNC110  (a counter, no event to wait on)
        await asyncio.sleep(0.002)
    at_stop = llm.tokens_generated
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # a call that needs the model waits for whatever still runs there
    await asyncio.to_thread(llm.invoke, long_prompt, max_tokens=1)
    _check_stopped(llm, start, at_stop + 1, n_prompt)  # + the probe's one token
