"""Small helpers with no lmstream dependencies: uuid7 run ids, what a callable accepts,
and iterators' ends (closing them now, not at garbage collection, so a model stops at
once; telling a consumer that stopped from a failure; the marker of an empty input)."""

from __future__ import annotations

import functools
import os
import sys
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uuid

__all__ = [
    "EMPTY",
    "accepts_param",
    "aclose",
    "aiter_of",
    "close",
    "is_async_callable",
    "is_async_generator",
    "is_cancel",
    "is_generator",
    "uuid7",
]


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7): run ids sort by start time."""
    import uuid  # on first use: most processes never need a run id

    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | rand
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 4122 variant
    return uuid.UUID(int=value)


# id of a function -> (a weak reference to it, its parameter names); an entry goes when
# its function does, so no cache keeps a function, its closure or an instance alive
_PARAMS: dict[int, tuple[weakref.ref[Any], frozenset[str]]] = {}


def _names(fn: Callable[..., Any]) -> frozenset[str]:
    import inspect

    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return frozenset()
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return frozenset(p.name for p in sig.parameters.values() if p.kind in kinds)


def _forget(key: int, _: Any) -> None:
    _PARAMS.pop(key, None)


def accepts_param(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` declares a parameter called ``name`` (not counting ``**kwargs``).

    Remembered per function, weakly: a bound method is looked up by its function (minus
    ``self``), so no cache keeps an instance, or a closure and what it holds, alive.
    """
    key = getattr(fn, "__func__", fn)
    entry = _PARAMS.get(id(key))
    if entry is not None and entry[0]() is key:
        return name in entry[1]
    names = _names(fn)
    try:
        ref = weakref.ref(key, functools.partial(_forget, id(key)))
    except TypeError:  # not weakly referable: asked each time
        return name in names
    _PARAMS[id(key)] = (ref, names)
    return name in names


def _unwrap(fn: Any) -> Any:
    import inspect

    while isinstance(fn, functools.partial):
        fn = fn.func
    call = getattr(fn, "__call__", None)  # noqa: B004 - callable instances
    if not inspect.isfunction(fn) and not inspect.ismethod(fn) and call is not None:
        return call
    return fn


def is_async_callable(fn: Any) -> bool:
    """Whether calling ``fn`` returns a coroutine."""
    import inspect

    return inspect.iscoroutinefunction(_unwrap(fn))


def is_generator(fn: Any) -> bool:
    """Whether ``fn`` is a sync generator function."""
    import inspect

    return inspect.isgeneratorfunction(_unwrap(fn))


def is_async_generator(fn: Any) -> bool:
    """Whether ``fn`` is an async generator function."""
    import inspect

    return inspect.isasyncgenfunction(_unwrap(fn))


# -- iterators' ends --------------------------------------------------------------

EMPTY: Any = object()
"""What ``next(it, EMPTY)`` gives for an iterator that had nothing (left): not a value."""

_STOPS = (GeneratorExit, KeyboardInterrupt)


def is_cancel(exc: BaseException) -> bool:
    """Whether ``exc`` means the consumer stopped (not a failure)."""
    if isinstance(exc, _STOPS):
        return True
    # asyncio is imported lazily: when it was never imported, nothing was cancelled by it
    aio = sys.modules.get("asyncio")
    return aio is not None and isinstance(exc, aio.CancelledError)


def close(it: Any, *more: Any) -> None:
    """Close sync iterators now, each that can be closed, in order."""
    fn = getattr(it, "close", None)
    if fn is not None:
        fn()
    if more:
        close(*more)


async def aclose(it: Any, *more: Any) -> None:
    """Close async iterators now, each that can be closed, in order."""
    fn = getattr(it, "aclose", None)
    if fn is not None:
        await fn()
    if more:
        await aclose(*more)


async def aiter_of(*items: Any) -> AsyncIterator[Any]:
    """An async iterator over ``items``."""
    for item in items:
        yield item
