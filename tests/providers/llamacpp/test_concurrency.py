"""One loaded model shared by threads and tasks: generations take turns, in arrival order,
and each model file is loaded once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from helpers import is_sync, same_answers, stream_of

from lmstream.errors import ProviderError
from lmstream.providers import _llamacpp_engine as engine_module
from lmstream.providers._llamacpp_engine import FairLock
from lmstream.providers.llamacpp import LlamaCpp

PROMPTS = ["Name a colour.", "Name a fruit.", "Name a city."]


def _expected(llm: LlamaCpp) -> list[str]:
    return [llm.invoke(p, max_tokens=8) for p in PROMPTS]


def test_threads_share_one_model(llm: LlamaCpp) -> None:
    expected = _expected(llm)

    def work(i: int) -> str:
        prompt = PROMPTS[i % 3]
        if i % 2:
            return "".join(llm.stream(prompt, max_tokens=8))
        return llm.invoke(prompt, max_tokens=8)

    with ThreadPoolExecutor(max_workers=9) as pool:
        got = list(pool.map(work, range(9)))
    assert same_answers(got, [expected[i % 3] for i in range(9)]), got


async def test_tasks_share_one_model(llm: LlamaCpp) -> None:
    expected = _expected(llm)

    async def work(i: int) -> str:
        prompt = PROMPTS[i % 3]
        if i % 2:
            return "".join([c async for c in llm.astream(prompt, max_tokens=8)])
        return await llm.ainvoke(prompt, max_tokens=8)

    got = await asyncio.gather(*(work(i) for i in range(9)))
    assert same_answers(got, [expected[i % 3] for i in range(9)]), got


def test_calling_the_model_inside_its_own_stream(llm: LlamaCpp, flavour: str) -> None:
    """Sync: the same thread cannot wait for itself, so it gets an error, not a deadlock.
    Async: the stream's worker finishes the generation and frees the model for the call."""
    expected = _expected(llm)
    stream = stream_of(llm, flavour, PROMPTS[0], max_tokens=8)
    if is_sync(flavour):
        next(stream)
        with pytest.raises(ProviderError, match="unfinished stream"):
            llm.invoke(PROMPTS[1], max_tokens=8)
        stream.close()
        assert same_answers([llm.invoke(PROMPTS[1], max_tokens=8)], expected[1:2])
        return

    async def nested() -> tuple[str, str]:
        parts, inner = [], ""
        async for chunk in stream:
            parts.append(chunk)
            if not inner:
                inner = await llm.ainvoke(PROMPTS[1], max_tokens=8)
        return "".join(parts), inner

    assert same_answers(asyncio.run(nested()), expected[:2])


def test_the_lock_is_granted_in_arrival_order() -> None:
    lock = FairLock()
    order: list[int] = []
    lock.acquire()

    def waiter(i: int) -> None:
        with lock:
            order.append(i)

    threads = []
    for i in range(6):
        thread = threading.Thread(target=waiter, args=(i,))
        thread.start()
        threads.append(thread)
        while len(lock._waiters) < i + 1:  # queued before the next one arrives
            time.sleep(0.001)
    lock.release()
    for thread in threads:
        thread.join()
    assert order == list(range(6))


def test_a_model_file_is_loaded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LlamaCpp().client is LlamaCpp(temperature=0.3, n_threads=2).client
    loads: list[Any] = []
    real = engine_module.llama_cpp.Llama

    def counting(*args: Any, **kwargs: Any) -> Any:
        loads.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine_module.llama_cpp, "Llama", counting)
    barrier = threading.Barrier(6)

    def construct(_: int) -> Any:
        barrier.wait()
        return LlamaCpp(n_ctx=320).client  # a context size no other test uses

    with ThreadPoolExecutor(max_workers=6) as pool:
        clients = list(pool.map(construct, range(6)))
    assert len(loads) == 1
    assert all(c is clients[0] for c in clients)


def test_another_spelling_of_the_path_shares_the_model(tmp_path: Path) -> None:
    default = LlamaCpp()
    link = tmp_path / "link.gguf"
    link.symlink_to(default.model_path)
    assert LlamaCpp(model_path=link).client is default.client
    relative = os.path.relpath(default.model_path)
    assert LlamaCpp(model_path=relative).client is default.client


def test_a_queued_stream_whose_consumer_leaves_never_runs(llm: LlamaCpp, long_prompt: str) -> None:
    async def main() -> tuple[int, int]:
        first = llm.astream(long_prompt, max_tokens=60)
        await first.__anext__()  # the first stream holds the model
        queued = asyncio.ensure_future(llm.astream(long_prompt, max_tokens=60).__anext__())
        await asyncio.sleep(0.2)  # the second waits for the model's lock
        queued.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await queued
        left_at = llm.tokens_generated
        rest = [c async for c in first]
        return left_at, len(rest)

    start = llm.tokens_generated
    left_at, _ = asyncio.run(main())
    # the cancelled stream returned while the first was still running, and made no token
    assert left_at - start < 60
    assert llm.tokens_generated - start <= 60
