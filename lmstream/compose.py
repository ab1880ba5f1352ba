"""Composition: sequences (``a | b``), parallel maps (dicts), and passthrough.

A sequence streams through every step that can: each step's ``transform`` consumes the
previous step's output stream. A parallel map feeds a copy of its input stream to every
branch at once and yields ``{key: chunk}`` as each branch produces output.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from lmstream._accumulate import AddableDict
from lmstream._execution import (
    EMPTY,
    acall_with_config,
    aclose,
    agather,
    call_with_config,
    close,
    gather,
)
from lmstream._types import RunnableConfig
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
            futures = {k: pool.submit(s.invoke, value, configs[k]) for k, s in self.steps.items()}
            return {k: f.result() for k, f in futures.items()}

    def invoke(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Invoke every branch concurrently."""
        return call_with_config(self, self._invoke, input, config)

    async def _ainvoke(self, value: Any, run: Run, config: RunnableConfig) -> dict[str, Any]:
        configs = self._configs(run, config)
        keys = list(self.steps)
        results = await asyncio.gather(*(self.steps[k].ainvoke(value, configs[k]) for k in keys))
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


def _merge_threads(branches: dict[str, Iterator[Any]]) -> Iterator[AddableDict]:
    """Drive each branch in its own thread; yield ``{key: chunk}`` in arrival order."""

    import queue

    merged: queue.Queue[Any] = queue.Queue()
    stop = threading.Event()
    done = object()

    def worker(key: str, it: Iterator[Any]) -> None:
        try:
            for chunk in it:
                if stop.is_set():
                    break
                merged.put((key, chunk))
        except BaseException as exc:
            merged.put((key, exc))
        finally:
            close(it)
            merged.put((key, done))

    threads = [threading.Thread(target=worker, args=kv, daemon=True) for kv in branches.items()]
    for t in threads:
        t.start()
    try:
        remaining = len(threads)
        while remaining:
            key, item = merged.get()
            if item is done:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield AddableDict({key: item})
    finally:
        stop.set()
        for t in threads:
            t.join()


async def _merge_tasks(branches: dict[str, AsyncIterator[Any]]) -> AsyncIterator[tuple[str, Any]]:
    """Drive each branch in its own task; yield ``(key, chunk)`` in arrival order."""
    merged: asyncio.Queue[Any] = asyncio.Queue()
    done = object()

    async def worker(key: str, it: AsyncIterator[Any]) -> None:
        try:
            async for chunk in it:
                await merged.put((key, chunk))
        except BaseException as exc:
            await merged.put((key, exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            await aclose(it)
            merged.put_nowait((key, done))

    tasks = [asyncio.ensure_future(worker(k, it)) for k, it in branches.items()]
    try:
        remaining = len(tasks)
        while remaining:
            key, item = await merged.get()
            if item is done:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield key, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class RunnablePassthrough(StreamingStep[Input, Input], Generic[Input]):
    """Passes its input through unchanged (optionally calling ``func`` on it)."""

    def __init__(
        self, func: Callable[[Any], Any] | None = None, *, name: str | None = None
    ) -> None:
        self.func = func
        self.name = name

    def invoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Input:
        """Return the input."""

        def identity(value: Any, run: Run, cfg: RunnableConfig) -> Any:
            if self.func is not None:
                self.func(value)
            return value

        return call_with_config(self, identity, input, config)  # type: ignore[no-any-return]

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        yield from source

    async def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        async for chunk in source:
            yield chunk

    @classmethod
    def assign(cls, **kwargs: Any) -> RunnableAssign:  # type: ignore[override]
        """A step that adds keys to a dict input, computed by runnables of that input."""
        return RunnableAssign(RunnableParallel(kwargs))


class RunnableAssign(StreamingStep[dict[str, Any], dict[str, Any]]):
    """Adds the outputs of a parallel map to a dict input."""

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

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        total = gather(self, source, bool(config.get("strict")))
        if total is EMPTY:
            return
        yield AddableDict(self._check(total))
        yield from self.mapper.stream(total, config)

    async def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        total = await agather(self, source, bool(config.get("strict")))
        if total is EMPTY:
            return
        yield AddableDict(self._check(total))
        async for chunk in self.mapper.astream(total, config):
            yield chunk
