"""Pooled httpx clients for an HTTP provider (reads are in ``_reads``).

httpcore's connection pool does work quadratic in its connections on every request
(each idle connection counts all the others), so 64 requests in flight on one pool cost
the client more than the requests themselves. The clients here spread requests over
several pools (shards), each carrying at most ``PER_SHARD`` requests at a time; the
first shard with room is used, so sequential calls keep reusing one connection.

An async client's connections belong to the event loop that opened them, and
``asyncio.run`` makes a new loop each time. So there is one async client per loop, and
it is closed by that loop on its way out: a parked async generator is registered with
the loop, and the loop's ``shutdown_asyncgens`` (which ``asyncio.run`` and
``asyncio.Runner`` call before closing) runs its ``finally``.

A compressed body is inflated by httpx one raw piece at a time, and deflate inflates at
most about 1,032-fold: the transports hand httpx raw pieces of at most ``PIECE`` bytes,
so no single step can inflate a small body into a huge one (a gzip bomb). The clients ask
for gzip or deflate only; a body in any other or in several stacked encodings (whose
ratio nothing bounds) is refused with ``httpx.DecodingError``.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator
from typing import Any

import httpx

__all__ = ["Clients"]

PER_SHARD = 4  # requests in flight per pool before the next pool takes over
MAX_SHARDS = 256  # past PER_SHARD * MAX_SHARDS requests, the least busy pool takes more
LIMITS = httpx.Limits(max_connections=1000, max_keepalive_connections=2 * PER_SHARD)
PIECE = 1024  # raw bytes of a compressed body inflated at a time: about 1 MiB out at most
_ASKED = frozenset({"gzip", "deflate"})
_DECODED = frozenset({"gzip", "deflate", "br", "zstd"})  # what httpx inflates when it can


class _Shards:
    """Which pool a request goes to, and how many each one carries."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._lock = threading.Lock()
        self.pools: list[Any] = []
        self._busy: list[int] = []

    def take(self) -> int:
        """The index of the pool for the next request (made when all are busy)."""
        with self._lock:
            busy = self._busy
            i = next((k for k, n in enumerate(busy) if n < PER_SHARD), -1)
            if i < 0 and len(busy) < MAX_SHARDS:
                self.pools.append(self._make())
                busy.append(0)
                i = len(busy) - 1
            elif i < 0:
                i = busy.index(min(busy))
            busy[i] += 1
            return i

    def done(self, i: int) -> None:
        """A request of pool ``i`` has ended (its response closed)."""
        with self._lock:
            self._busy[i] -= 1


