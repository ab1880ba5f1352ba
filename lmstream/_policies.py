"""What retries and fallbacks decide with: which errors they act on (exception classes
or a predicate), and what the next attempt reads (its first input chunk rewritten, as
``exception_key`` does)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from lmstream._utils import EMPTY
from lmstream.errors import InvalidInputError

__all__ = ["ExceptionFilter", "Policy", "amap_first", "exception_filter", "map_first", "noting"]

# A policy says, for a failed attempt, how long to wait before the next one; it raises
# when there is to be no next one.
Policy = Callable[[int, Exception], float]

# Which errors to retry on: exception classes, or a predicate over the error.
ExceptionFilter = (
    tuple[type[BaseException], ...] | type[BaseException] | Callable[[BaseException], bool]
)


def exception_filter(spec: Any, what: str) -> Callable[[BaseException], bool]:
    """A test for errors from exception classes or a predicate; a clear error for others."""
    if isinstance(spec, type) and issubclass(spec, BaseException):
        spec = (spec,)
    if isinstance(spec, tuple) and all(
        isinstance(t, type) and issubclass(t, BaseException) for t in spec
    ):
        return lambda exc: isinstance(exc, spec)
    if callable(spec) and not isinstance(spec, (tuple, type)):
        return lambda exc: bool(spec(exc))
    raise InvalidInputError(
        f"{what} takes a tuple of exception classes or one predicate function "
        f"(error -> bool), not {spec!r}"
    )


def noting(policy: Policy, errors: list[Exception]) -> Policy:
    """``policy``, keeping each failure in ``errors`` first."""

    def noted(attempt: int, exc: Exception) -> float:
        errors.append(exc)
        return policy(attempt, exc)

    return noted


def map_first(it: Iterator[Any], fn: Callable[[Any], Any]) -> Iterator[Any]:
    first = next(it, EMPTY)
    if first is not EMPTY:
        yield fn(first)
        yield from it


async def amap_first(it: AsyncIterator[Any], fn: Callable[[Any], Any]) -> AsyncIterator[Any]:
    first = await anext(it, EMPTY)
    if first is not EMPTY:
        yield fn(first)
        async for item in it:
            yield item
