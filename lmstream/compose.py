"""Composition: sequences (``a | b``), parallel maps (dicts), and passthrough.

A sequence streams through every step that can: each step's ``transform`` consumes the
previous step's output stream. A parallel map feeds a copy of its input stream to every
branch at once and yields ``{key: chunk}`` as each branch produces output.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from lmstream._accumulate import AddableDict, aggregate
from lmstream._execution import EMPTY, acall_with_config, aclose, call_with_config, close
from lmstream._threads import run_in_thread, run_sync
from lmstream._types import RunnableConfig
from lmstream._utils import accepts_param, is_async_callable
from lmstream.config import child_config
from lmstream.errors import InvalidInputError
from lmstream.runnable import Runnable, StreamingStep, coerce_to_runnable
from lmstream.runs import Run

__all__ = ["RunnableAssign", "RunnableParallel", "RunnablePassthrough", "RunnableSequence"]

Input = TypeVar("Input")
Output = TypeVar("Output")


def _step_config(run: Run, config: RunnableConfig, tag: str) -> RunnableConfig:
    return child_config(config, run.child(tag)) if run.listening else config


class RunnableSequence(StreamingStep[Input, Output], Generic[Input, Output]):
    """Steps run one after another; each one's output is the next one's input."""

    def __init__(self, *steps: Any, name: str | None = None) -> None:
        flat: list[Runnable[Any, Any]] = []
        for step in steps:
            if isinstance(step, RunnableSequence):
                inner: RunnableSequence[Any, Any] = step
                flat.extend(inner.steps)
                name = name or inner.name
            else:
                flat.append(coerce_to_runnable(step))
        if len(flat) < 2:
            raise InvalidInputError(f"RunnableSequence must have at least 2 steps, got {len(flat)}")
        self.steps: list[Runnable[Any, Any]] = flat
        self.name = name

    @property
    def first(self) -> Runnable[Any, Any]:
        """The first step."""
        return self.steps[0]

    @property
    def middle(self) -> list[Runnable[Any, Any]]:
        """The steps between the first and the last."""
        return self.steps[1:-1]

    @property
    def last(self) -> Runnable[Any, Any]:
        """The last step."""
        return self.steps[-1]

    def _invoke(self, value: Any, run: Run, config: RunnableConfig, kwargs: dict[str, Any]) -> Any:
        for i, step in enumerate(self.steps):
            value = step.invoke(value, _step_config(run, config, f"seq:step:{i + 1}"), **kwargs)
            kwargs = {}
        return value

    def invoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Output:
        """Run the steps in order; call kwargs go to the first step."""
        return call_with_config(self, lambda v, r, c: self._invoke(v, r, c, kwargs), input, config)  # type: ignore[no-any-return]

    async def _ainvoke(
        self, value: Any, run: Run, config: RunnableConfig, kwargs: dict[str, Any]
    ) -> Any:
        for i, step in enumerate(self.steps):
            value = await step.ainvoke(
                value, _step_config(run, config, f"seq:step:{i + 1}"), **kwargs
            )
            kwargs = {}
        return value

    async def ainvoke(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Output:
        """Async ``invoke``."""
        return await acall_with_config(
            self, lambda v, r, c: self._ainvoke(v, r, c, kwargs), input, config
        )

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        for i, step in enumerate(self.steps):
            source = step.transform(
                source, _step_config(run, config, f"seq:step:{i + 1}"), **kwargs
            )
            kwargs = {}
        return source

    def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        for i, step in enumerate(self.steps):
            source = step.atransform(
                source, _step_config(run, config, f"seq:step:{i + 1}"), **kwargs
            )
            kwargs = {}
        return source

    def __repr__(self) -> str:
        return " | ".join(repr(s) for s in self.steps)


class _Tee:
    """Copies of one iterator for several consumer threads."""

    def __init__(self, source: Iterator[Any], n: int) -> None:
        self.source = source
        self.lock = threading.Lock()
        self.buffers: list[deque[Any]] = [deque() for _ in range(n)]
        self.done = False

    def branch(self, i: int) -> Iterator[Any]:
        buf = self.buffers[i]
        while True:
            with self.lock:
                if not buf:
                    if self.done:
                        return
                    item = next(self.source, EMPTY)
                    if item is EMPTY:
                        self.done = True
                        return
                    for other in self.buffers:
                        other.append(item)
                item = buf.popleft()
            yield item


class _ATee:
    """Copies of one async iterator for several consumer tasks."""

    def __init__(self, source: AsyncIterator[Any], n: int) -> None:
        self.source = source
        self.lock = asyncio.Lock()
        self.buffers: list[deque[Any]] = [deque() for _ in range(n)]
        self.done = False

    async def branch(self, i: int) -> AsyncIterator[Any]:
        buf = self.buffers[i]
        while True:
            async with self.lock:
                if not buf:
                    if self.done:
                        return
                    item = await anext(self.source, EMPTY)
                    if item is EMPTY:
                        self.done = True
                        return
                    for other in self.buffers:
                        other.append(item)
                item = buf.popleft()
            yield item


async def _gather(aws: Iterable[Awaitable[Any]]) -> list[Any]:
    """Await all at once; when one fails, cancel the rest (their models stop) and raise."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class RunnableParallel(StreamingStep[Input, dict[str, Any]], Generic[Input]):
    """Run every branch on the same input at once; the output maps keys to results."""

    def __init__(self, steps: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        merged = {**(steps or {}), **kwargs}
        self.steps = {k: coerce_to_runnable(v) for k, v in merged.items()}

    def _configs(self, run: Run, config: RunnableConfig) -> dict[str, RunnableConfig]:
        return {k: _step_config(run, config, f"map:key:{k}") for k in self.steps}

    def _invoke(self, value: Any, run: Run, config: RunnableConfig) -> dict[str, Any]:
        configs = self._configs(run, config)
        if len(self.steps) == 1:
            return {k: s.invoke(value, configs[k]) for k, s in self.steps.items()}
        with ThreadPoolExecutor(max_workers=len(self.steps)) as pool:
            futures = {
                k: pool.submit(contextvars.copy_context().run, s.invoke, value, configs[k])
                for k, s in self.steps.items()
            }
            return {k: f.result() for k, f in futures.items()}

    def invoke(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Invoke every branch concurrently."""
        return call_with_config(self, self._invoke, input, config)

    async def _ainvoke(self, value: Any, run: Run, config: RunnableConfig) -> dict[str, Any]:
        configs = self._configs(run, config)
        keys = list(self.steps)
        results = await _gather(self.steps[k].ainvoke(value, configs[k]) for k in keys)
        return dict(zip(keys, results, strict=True))

    async def ainvoke(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Await every branch concurrently."""
        return await acall_with_config(self, self._ainvoke, input, config)

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        configs = self._configs(run, config)
        tee = _Tee(source, len(self.steps))
        branches = {
            k: s.transform(tee.branch(i), configs[k]) for i, (k, s) in enumerate(self.steps.items())
        }
        if len(branches) == 1:
            ((key, it),) = branches.items()
            for chunk in it:
                yield AddableDict({key: chunk})
            return
        yield from _merge_threads(branches)

    async def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        configs = self._configs(run, config)
        tee = _ATee(source, len(self.steps))
        branches = {
            k: s.atransform(tee.branch(i), configs[k])
            for i, (k, s) in enumerate(self.steps.items())
        }
        async for key, chunk in _merge_tasks(branches):
            yield AddableDict({key: chunk})

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k}: {v!r}" for k, v in self.steps.items()) + "}"


