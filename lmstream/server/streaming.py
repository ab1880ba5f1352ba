"""Responses that stop the model when the client goes away.

``EventStreamResponse`` sends ``text/event-stream`` frames from an async iterator while
watching the connection: when the client disconnects, the iterator is cancelled and
closed at once (so the generation behind it stops), whatever the ASGI spec version.
When the server is shutting down and its grace period has passed, the stream is ended
with an error frame. ``until_disconnect`` does the same for non-streaming answers.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.responses import Response

from lmstream._execution import aclose, is_cancel
from lmstream._sse import encode
from lmstream.server.errors import HTTPError, from_exception

if TYPE_CHECKING:
    from lmstream.server.admission import Ticket
    from lmstream.server.state import RequestLog

__all__ = ["EventStreamResponse", "frame", "release", "stream_error", "until_disconnect"]

T = TypeVar("T")
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # proxies must not buffer the stream
]


def _finite(data: Any) -> Any:
    """``data`` with every NaN or infinite number as ``null``: JSON has no such numbers."""
    if isinstance(data, float) and not math.isfinite(data):
        return None
    if isinstance(data, dict):
        return {k: _finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_finite(v) for v in data]
    return data


def frame(data: Any, event: str | None = None) -> bytes:
    """One SSE frame; ``data`` is JSON-encoded (strict JSON) unless it is already a string."""
    if isinstance(data, str):
        return encode(data, event=event)
    try:
        text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(data), separators=(",", ":"), allow_nan=False)
    return encode(text, event=event)


def stream_error(
    log: RequestLog, exc: BaseException, error: Callable[[BaseException], bytes]
) -> bytes | None:
    """How a stream that already answered 200 ended early, recorded for the metrics: the
    in-band ``error`` frame that ends a failed one, or ``None`` for a cancelled one (which
    the frame generator raises again)."""
    if is_cancel(exc):
        log.outcome = "cancelled"
        return None
    log.outcome = "failed"
    return error(exc)


async def release(stream: AsyncIterator[Any] | None, ticket: Ticket) -> None:
    """A frame generator's cleanup: close the model's stream (so the generation stops) and
    give its slot back."""
    if stream is not None:
        await aclose(stream)
    ticket.release()


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(
    receive: Receive, work: Awaitable[T], expired: asyncio.Event | None = None
) -> tuple[bool, T | None]:
    """Run ``work`` unless the client disconnects first: ``(finished, result)``. When
    ``expired`` is set first (the shutdown's grace period is over), the work is cancelled
    and the client answered 503 instead of being dropped without an answer."""
    task = asyncio.ensure_future(work)
    watchers: list[asyncio.Future[Any]] = [asyncio.ensure_future(_wait_disconnect(receive))]
    if expired is not None:
        watchers.append(asyncio.ensure_future(expired.wait()))
    try:
        await asyncio.wait({task, *watchers}, return_when=asyncio.FIRST_COMPLETED)
        gone, ended = watchers[0].done(), watchers[-1].done() and expired is not None
    finally:
        for pending in (task, *watchers):
            if not pending.done():
                pending.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
    if not task.done() or task.cancelled():
        await asyncio.gather(task, return_exceptions=True)
        if ended and not gone:
            raise HTTPError(503, "The server is shutting down.", "server_error", code="shutdown")
        return False, None
    error = task.exception()
    if error is not None:
        raise from_exception(error) from error
    return True, task.result()


class EventStreamResponse(Response):
    """An ASGI response streaming SSE frames, cancelled by a disconnect."""

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        *,
        expired: asyncio.Event | None = None,
        shutdown_frame: bytes = b"",
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self.frames = frames
        self.expired = expired
        self.shutdown_frame = shutdown_frame
        self.on_close = on_close
        self.status_code = 200
        self.background = None
        self.headers_list = list(HEADERS)

    async def _pump(self, send: Send) -> None:
        try:
            async for chunk in self.frames:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            await aclose(self.frames)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await self._run(receive, send)
        finally:
            if self.on_close is not None:
                self.on_close()

    async def _run(self, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.headers_list})
        pump = asyncio.ensure_future(self._pump(send))
        watchers: list[asyncio.Future[Any]] = [asyncio.ensure_future(_wait_disconnect(receive))]
        if self.expired is not None:
            watchers.append(asyncio.ensure_future(self.expired.wait()))
        try:
            await asyncio.wait({pump, *watchers}, return_when=asyncio.FIRST_COMPLETED)
            # decided before cancelling: a cancelled watcher counts as done
            gone = watchers[0].done()
            expired = not pump.done() and len(watchers) > 1 and watchers[1].done()
        finally:
            for task in (pump, *watchers):
                task.cancel()
            results = await asyncio.gather(pump, *watchers, return_exceptions=True)
        if gone or isinstance(results[0], OSError):
            return  # the client went away: nothing more to send
        try:
            if expired and self.shutdown_frame:
                await send(
                    {"type": "http.response.body", "body": self.shutdown_frame, "more_body": True}
                )
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            pass
