"""Admission per served model: at most ``max_active`` generations at once, the rest
wait in arrival order, and past ``max_waiting`` a request is turned away with 429 and
Retry-After instead of hanging."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from lmstream.server.errors import HTTPError

__all__ = ["Gate", "Ticket"]


class Ticket:
    """A place at the gate: granted at once, or waiting in line."""

    def __init__(self, gate: Gate, waiter: asyncio.Future[None] | None) -> None:
        self.gate = gate
        self.waiter = waiter
        self.granted = waiter is None
        self.released = False
        self.started = time.monotonic()

    async def wait(self) -> None:
        """Wait for the turn (returns at once if it was granted on arrival)."""
        if not self.granted:
            assert self.waiter is not None
            await self.waiter
            self.granted = True
        self.started = time.monotonic()

    def release(self) -> None:
        """Give the slot (or the place in line) back; safe to call more than once."""
        if self.released:
            return
        self.released = True
        waiter = self.waiter
        if self.granted or (waiter is not None and waiter.done() and not waiter.cancelled()):
            self.gate.finished(time.monotonic() - self.started)
        elif waiter is not None:
            waiter.cancel()
            if waiter in self.gate.waiters:  # finished() may have skipped past it already
                self.gate.waiters.remove(waiter)


class Gate:
    """A fair (FIFO) bounded admission gate."""

    def __init__(self, max_active: int, max_waiting: int) -> None:
        self.max_active = max_active
        self.max_waiting = max_waiting
        self.active = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.mean_seconds = 1.0  # smoothed duration of one generation, for Retry-After

    def retry_after(self) -> int:
        """Seconds a turned-away client should wait before trying again."""
        ahead = len(self.waiters) + self.active
        return max(1, math.ceil(ahead * self.mean_seconds / self.max_active))

    def reserve(self, *, admitted: bool = False) -> Ticket:
        """A ticket now, or 429 with Retry-After when too many are already waiting;
        ``admitted``: part of a request that holds its place already (a batch's next
        input), which queues whatever the line's length."""
        if self.active < self.max_active and not self.waiters:
            self.active += 1
            return Ticket(self, None)
        if len(self.waiters) >= self.max_waiting and not admitted:
            raise HTTPError(
                429,
                "The model is busy: too many requests are waiting. Retry later.",
                "rate_limit_error",
                code="server_busy",
                headers={"Retry-After": str(self.retry_after())},
            )
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return Ticket(self, waiter)

    def finished(self, seconds: float) -> None:
        """A granted ticket is done: hand its slot to the next in line."""
        self.mean_seconds = 0.8 * self.mean_seconds + 0.2 * seconds
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot moves on: active stays the same
                return
        self.active -= 1

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one generation slot for the duration of the block."""
        ticket = self.reserve()
        try:
            await ticket.wait()
            yield
        finally:
            ticket.release()