# What a branch worker hands the consumer: a chunk, an error, or the end of the branch.
_CHUNK, _ERROR, _DONE = range(3)


def _merge_threads(branches: dict[str, Iterator[Any]]) -> Iterator[AddableDict]:
    """Drive each branch in its own thread; yield ``{key: chunk}`` in arrival order.

    A branch runs at most one chunk ahead of the consumer (a slot per branch), so a
    consumer that stops early leaves nothing generating; closing waits for every branch
    to be closed in its thread.
    """
    merged: queue.Queue[tuple[str, int, Any]] = queue.Queue()
    stop = threading.Event()
    slots = {key: threading.Semaphore(1) for key in branches}

    def worker(key: str, it: Iterator[Any]) -> None:
        try:
            for chunk in it:
                slots[key].acquire()
                if stop.is_set():
                    break
                merged.put((key, _CHUNK, chunk))
        except BaseException as exc:
            merged.put((key, _ERROR, exc))
        finally:
            close(it)
            merged.put((key, _DONE, None))

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(worker, *kv), daemon=True)
        for kv in branches.items()
    ]
    for t in threads:
        t.start()
    try:
        remaining = len(threads)
        while remaining:
            key, kind, item = merged.get()
            if kind == _DONE:
                remaining -= 1
            elif kind == _ERROR:
                raise item
            else:
                slots[key].release()
                yield AddableDict({key: item})
    finally:
        stop.set()
        for slot in slots.values():
            slot.release()  # wake a worker waiting for its slot: it sees the stop flag
        for t in threads:
            t.join()


