"""User functions as runnables: ``RunnableLambda`` and ``RunnableGenerator``.

A plain function waits for its whole input (it is called once, with the sum of the input
chunks). A generator function given to ``RunnableGenerator`` (or piped with ``|``)
receives the input stream itself and truly streams. Sync functions work on the async
path (in a worker thread) and async functions on the sync path (on the background loop),
so no combination raises for want of a twin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from lmstream._accumulate import aggregate
from lmstream._execution import (
    EMPTY,
    acall_with_config,
    agather,
    call_with_config,
    gather,
)
from lmstream._threads import iterate_in_thread, run_in_thread, run_sync
from lmstream._types import RunnableConfig
from lmstream._utils import accepts_param, is_async_callable, is_async_generator, is_generator
from lmstream.config import ambient, patch_config, use_config
from lmstream.runnable import Runnable, StreamingStep
from lmstream.runs import Run

__all__ = ["RunnableGenerator", "RunnableLambda"]


def _name_of(fn: Any) -> str | None:
    name = getattr(fn, "__name__", None)
    return None if name in (None, "<lambda>") else str(name)


def _call(fn: Callable[..., Any], value: Any, config: RunnableConfig) -> Any:
    if accepts_param(fn, "config"):
        return fn(value, config=config)
    return fn(value)


def iterate_with_config(it: Iterator[Any], config: RunnableConfig) -> Iterator[Any]:
    """Iterate ``it`` with ``config`` ambient while its code runs; close it when stopped."""
    var = ambient()
    try:
        while True:
            token = var.set(config)
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                var.reset(token)
            yield item
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()


async def aiterate_with_config(
    it: AsyncIterator[Any], config: RunnableConfig
) -> AsyncIterator[Any]:
    """The async twin of ``iterate_with_config``."""
    var = ambient()
    try:
        while True:
            token = var.set(config)
            try:
                item = await it.__anext__()
            except StopAsyncIteration:
                return
            finally:
                var.reset(token)
            yield item
    finally:
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            await aclose()


async def _anext(it: AsyncIterator[Any]) -> Any:
    return await it.__anext__()


async def _aclose(it: AsyncIterator[Any]) -> None:
    await it.aclose()  # type: ignore[attr-defined]


def drive_async(it: AsyncIterator[Any]) -> Iterator[Any]:
    """A sync iterator over an async one, advanced on the background loop."""
    try:
        while True:
            try:
                item = run_sync(_anext(it))
            except StopAsyncIteration:
                return
            yield item
    finally:
        if hasattr(it, "aclose"):
            run_sync(_aclose(it))


async def _aiter_sync(it: Iterator[Any]) -> AsyncIterator[Any]:
    for item in it:  # runs on the background loop, which may block on the upstream
        yield item


class _SyncFromAsync:
    """A sync iterator over an async one that lives on ``loop`` (for worker threads)."""

    def __init__(self, it: AsyncIterator[Any], loop: Any) -> None:
        self.it, self.loop = it, loop

    def __iter__(self) -> _SyncFromAsync:
        return self

    def __next__(self) -> Any:
        import asyncio

        try:
            return asyncio.run_coroutine_threadsafe(_anext(self.it), self.loop).result()
        except StopAsyncIteration:
            raise StopIteration from None


def _limited(config: RunnableConfig) -> RunnableConfig:
    limit = config.get("recursion_limit", 25)
    if limit <= 0:
        raise RecursionError(f"Recursion limit reached when invoking {config.get('run_name')}")
    return patch_config(config, recursion_limit=limit - 1)


class RunnableLambda(StreamingStep[Any, Any]):
    """A function as a runnable. It waits for its whole input; if it returns a runnable,
    that runnable is run on the same input."""

    def __init__(
        self,
        func: Callable[..., Any],
        afunc: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
    ) -> None:
        if not callable(func):
            raise TypeError(f"RunnableLambda expects a callable, not {type(func).__name__}")
        if is_async_callable(func) or is_async_generator(func):
            func, afunc = None, func  # type: ignore[assignment]
        self.func: Callable[..., Any] | None = func
        self.afunc = afunc
        self.name = name or _name_of(func if func is not None else afunc)

    def _sync_fn(self) -> Callable[..., Any]:
        if self.func is not None:
            return self.func
        afunc = self.afunc
        assert afunc is not None
        if is_async_generator(afunc):
            return lambda x, config=None: aggregate(list(drive_async(afunc(x))))
        return lambda x, config=None: run_sync(afunc(x))

    def _invoke(self, value: Any, run: Run, config: RunnableConfig) -> Any:
        fn = self._sync_fn()
        out = _call(fn, value, config)
        if is_generator(fn):
            out = aggregate(list(iterate_with_config(out, config)))
        if isinstance(out, Runnable):
            out = out.invoke(value, _limited(config))
        return out

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Call the function on ``input``."""
        return call_with_config(self, self._invoke, input, config)

    async def _ainvoke(self, value: Any, run: Run, config: RunnableConfig) -> Any:
        fn = self.afunc or self.func
        assert fn is not None
        if is_async_generator(fn):
            out = aggregate(
                [x async for x in aiterate_with_config(_call(fn, value, config), config)]
            )
        elif is_async_callable(fn):
            out = await _call(fn, value, config)
        else:
            out = await run_in_thread(self._invoke_plain, fn, value, config)
        if isinstance(out, Runnable):
            out = await out.ainvoke(value, _limited(config))
        return out

    def _invoke_plain(self, fn: Callable[..., Any], value: Any, config: RunnableConfig) -> Any:
        out = _call(fn, value, config)
        return aggregate(list(iterate_with_config(out, config))) if is_generator(fn) else out

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Call the function on ``input`` (async functions natively)."""
        return await acall_with_config(self, self._ainvoke, input, config)

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        total = gather(self, source, bool(config.get("strict")))
        if total is EMPTY:
            return
        fn = self._sync_fn()
        if is_generator(fn):
            yield from iterate_with_config(_call(fn, total, config), config)
            return
        with use_config(config):
            out = _call(fn, total, config)
        if isinstance(out, Runnable):
            yield from out.stream(total, _limited(config))
        else:
            yield out

    async def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        total = await agather(self, source, bool(config.get("strict")))
        if total is EMPTY:
            return
        fn = self.afunc or self.func
        assert fn is not None
        if is_async_generator(fn):
            async for item in aiterate_with_config(_call(fn, total, config), config):
                yield item
            return
        if is_generator(fn):
            gen = _call(fn, total, config)
            async for item in iterate_in_thread(lambda: iterate_with_config(gen, config)):
                yield item
            return
        out = await self._ainvoke_fn(fn, total, config)
        if isinstance(out, Runnable):
            async for item in out.astream(total, _limited(config)):
                yield item
        else:
            yield out

    async def _ainvoke_fn(self, fn: Callable[..., Any], value: Any, config: RunnableConfig) -> Any:
        with use_config(config):
            if is_async_callable(fn):
                return await _call(fn, value, config)
            return await run_in_thread(_call, fn, value, config)

    def __repr__(self) -> str:
        return f"RunnableLambda({self.get_name()})"


class RunnableGenerator(StreamingStep[Any, Any]):
    """A generator function over the input stream: it truly streams."""

    def __init__(
        self,
        transform: Callable[..., Any],
        atransform: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
    ) -> None:
        if is_async_generator(transform):
            transform, atransform = None, transform  # type: ignore[assignment]
        self._sync: Callable[..., Any] | None = transform
        self._async = atransform
        self.name = name or _name_of(transform if transform is not None else atransform)

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        if self._sync is not None:
            return iterate_with_config(_call(self._sync, source, config), config)
        assert self._async is not None
        return drive_async(
            aiterate_with_config(_call(self._async, _aiter_sync(source), config), config)
        )

    async def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        if self._async is not None:
            gen = aiterate_with_config(_call(self._async, source, config), config)
        else:
            import asyncio

            sync_source = _SyncFromAsync(source, asyncio.get_running_loop())
            fn = self._sync
            assert fn is not None
            gen = iterate_in_thread(
                lambda: iterate_with_config(_call(fn, sync_source, config), config)
            )
        async for item in gen:
            yield item

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """The sum of everything the generator yields."""
        return aggregate(list(self.stream(input, config)))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """The sum of everything the generator yields."""
        return aggregate([x async for x in self.astream(input, config)])

    def __repr__(self) -> str:
        return f"RunnableGenerator({self.get_name()})"
