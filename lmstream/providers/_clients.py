"""Pooled httpx clients for an HTTP provider, and reads bounded by a ``Call``'s deadline.

An async client's connections belong to the event loop that opened them, and
``asyncio.run`` makes a new loop each time. So there is one async client per loop, and
it is closed by that loop on its way out: a parked async generator is registered with
the loop, and the loop's ``shutdown_asyncgens`` (which ``asyncio.run`` and
``asyncio.Runner`` call before closing) runs its ``finally``.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Iterator

import httpx

from lmstream.providers._http import Call
from lmstream.providers._watchdog import Guard

__all__ = ["Clients", "aread", "read", "release"]

LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=100)


async def _close_with_loop(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()


class Clients:
    """One sync client, and one async client per event loop, made on first use."""

    def __init__(self, limits: httpx.Limits = LIMITS) -> None:
        self._limits = limits
        self._lock = threading.Lock()
        self._sync: httpx.Client | None = None
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()

    def sync(self) -> httpx.Client:
        """The sync client (thread-safe, shared by all threads)."""
        client = self._sync
        if client is None:
            with self._lock:
                if self._sync is None:
                    self._sync = httpx.Client(limits=self._limits, timeout=None)
                client = self._sync
        return client

    async def current(self) -> httpx.AsyncClient:
        """The async client of the running event loop."""
        loop = asyncio.get_running_loop()
        entry = self._async.get(loop)
        if entry is not None:
            return entry[0]
        client = httpx.AsyncClient(limits=self._limits, timeout=None)
        closer = _close_with_loop(client)
        self._async[loop] = (client, closer)
        await closer.__anext__()  # registers it with the loop, which will close it
        return client

    def close(self) -> None:
        """Close the sync client (a later call opens a new one)."""
        with self._lock:
            client, self._sync = self._sync, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the running loop's async client (a later call opens a new one)."""
        entry = self._async.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[1].aclose()


def read(chunks: Iterator[bytes], call: Call, guard: Guard | None) -> bytes | None:
    """The next piece of a body, or ``None`` at its end; cut at the call's deadline."""
    if guard is None:
        return next(chunks, None)
    guard.arm(*call.deadline())
    try:
        return next(chunks, None)
    finally:
        guard.disarm()


async def aread(chunks: AsyncIterator[bytes], call: Call, guard: Guard | None) -> bytes | None:
    """Async ``read``."""
    if guard is None:
        return await anext(chunks, None)
    guard.arm(*call.deadline())
    try:
        return await anext(chunks, None)
    finally:
        guard.disarm()


def release(guard: Guard | None) -> None:
    """Let the deadline thread forget ``guard``'s socket."""
    if guard is not None:
        guard.release()
