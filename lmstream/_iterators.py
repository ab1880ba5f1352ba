"""Iterators' ends, with no lmstream dependencies: closing them now (not at garbage
collection, so a model stops at once), telling a consumer that stopped from a failure,
and the marker of an input that had nothing in it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["EMPTY", "aclose", "aiter_of", "close", "is_cancel"]

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
