"""User functions as runnables: ``RunnableLambda`` and ``RunnableGenerator``.

A plain function waits for its whole input (it is called once, with the sum of the input
chunks). A generator function given to ``RunnableGenerator`` (or piped with ``|``)
receives the input stream itself and truly streams. Sync functions work on the async
path (in a worker thread) and async functions on the sync path (on the background loop),
so no combination raises for want of a twin.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from typing import Any, TypeVar

from lmstream._accumulate import aggregate
from lmstream._execution import acall_with_config, agather, call_with_config, gather
from lmstream._threads import SyncFromAsync, drive_async, iterate_in_thread, run_in_thread, run_sync
from lmstream._types import RunnableConfig
from lmstream._utils import (
    EMPTY,
    accepts_param,
    aclose,
    close,
    is_async_callable,
    is_async_generator,
    is_generator,
)
from lmstream.config import ambient, patch_config, use_config
from lmstream.runnable import Runnable, StreamingStep
from lmstream.runs import Run

__all__ = ["RunnableGenerator", "RunnableLambda", "chain"]

Input = TypeVar("Input")
Output = TypeVar("Output")


def _name_of(fn: Any) -> str | None:
    name = getattr(fn, "__name__", None)
    return None if name in (None, "<lambda>") else str(name)


def _call(
    fn: Callable[..., Any], value: Any, config: RunnableConfig, kwargs: dict[str, Any] | None = None
) -> Any:
    """``fn(value)``, with ``config`` where ``fn`` takes it, and the call's kwargs (bound
    with ``bind`` or given to ``invoke``) as keyword arguments, as the reference passes them."""
    if accepts_param(fn, "config"):
        return fn(value, config=config, **kwargs) if kwargs else fn(value, config=config)
    return fn(value, **kwargs) if kwargs else fn(value)


def _lambda_source(fn: Any) -> str | None:
    """The source of ``fn`` if it is the one lambda on its lines, else its name."""
    import ast
    import inspect
    import textwrap

    name = _name_of(fn)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (SyntaxError, TypeError, OSError, SystemError):
        return name
    lambdas = [node for node in ast.walk(tree) if isinstance(node, ast.Lambda)]
    return ast.unparse(lambdas[0]) if name is None and len(lambdas) == 1 else name


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
        close(it)


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
        await aclose(it)


def _aiter_sync(it: Iterator[Any]) -> AsyncIterator[Any]:
    # the upstream may block, or need the background loop itself (async handlers, async
    # functions upstream): it is pulled in a worker thread, never on that loop
    return iterate_in_thread(lambda: it)


def _limited(config: RunnableConfig, name: str) -> RunnableConfig:
    limit = config.get("recursion_limit", 25)
    if limit <= 0:
        raise RecursionError(
            f"Recursion limit reached when invoking {name}: a function kept returning runnables"
        )
    return patch_config(config, recursion_limit=limit - 1)


class RunnableLambda(StreamingStep[Input, Output]):
    """A function as a runnable. It waits for its whole input; if it returns a runnable,
    that runnable is run on the same input. A generator function's items stream out."""

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
        self._repr: str | None = None

    def _sync_call(
        self, value: Any, config: RunnableConfig, kw: dict[str, Any]
    ) -> tuple[bool, Any]:
        """(streams?, output) on the sync path: a generator's items come as an iterator."""
        fn = self.func
        if fn is not None:
            if is_generator(fn):
                return True, iterate_with_config(_call(fn, value, config, kw), config)
            return False, _call(fn, value, config, kw)
        afunc = self.afunc
        assert afunc is not None
        if is_async_generator(afunc):
            return True, drive_async(aiterate_with_config(_call(afunc, value, config, kw), config))
        return False, run_sync(_call(afunc, value, config, kw))

    async def _async_call(
        self, value: Any, config: RunnableConfig, kw: dict[str, Any]
    ) -> tuple[bool, Any]:
        """(streams?, output) on the async path: sync functions run in a worker thread."""
        fn = self.afunc or self.func
        assert fn is not None
        if is_async_generator(fn):
            return True, aiterate_with_config(_call(fn, value, config, kw), config)
        if is_generator(fn):
            gen = _call(fn, value, config, kw)
            return True, iterate_in_thread(lambda: iterate_with_config(gen, config))
        with use_config(config):
            if is_async_callable(fn):
                return False, await _call(fn, value, config, kw)
            return False, await run_in_thread(_call, fn, value, config, kw)

    def _invoke(self, value: Any, run: Run, config: RunnableConfig, **kwargs: Any) -> Any:
        streams, out = self._sync_call(value, config, kwargs)
        if streams:
            out = aggregate(list(out))
        if isinstance(out, Runnable):
            out = out.invoke(value, _limited(config, self.get_name()))
        return out

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Call the function on ``input`` (call kwargs go to the function)."""
        fn = partial(self._invoke, **kwargs) if kwargs else self._invoke
        return call_with_config(self, fn, input, config)

    async def _ainvoke(self, value: Any, run: Run, config: RunnableConfig, **kwargs: Any) -> Any:
        streams, out = await self._async_call(value, config, kwargs)
        if streams:
            out = aggregate([item async for item in out])
        if isinstance(out, Runnable):
            out = await out.ainvoke(value, _limited(config, self.get_name()))
        return out

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Call the function on ``input`` (async functions natively)."""
        fn = partial(self._ainvoke, **kwargs) if kwargs else self._ainvoke
        return await acall_with_config(self, fn, input, config)

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        total = gather(self, source, bool(config.get("strict")))
        if total is EMPTY:
            return
        with use_config(config):
            streams, out = self._sync_call(total, config, kwargs)
        if streams:
            yield from out
        elif isinstance(out, Runnable):
            yield from out.stream(total, _limited(config, self.get_name()))
        else:
            yield out

    async def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        total = await agather(self, source, bool(config.get("strict")))
        if total is EMPTY:
            return
        streams, out = await self._async_call(total, config, kwargs)
        if isinstance(out, Runnable):
            streams, out = True, out.astream(total, _limited(config, self.get_name()))
        if not streams:
            yield out
            return
        try:
            async for item in out:
                yield item
        finally:  # an async for does not close what it reads: the model must stop now
            await aclose(out)

    def __repr__(self) -> str:
        if self._repr is None:  # reading the source is slow: once
            self._repr = f"RunnableLambda({_lambda_source(self.func or self.afunc) or '...'})"
        return self._repr


