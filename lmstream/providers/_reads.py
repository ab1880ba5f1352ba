"""Reading a response's body: each read cut at the call's deadline, and a whole body
bounded in size. Thin sync and async twins around the same checks.

A body that ends when its connection closes (no length, no chunks) ends cleanly when a
deadline shuts the socket; ``read`` tells that end from the server's by the guard, and
raises the timeout that caused it.

A streamed answer is done at its end marker, but its body ends a moment later (the
chunked encoding's last chunk): ``next_piece`` reads that end before it says the stream
is over, so that the connection goes back to the pool instead of being closed and the
next call does not open a new one. When a server sends more than ``DRAIN_BYTES`` after
the marker, or takes over ``DRAIN_SECONDS`` to end the body, the connection is closed
instead, as it is when an answer is left mid-body.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

import httpx

from lmstream.providers._http import Call, too_large
from lmstream.providers._watchdog import Guard

__all__ = [
    "afinish", "anext_piece", "aread", "aread_all", "finish", "next_piece", "read", "read_all",
]  # fmt: skip

DRAIN_SECONDS = 0.5  # from the end marker to the body's end
DRAIN_BYTES = 64 * 1024  # read past the end marker before giving the connection up


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


class _Stream(Protocol):
    done: bool  # the stream's end marker has come


def next_piece(
    state: _Stream, chunks: Iterator[bytes], call: Call, guard: Guard | None
) -> bytes | None:
    """The next piece of a streamed body, or ``None`` at its end or at the stream's end
    marker (the body's own end read first, so the connection is kept)."""
    if state.done:
        _drain(chunks, guard)
        return None
    return read(chunks, call, guard)


async def anext_piece(
    state: _Stream, chunks: AsyncIterator[bytes], call: Call, guard: Guard | None
) -> bytes | None:
    """Async ``next_piece``."""
    if state.done:
        await _adrain(chunks)
        return None
    return await aread(chunks, call, guard)


def _drain(chunks: Iterator[bytes], guard: Guard | None) -> None:
    """Read the rest of a body whose stream is done, within ``DRAIN_SECONDS`` and
    ``DRAIN_BYTES``, so its connection can be kept (a read blocks the thread: without a
    guard to cut it, the connection is given up at once)."""
    if guard is None:
        return
    guard.arm(time.monotonic() + DRAIN_SECONDS, "drain")
    try:
        _skip(chunks)
    except httpx.HTTPError:
        pass  # the connection is closed with the response, as it would have been
    finally:
        guard.disarm()


async def _adrain(chunks: AsyncIterator[bytes]) -> None:
    """Async ``_drain``: the event loop's own timeout bounds it."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            left = DRAIN_BYTES
            while left > 0 and (data := await anext(chunks, None)) is not None:
                left -= len(data)
    except (TimeoutError, httpx.HTTPError):
        pass  # the connection is closed with the response, as it would have been


def _skip(chunks: Iterator[bytes]) -> None:
    left = DRAIN_BYTES
    while left > 0 and (data := next(chunks, None)) is not None:
        left -= len(data)


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
