"""Connection limits below the ASGI app, where uvicorn offers none.

uvicorn times out idle keep-alive connections, but not a connection that never sends a
complete request head (silent, or one byte every few seconds), it lets a client that
stops reading block a send forever, and it accepts connections until the process runs
out of file descriptors. The protocol built here adds, per connection:

- a **header timeout**: the request head must be complete within ``header_timeout``
  seconds of the connection opening, or of its first byte on a kept-alive connection;
- a **send timeout**: when the client stops reading and the send buffer stays full for
  ``send_timeout`` seconds, the connection is dropped; the app sees a disconnect, so a
  generation behind it is cancelled and its model slot freed;
- a **connection limit**: at ``max_connections``, a new connection evicts the oldest one
  that has no request in flight (still sending its head, or idle between requests); when
  every connection is busy, the new one is answered 503 and closed.

Every connection also sends small writes at once (``TCP_NODELAY``): a stream's frames are
small writes, and with Nagle's algorithm the first frame after the response head would
wait for the client's delayed acknowledgement of the head (about 40 ms on Linux). uvloop
sets it on every connection; asyncio only on sockets it made itself, not on those
accepted from the socket ``lmstream serve`` binds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from typing import Any

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from lmstream.server.errors import error_body
from lmstream.server.state import ServerSettings

__all__ = ["guarded_protocol", "uvicorn_options"]


def _busy_answer() -> bytes:
    body = json.dumps(
        error_body(
            "The server has too many open connections. Retry later.",
            "rate_limit_error",
            code="too_many_connections",
        )
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nretry-after: 1\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class _Guarded:
    """The limits, mixed into uvicorn's HTTP protocol (h11 or httptools)."""

    settings: ServerSettings
    open: dict[_Guarded, None]  # every guarded connection of the server, oldest first
    transport: asyncio.Transport
    cycle: Any

    def _guard_start(self) -> None:
        self.head_timer: asyncio.TimerHandle | None = None
        self.send_timer: asyncio.TimerHandle | None = None
        self.head_cycle: Any = self.cycle
        if len(self.open) >= self.settings.max_connections and not self._evict():
            self.transport.write(_busy_answer())
            self.transport.close()
            return
        self.open[self] = None
        self._arm_head()

    def _evict(self) -> bool:
        for other in self.open:
            if other._waiting():
                other._drop()
                return True
        return False

    def _waiting(self) -> bool:
        """No request in flight: still reading a request head, or idle between requests."""
        return self.cycle is None or bool(self.cycle.response_complete)

    def _drop(self) -> None:
        self.open.pop(self, None)
        self._disarm()
        self.transport.abort()

    def _arm_head(self) -> None:
        loop = asyncio.get_running_loop()
        if self.head_timer is not None:
            self.head_timer.cancel()
        self.head_cycle = self.cycle
        self.head_timer = loop.call_later(self.settings.header_timeout, self._head_expired)

    def _head_expired(self) -> None:
        self.head_timer = None
        if self.cycle is self.head_cycle and self._waiting():
            self._drop()  # no new request head arrived in time

    def _head_check(self) -> None:
        if self.head_timer is not None and self.cycle is not self.head_cycle:
            self.head_timer.cancel()  # a request head arrived
            self.head_timer = None

    def _send_blocked(self) -> None:
        loop = asyncio.get_running_loop()
        self.send_timer = loop.call_later(self.settings.send_timeout, self._drop)

    def _send_unblocked(self) -> None:
        if self.send_timer is not None:
            self.send_timer.cancel()
            self.send_timer = None

    def _disarm(self) -> None:
        for timer in (self.head_timer, self.send_timer):
            if timer is not None:
                timer.cancel()
        self.head_timer = self.send_timer = None


def _no_delay(transport: asyncio.Transport) -> None:
    """Small writes go out at once on a TCP connection (see the module's docstring)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # gone already: its protocol sees it lost
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def guarded_protocol(settings: ServerSettings) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol with the limits of ``settings``, for one server."""
    base: Any = AutoHTTPProtocol

    class GuardedProtocol(_Guarded, base):  # type: ignore[misc]
        def connection_made(self, transport: asyncio.Transport) -> None:
            _no_delay(transport)
            super().connection_made(transport)
            self._guard_start()

        def data_received(self, data: bytes) -> None:
            # the first bytes of a next request start its clock (silence before them is
            # the keep-alive's business)
            if self.head_timer is None and self._waiting() and self in self.open:
                self._arm_head()
            super().data_received(data)
            self._head_check()

        def pause_writing(self) -> None:
            super().pause_writing()
            self._send_blocked()

        def resume_writing(self) -> None:
            super().resume_writing()
            self._send_unblocked()

        def connection_lost(self, exc: Exception | None) -> None:
            self.open.pop(self, None)
            self._disarm()
            super().connection_lost(exc)

    GuardedProtocol.settings = settings
    GuardedProtocol.open = {}
    return GuardedProtocol


def uvicorn_options(settings: ServerSettings) -> dict[str, Any]:
    """The ``uvicorn.Config`` options that apply ``settings`` to connections."""
    return {"http": guarded_protocol(settings), "timeout_keep_alive": settings.idle_timeout}