class _Once:
    """Calls ``fn`` the first time it is called."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn: Callable[[], None] | None = fn

    def __call__(self) -> None:
        fn, self._fn = self._fn, None
        if fn is not None:
            fn()


def _piece_size(headers: httpx.Headers) -> int | None:
    """How many raw bytes to hand httpx at a time (``None``: as they come)."""
    codings = [c.strip().lower() for c in headers.get_list("content-encoding", split_commas=True)]
    codings = [c for c in codings if c in _DECODED]
    if not codings:
        return None
    if len(codings) > 1 or codings[0] not in _ASKED:
        raise httpx.DecodingError(f"the body is encoded as {', '.join(codings)}, not as asked")
    return PIECE


def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    if len(data) <= size:
        yield data
    else:
        for i in range(0, len(data), size):
            yield data[i : i + size]


class _Stream(httpx.SyncByteStream):
    def __init__(self, inner: Any, done: Callable[[], None], headers: httpx.Headers) -> None:
        self._inner, self._done, self._headers = inner, done, headers

    def __iter__(self) -> Iterator[bytes]:
        size = _piece_size(self._headers)
        if size is None:
            return iter(self._inner)
        return (piece for data in self._inner for piece in _pieces(data, size))

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._done()


class _AStream(httpx.AsyncByteStream):
    def __init__(self, inner: Any, done: Callable[[], None], headers: httpx.Headers) -> None:
        self._inner, self._done, self._headers = inner, done, headers

    def __aiter__(self) -> AsyncIterator[bytes]:
        size = _piece_size(self._headers)
        if size is None:
            return self._inner.__aiter__()  # type: ignore[no-any-return]
        return (piece async for data in self._inner for piece in _pieces(data, size))

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._done()


class _Transport(httpx.BaseTransport):
    """Sync requests spread over several connection pools."""

    def __init__(self, make: Callable[[], httpx.HTTPTransport]) -> None:
        self.shards = _Shards(make)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        i = self.shards.take()
        done = _Once(lambda: self.shards.done(i))
        try:
            response = self.shards.pools[i].handle_request(request)
        except BaseException:
            done()
            raise
        response.stream = _Stream(response.stream, done, response.headers)
        return response  # type: ignore[no-any-return]

    def close(self) -> None:
        for pool in self.shards.pools:
            pool.close()


class _ATransport(httpx.AsyncBaseTransport):
    """Async requests spread over several connection pools."""

    def __init__(self, make: Callable[[], httpx.AsyncHTTPTransport]) -> None:
        self.shards = _Shards(make)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        i = self.shards.take()
        done = _Once(lambda: self.shards.done(i))
        try:
            response = await self.shards.pools[i].handle_async_request(request)
        except BaseException:
            done()
            raise
        response.stream = _AStream(response.stream, done, response.headers)
        return response  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        for pool in self.shards.pools:
            await pool.aclose()


async def _close_with_loop(client: httpx.AsyncClient) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        await client.aclose()


class _PoolArgs:
    """A pool's settings; the SSL context is made once, on first use (it costs ms)."""

    def __init__(self, limits: httpx.Limits) -> None:
        self._limits = limits
        self._ssl: ssl.SSLContext | None = None

    def __call__(self) -> dict[str, Any]:
        if self._ssl is None:
            self._ssl = httpx.create_ssl_context()
        return {"verify": self._ssl, "limits": self._limits}


class Clients:
    """One sync client, and one async client per event loop, made on first use."""

    def __init__(self, limits: httpx.Limits = LIMITS) -> None:
        self._pool_args = _PoolArgs(limits)  # holds nothing of self: see the finalizer
        self._lock = threading.Lock()
        self._sync: httpx.Client | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._async: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, AsyncGenerator[None, None]]
        ] = weakref.WeakKeyDictionary()

    @staticmethod
    def _client_args() -> dict[str, Any]:
        return {"timeout": None, "headers": {"Accept-Encoding": ", ".join(sorted(_ASKED))}}

    def sync(self) -> httpx.Client:
        """The sync client (thread-safe, shared by all threads)."""
        client = self._sync
        if client is None:
            with self._lock:
                if self._sync is None:
                    args = self._pool_args
                    transport = _Transport(lambda: httpx.HTTPTransport(**args()))
                    self._sync = httpx.Client(transport=transport, **self._client_args())
                    # a model dropped unclosed closes its pooled connections as it goes
                    self._finalizer = weakref.finalize(self, self._sync.close)
                client = self._sync
        return client

    async def current(self) -> httpx.AsyncClient:
        """The async client of the running event loop."""
        loop = asyncio.get_running_loop()
        entry = self._async.get(loop)
        if entry is not None:
            return entry[0]
        args = self._pool_args
        transport = _ATransport(lambda: httpx.AsyncHTTPTransport(**args()))
        client = httpx.AsyncClient(transport=transport, **self._client_args())
        closer = _close_with_loop(client)
        self._async[loop] = (client, closer)
        await closer.__anext__()  # registers it with the loop, which will close it
        return client

    def close(self) -> None:
        """Close the sync client (a later call opens a new one)."""
        with self._lock:
            client, self._sync = self._sync, None
            finalizer, self._finalizer = self._finalizer, None
        if finalizer is not None:
            finalizer.detach()
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the running loop's async client (a later call opens a new one)."""
        entry = self._async.pop(asyncio.get_running_loop(), None)
        if entry is not None:
            await entry[1].aclose()
