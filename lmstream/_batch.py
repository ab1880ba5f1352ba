"""Batch execution: a sliding window of ``max_concurrency`` calls (never waves), one
result or one exception per input, input order kept; ``*_as_completed`` yields
``(index, result)`` as each call finishes."""

from __future__ import annotations

import contextvars
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from lmstream._types import RunnableConfig
from lmstream.config import get_config_list
from lmstream.errors import InvalidInputError

if TYPE_CHECKING:
    import asyncio

    from lmstream.runnable import Runnable

__all__ = ["abatch", "abatch_as_completed", "batch", "batch_as_completed"]

Configs = RunnableConfig | Sequence[RunnableConfig] | None
_END: Any = object()


def _default_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


def _prepare(inputs: Sequence[Any], config: Configs) -> tuple[list[Any], list[RunnableConfig], int]:
    if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
        inputs = list(inputs) if isinstance(inputs, Iterator) else inputs
        if isinstance(inputs, (str, bytes)) or not isinstance(inputs, Sequence):
            raise InvalidInputError(f"batch inputs must be a list, not {type(inputs).__name__}")
    items = list(inputs)
    configs = get_config_list(config, len(items))
    limit = configs[0].get("max_concurrency") if configs else None
    return items, configs, limit or _default_workers()


def _window_threads(
    runnable: Runnable[Any, Any],
    items: list[Any],
    configs: list[RunnableConfig],
    workers: int,
    return_exceptions: bool,
    kwargs: dict[str, Any],
    paced: bool,
) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, result)`` as calls finish, at most ``workers`` in flight: a worker
    thread takes the next input as soon as its call is done, or, ``paced``, as soon as a
    result is taken (for a consumer that may stop: results it has not taken count as in
    flight). The first failure (without ``return_exceptions``) stops starting new calls
    and propagates once the calls in flight are done; so does closing the iterator."""
    import queue
    import threading

    base = contextvars.copy_context()
    indices = iter(range(len(items)))
    count = min(workers, len(items))
    take, stop, slots = threading.Lock(), threading.Event(), threading.Semaphore(count)
    done: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def fatal(exc: BaseException) -> bool:
        return not (return_exceptions and isinstance(exc, Exception))

    def work() -> None:
        while (not paced or slots.acquire()) and not stop.is_set():
            with take:
                i = next(indices, None)
            if i is None:
                break
            try:
                call = partial(runnable.invoke, items[i], configs[i], **kwargs)
                done.put((i, base.copy().run(call), None))
            except BaseException as exc:  # handed to the consumer, which raises it or not
                if fatal(exc):
                    stop.set()  # before anyone can start another call
                done.put((i, None, exc))
        done.put(_END)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        ended = 0
        while ended < count:
            if (item := done.get()) is _END:
                ended += 1
                continue
            i, result, exc = item
            if exc is not None and fatal(exc):
                raise exc
            if paced:
                slots.release()
            yield i, exc if exc is not None else result
    finally:
        stop.set()
        slots.release(count)  # wake the workers waiting for a slot: they see the stop
        for thread in threads:
            thread.join()


def batch(
    runnable: Runnable[Any, Any],
    inputs: Sequence[Any],
    config: Configs,
    return_exceptions: bool,
    kwargs: dict[str, Any],
) -> list[Any]:
    """Call ``invoke`` for every input, ``max_concurrency`` threads at a time."""
    items, configs, workers = _prepare(inputs, config)
    if len(items) <= 1:
        return [r for _, r in _run_inline(runnable, items, configs, return_exceptions, kwargs)]
    results: list[Any] = [None] * len(items)
    window = _window_threads(runnable, items, configs, workers, return_exceptions, kwargs, False)
    for i, result in window:
        results[i] = result
    return results


def _run_inline(
    runnable: Runnable[Any, Any],
    items: list[Any],
    configs: list[RunnableConfig],
    return_exceptions: bool,
    kwargs: dict[str, Any],
) -> Iterator[tuple[int, Any]]:
    for i, (item, cfg) in enumerate(zip(items, configs, strict=True)):
        try:
            yield i, runnable.invoke(item, cfg, **kwargs)
        except Exception as exc:
            if not return_exceptions:
                raise
            yield i, exc


def batch_as_completed(
    runnable: Runnable[Any, Any],
    inputs: Sequence[Any],
    config: Configs,
    return_exceptions: bool,
    kwargs: dict[str, Any],
) -> Iterator[tuple[int, Any]]:
    """Yield ``(index, output)`` as each call finishes; closing starts no further call.

    Inputs and configs are checked at once, not on the first ``next()``.
    """
    items, configs, workers = _prepare(inputs, config)
    if len(items) <= 1:
        return _run_inline(runnable, items, configs, return_exceptions, kwargs)
    return _window_threads(runnable, items, configs, workers, return_exceptions, kwargs, True)


async def _ainvoke_one(
    runnable: Runnable[Any, Any],
    item: Any,
    cfg: RunnableConfig,
    return_exceptions: bool,
    kwargs: dict[str, Any],
) -> Any:
    try:
        return await runnable.ainvoke(item, cfg, **kwargs)
    except Exception as exc:
        if not return_exceptions:
            raise
        return exc


async def _window(
    runnable: Runnable[Any, Any],
    items: list[Any],
    configs: list[RunnableConfig],
    workers: int,
    return_exceptions: bool,
    kwargs: dict[str, Any],
    on_result: Any,
) -> None:
    """Run every input through at most ``workers`` concurrent calls; the first failure
    (without ``return_exceptions``) cancels the rest and propagates."""
    import asyncio

    indices = iter(range(len(items)))

    async def worker() -> None:
        for i in indices:
            on_result(
                i, await _ainvoke_one(runnable, items[i], configs[i], return_exceptions, kwargs)
            )

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(workers, len(items)))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def abatch(
    runnable: Runnable[Any, Any],
    inputs: Sequence[Any],
    config: Configs,
    return_exceptions: bool,
    kwargs: dict[str, Any],
) -> list[Any]:
    """Await ``ainvoke`` for every input, at most ``max_concurrency`` at a time."""
    items, configs, workers = _prepare(inputs, config)
    results: list[Any] = [None] * len(items)

    def store(i: int, value: Any) -> None:
        results[i] = value

    await _window(runnable, items, configs, workers, return_exceptions, kwargs, store)
    return results


def abatch_as_completed(
    runnable: Runnable[Any, Any],
    inputs: Sequence[Any],
    config: Configs,
    return_exceptions: bool,
    kwargs: dict[str, Any],
) -> AsyncIterator[tuple[int, Any]]:
    """Yield ``(index, output)`` as each call finishes; closing cancels the rest.

    Inputs and configs are checked at once, not on the first ``anext()``.
    """
    items, configs, workers = _prepare(inputs, config)
    return _acompleted(runnable, items, configs, workers, return_exceptions, kwargs)


async def _acompleted(
    runnable: Runnable[Any, Any],
    items: list[Any],
    configs: list[RunnableConfig],
    workers: int,
    return_exceptions: bool,
    kwargs: dict[str, Any],
) -> AsyncIterator[tuple[int, Any]]:
    import asyncio

    done: asyncio.Queue[Any] = asyncio.Queue()
    runner = asyncio.ensure_future(
        _window(runnable, items, configs, workers, return_exceptions, kwargs,
                lambda i, v: done.put_nowait((i, v)))
    )  # fmt: skip
    runner.add_done_callback(lambda _: done.put_nowait(_END))
    try:
        while (item := await done.get()) is not _END:
            yield item
        runner.result()  # the window failed: raise its error after what finished before it
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
