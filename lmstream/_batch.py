"""Batch execution: a sliding window of ``max_concurrency`` calls (never waves), one
result or one exception per input, input order kept; ``*_as_completed`` yields
``(index, result)`` as each call finishes."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from lmstream._types import Configs, RunnableConfig
from lmstream.config import get_config_list
from lmstream.errors import InvalidInputError

if TYPE_CHECKING:
    import asyncio

    from lmstream.runnable import Runnable

__all__ = ["abatch", "abatch_as_completed", "batch", "batch_as_completed"]

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


class _Workers:
    """Threads that run ``calls``, each taking the next one as soon as its call is done,
    or, ``paced``, as soon as the consumer takes a result; results come back on a queue.
    A ``fatal`` failure stops new starts from the thread that saw it."""

    def __init__(self, calls: list[Any], count: int, paced: bool, fatal: Any) -> None:
        import queue
        import threading

        self.calls, self.count, self.paced, self.fatal = iter(enumerate(calls)), count, paced, fatal
        self.take, self.stop = threading.Lock(), threading.Event()
        self.slots = threading.Semaphore(count)
        self.done: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self.work, daemon=True) for _ in range(count)]
        for thread in self.threads:
            thread.start()

    def work(self) -> None:
        while (not self.paced or self.slots.acquire()) and not self.stop.is_set():
            with self.take:
                i, call = next(self.calls, (-1, None))
            if call is None:
                break
            try:
                self.done.put((i, call(), None))
            except BaseException as exc:  # handed to the consumer, which raises it or not
                if self.fatal(exc):
                    self.stop.set()  # before anyone can start another call
                self.done.put((i, None, exc))
        self.done.put(_END)

    def results(self) -> Generator[tuple[int, Any, BaseException | None], None, None]:
        """``(index, result, exception)`` as calls finish; closing stops and joins."""
        try:
            ended = 0
            while ended < self.count:
                if (item := self.done.get()) is _END:
                    ended += 1
                    continue
                if self.paced:
                    self.slots.release()
                yield item
        finally:
            self.stop.set()
            self.slots.release(self.count)  # wake the threads waiting for a slot
            for thread in self.threads:
                thread.join()


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
    base = contextvars.copy_context()

    def fatal(exc: BaseException) -> bool:
        return not (return_exceptions and isinstance(exc, Exception))

    calls = [
        partial(base.copy().run, partial(runnable.invoke, item, cfg, **kwargs))
        for item, cfg in zip(items, configs, strict=True)
    ]
    window = _Workers(calls, min(workers, len(items)), paced, fatal)
    with contextlib.closing(window.results()) as results:
        for i, result, exc in results:
            if exc is not None and fatal(exc):
                raise exc
            yield i, exc if exc is not None else result


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
