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
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from starlette.responses import Response

from lmstream._execution import aclose
from lmstream._sse import encode

__all__ = ["EventStreamResponse", "frame", "until_disconnect"]

T = TypeVar("T")
Receive = Callable[[], Awaitable[Any]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # proxies must not buffer the stream
]


def frame(data: Any, event: str | None = None) -> bytes:
    """One SSE frame; ``data`` is JSON-encoded unless it is already a string."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return encode(text, event=event)


async def _wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(receive: Receive, work: Awaitable[T]) -> tuple[bool, T | None]:
    """Run ``work`` unless the client disconnects first: ``(finished, result)``."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_disconnect(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, watcher):
            if not pending.done():
                pending.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    if not task.done() or task.cancelled():
        await asyncio.gather(task, return_exceptions=True)
        return False, None
    error = task.exception()
    if error is not None:
        from lmstream.server.errors import from_exception

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