async def _merge_tasks(branches: dict[str, AsyncIterator[Any]]) -> AsyncIterator[tuple[str, Any]]:
    """Drive each branch in its own task; yield ``(key, chunk)`` in arrival order, each
    branch at most one chunk ahead of the consumer; closing cancels every branch."""
    merged: asyncio.Queue[tuple[str, int, Any]] = asyncio.Queue()
    slots = {key: asyncio.Semaphore(1) for key in branches}

    async def worker(key: str, it: AsyncIterator[Any]) -> None:
        try:
            async for chunk in it:
                await slots[key].acquire()
                merged.put_nowait((key, _CHUNK, chunk))
        except BaseException as exc:
            merged.put_nowait((key, _ERROR, exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            await aclose(it)
            merged.put_nowait((key, _DONE, None))

    tasks = [asyncio.ensure_future(worker(k, it)) for k, it in branches.items()]
    try:
        remaining = len(tasks)
        while remaining:
            key, kind, item = await merged.get()
            if kind == _DONE:
                remaining -= 1
            elif kind == _ERROR:
                raise item
            else:
                slots[key].release()
                yield key, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class RunnablePassthrough(StreamingStep[Input, Input], Generic[Input]):
    """Passes its input through unchanged. ``func`` (sync or async, optionally taking
    ``config``) is called with the whole input once it has passed."""

    def __init__(self, func: Callable[..., Any] | None = None, *, name: str | None = None) -> None:
        self.func = func
        self.name = name

    def _notify(self, value: Any, config: RunnableConfig) -> None:
        if self.func is not None:
            out = _call_with_config(self.func, value, config)
            if inspect.isawaitable(out):
                run_sync(_awaited(out))

    async def _anotify(self, value: Any, config: RunnableConfig) -> None:
        func = self.func
        if func is None:
            return
        if is_async_callable(func):
            await _call_with_config(func, value, config)
        else:
            await run_in_thread(_call_with_config, func, value, config)

    def invoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Input:
        """Return the input."""

        def identity(value: Any, run: Run, cfg: RunnableConfig) -> Any:
            self._notify(value, cfg)
            return value

        return call_with_config(self, identity, input, config)  # type: ignore[no-any-return]

    async def ainvoke(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Input:
        """Return the input."""

        async def identity(value: Any, run: Run, cfg: RunnableConfig) -> Any:
            await self._anotify(value, cfg)
            return value

        return await acall_with_config(self, identity, input, config)

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        if self.func is None:
            yield from source
            return
        seen: list[Any] = []
        for chunk in source:
            seen.append(chunk)
            yield chunk
        if seen:
            self._notify(aggregate(seen), config)

    async def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        seen: list[Any] = []
        async for chunk in source:
            if self.func is not None:
                seen.append(chunk)
            yield chunk
        if seen:
            await self._anotify(aggregate(seen), config)

    @classmethod
    def assign(cls, **kwargs: Any) -> RunnableAssign:  # type: ignore[override]
        """A step that adds keys to a dict input, computed by runnables of that input."""
        return RunnableAssign(RunnableParallel(kwargs))


def _call_with_config(func: Callable[..., Any], value: Any, config: RunnableConfig) -> Any:
    return func(value, config=config) if accepts_param(func, "config") else func(value)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class RunnableAssign(StreamingStep[dict[str, Any], dict[str, Any]]):
    """Adds the outputs of a parallel map to a dict input.

    While streaming, the input's keys pass through as they arrive (keys the map computes
    are left to the map); the map then runs on the whole input and streams its keys.
    """

    def __init__(self, mapper: RunnableParallel[Any]) -> None:
        self.mapper = mapper

    def _check(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise InvalidInputError(f"assign() needs a dict input, got {type(value).__name__}")
        return value

    def _invoke(self, value: Any, run: Run, config: RunnableConfig) -> dict[str, Any]:
        return {**self._check(value), **self.mapper.invoke(value, config)}

    def invoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The input with the new keys."""
        return call_with_config(self, self._invoke, input, config)

    async def _ainvoke(self, value: Any, run: Run, config: RunnableConfig) -> dict[str, Any]:
        return {**self._check(value), **(await self.mapper.ainvoke(value, config))}

    async def ainvoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Async ``invoke``."""
        return await acall_with_config(self, self._ainvoke, input, config)

    def _passed(self, chunk: Any, seen: list[Any]) -> AddableDict | None:
        """The part of an input chunk that passes straight through (``None``: nothing)."""
        seen.append(self._check(chunk))
        kept = AddableDict({k: v for k, v in chunk.items() if k not in self.mapper.steps})
        return kept or None

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        seen: list[Any] = []
        for chunk in source:
            if (kept := self._passed(chunk, seen)) is not None:
                yield kept
        if seen:
            yield from self.mapper.stream(aggregate(seen), config)

    async def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        seen: list[Any] = []
        async for chunk in source:
            if (kept := self._passed(chunk, seen)) is not None:
                yield kept
        if seen:
            async for out in self.mapper.astream(aggregate(seen), config):
                yield out
