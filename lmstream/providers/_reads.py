"""Reading a response's body: each read cut at the call's deadline, and a whole body
bounded in size. Thin sync and async twins around the same checks.

A body that ends when its connection closes (no length, no chunks) ends cleanly when a
deadline shuts the socket; ``read`` tells that end from the server's by the guard, and
raises the timeout that caused it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from lmstream.providers._http import Call, too_large
from lmstream.providers._watchdog import Guard

__all__ = ["afinish", "aread", "aread_all", "finish", "read", "read_all"]


def read(chunks: Iterator[bytes], call: Call, guard: Guard | None) -> bytes | None:
    """The next piece of a body, or ``None`` at its end; cut at the call's deadline."""
    if guard is None:
        return next(chunks, None)
    guard.arm(*call.deadline())
    try:
        data = next(chunks, None)
    finally:
        guard.disarm()
    return _checked(data, call, guard)


async def aread(chunks: AsyncIterator[bytes], call: Call, guard: Guard | None) -> bytes | None:
    """Async ``read``."""
    if guard is None:
        return await anext(chunks, None)
    guard.arm(*call.deadline())
    try:
        data = await anext(chunks, None)
    finally:
        guard.disarm()
    return _checked(data, call, guard)


def _checked(data: bytes | None, call: Call, guard: Guard) -> bytes | None:
    # a body that ends when its connection closes ends cleanly when a deadline shuts the
    # socket: that end is the deadline's, not the server's
    if data is None and guard.fired:
        raise call.timeout(guard.fired)
    return data


def read_all(
    response: httpx.Response, call: Call, guard: Guard | None, limit: int | None, cut: bool = False
) -> bytes:
    """The whole body; past ``limit`` bytes a ``ProtocolError``, or with ``cut`` its head."""
    body, chunks = bytearray(), response.iter_bytes()
    try:
        while (data := read(chunks, call, guard)) is not None:
            body += data
            if limit is not None and len(body) > limit:
                return _over(body, limit, cut)
    finally:
        chunks.close()  # type: ignore[attr-defined]
    return bytes(body)


async def aread_all(
    response: httpx.Response, call: Call, guard: Guard | None, limit: int | None, cut: bool = False
) -> bytes:
    """Async ``read_all``."""
    body, chunks = bytearray(), response.aiter_bytes()
    try:
        while (data := await aread(chunks, call, guard)) is not None:
            body += data
            if limit is not None and len(body) > limit:
                return _over(body, limit, cut)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    return bytes(body)


def _over(body: bytearray, limit: int, cut: bool) -> bytes:
    if cut:
        return bytes(body[:limit])
    raise too_large(limit)


def finish(guard: Guard | None, response: httpx.Response, chunks: Any = None) -> None:
    """Done with a response: the deadline thread forgets its socket, then it is closed
    (which, mid-body, closes the connection: the server sees the client go)."""
    if guard is not None:
        guard.release()
    if chunks is not None:
        chunks.close()
    response.close()


async def afinish(guard: Guard | None, response: httpx.Response, chunks: Any = None) -> None:
    """Async ``finish``."""
    if guard is not None:
        guard.release()
    if chunks is not None:
        await chunks.aclose()
    await response.aclose()