class RunnableGenerator(StreamingStep[Input, Output]):
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
            yield from iterate_with_config(_call(self._sync, source, config, kwargs), config)
            return
        assert self._async is not None
        bridge = _aiter_sync(source)
        try:
            gen = _call(self._async, bridge, config, kwargs)
            yield from drive_async(aiterate_with_config(gen, config))
        finally:  # the function may stop without closing its input: stop the bridge's thread
            run_sync(aclose(bridge))

    async def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        import asyncio

        if self._async is not None:
            gen = aiterate_with_config(_call(self._async, source, config, kwargs), config)
        else:
            sync_source = SyncFromAsync(source, asyncio.get_running_loop())
            fn = self._sync
            assert fn is not None
            gen = iterate_in_thread(
                lambda: iterate_with_config(_call(fn, sync_source, config, kwargs), config)
            )
        try:
            async for item in gen:
                yield item
        finally:
            await aclose(gen)

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """The sum of everything the generator yields."""
        return aggregate(list(self.stream(input, config, **kwargs)))

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """The sum of everything the generator yields."""
        return aggregate([x async for x in self.astream(input, config, **kwargs)])

    def __repr__(self) -> str:
        return f"RunnableGenerator({self.get_name()})"


def chain(func: Callable[..., Any]) -> RunnableLambda[Any, Any]:
    """Make a function a runnable (a ``RunnableLambda`` named after it), as a decorator."""
    return RunnableLambda(func)
