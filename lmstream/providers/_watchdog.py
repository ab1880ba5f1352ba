"""Deadlines for blocking socket reads, sync and async alike.

httpx fixes one read timeout per response body, so it cannot tell the wait for the first
token from the gap between later ones, and a keep-alive comment resets it. Instead, a
``Guard`` per response holds the deadline of the read in progress, and one daemon thread
per process shuts the socket down when a deadline passes: the blocked read (a thread's
``recv`` or an event loop's) then returns at once and the guard says which limit fired.

Moving a deadline later costs an attribute write; the thread re-checks an entry when it
wakes, so only a deadline that moves earlier takes the lock.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import socket
import threading
import time
from typing import Any

__all__ = ["Guard", "guard_for"]

_INF = math.inf


class Guard:
    """The deadline of one response's reads; ``fired`` names the limit that cut it."""

    __slots__ = ("_scheduled", "_sock", "deadline", "fired", "phase")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._scheduled = _INF
        self.deadline = _INF
        self.phase = ""
        self.fired: str | None = None

    def arm(self, deadline: float, phase: str) -> None:
        """Reads from now on must finish by ``deadline`` (``phase`` names the limit)."""
        self.phase = phase
        self.deadline = deadline
        if deadline < self._scheduled and self._sock is not None:
            _DOG.schedule(self, deadline)

    def disarm(self) -> None:
        """No read is in progress: nothing to cut."""
        self.deadline = _INF

    def release(self) -> None:
        """The response is done with its socket; after this the thread never touches it."""
        _DOG.release(self)


class _Watchdog:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._wake = threading.Condition(self.lock)
        self._heap: list[tuple[float, int, Guard]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._stale = 0

    def schedule(self, guard: Guard, when: float) -> None:
        with self.lock:
            if when >= guard._scheduled:
                return
            if guard._scheduled < _INF:
                self._stale += 1  # the guard's older entry
            guard._scheduled = when
            heapq.heappush(self._heap, (when, next(self._order), guard))
            if self._thread is None or not self._thread.is_alive():  # new, or lost to a fork
                self._thread = threading.Thread(target=self._run, name="lmstream-deadlines")
                self._thread.daemon = True
                self._thread.start()
            elif self._heap[0][2] is guard:
                self._wake.notify()

    def release(self, guard: Guard) -> None:
        with self.lock:
            guard.deadline = _INF
            guard._sock = None
            if guard._scheduled < _INF:
                guard._scheduled = _INF  # its entry is stale now
                self._stale += 1
                if self._stale > 256 and self._stale * 2 > len(self._heap):
                    # released guards would otherwise sit in the heap until their old
                    # deadlines: drop them all at once (linear, so amortised O(1))
                    self._heap = [e for e in self._heap if e[0] == e[2]._scheduled]
                    heapq.heapify(self._heap)
                    self._stale = 0

    def _run(self) -> None:
        with self.lock:
            while True:
                if not self._heap:
                    self._wake.wait()
                    continue
                when, _, guard = self._heap[0]
                now = time.monotonic()
                if when > now:
                    self._wake.wait(when - now)
                    continue
                heapq.heappop(self._heap)
                self._due(guard, when, now)

    def _due(self, guard: Guard, when: float, now: float) -> None:
        if when != guard._scheduled:
            self._stale -= 1  # superseded, or its guard released
            return
        guard._scheduled = _INF
        if guard._sock is None:
            return
        if guard.deadline > now:  # the deadline moved on: look again then
            if guard.deadline < _INF:
                guard._scheduled = guard.deadline
                heapq.heappush(self._heap, (guard.deadline, next(self._order), guard))
            return
        guard.fired = guard.phase
        _shutdown(guard._sock)


def _shutdown(sock: Any) -> None:
    try:
        if isinstance(sock, socket.socket):
            # the base class's method: an SSLSocket's own would drop its SSL object
            # under the feet of the thread reading it
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        else:  # an event loop's transport socket
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the read has ended anyway


_DOG = _Watchdog()


def _after_fork() -> None:
    global _DOG  # a child must not inherit a lock held by a thread it lacks
    _DOG = _Watchdog()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def guard_for(network_stream: Any) -> Guard | None:
    """A guard over the socket under an httpcore network stream, if it exposes one."""
    get = getattr(network_stream, "get_extra_info", None)
    sock = get("socket") if get is not None else None
    return None if sock is None else Guard(sock)
