"""Bridges between sync and async code.

* ``iterate_in_thread``: a sync iterator consumed from async code through ONE worker
  thread per stream, a bounded buffer and a cancel flag. The consumer is woken only
  when it waits, never once per item through an executor hop.
* ``run_sync``: run a coroutine from sync code on one reusable background loop, never
  ``asyncio.run`` per call; ``drive_async`` iterates an async iterator from sync code on
  that loop, and ``SyncFromAsync`` from a worker thread on the loop the iterator lives on.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    import asyncio


__all__ = [
    "StopRequested",
    "SyncFromAsync",
    "drive_async",
    "iterate_in_thread",
    "run_in_thread",
    "run_sync",
    "stop_requested",
]

T = TypeVar("T")

_SENTINEL: Any = object()


class _BackgroundLoop:
    """One daemon thread running an event loop, started on first use."""

    def __init__(self) -> None:

        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        import asyncio

        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="lmstream-loop", daemon=True
                )
                thread.start()
                self._loop = loop
            return self._loop


_BACKGROUND = _BackgroundLoop()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from sync code on the shared background loop."""
    import asyncio

    loop = _BACKGROUND.loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:  # called from the background loop itself: cannot block it
        raise RuntimeError("run_sync() called from lmstream's background loop")
    ctx = contextvars.copy_context()
    future = asyncio.run_coroutine_threadsafe(_in_context(ctx, coro), loop)
    return future.result()


async def _in_context(ctx: contextvars.Context, coro: Coroutine[Any, Any, T]) -> T:
    # create_task copies the current context; inside ctx.run that is the caller's context
    import asyncio

    task = ctx.run(asyncio.get_running_loop().create_task, coro)
    return await task


async def _anext(it: AsyncIterator[Any]) -> Any:
    return await it.__anext__()


async def _aclose(it: AsyncIterator[Any]) -> None:
    await it.aclose()  # type: ignore[attr-defined]


def drive_async(it: AsyncIterator[T]) -> Iterator[T]:
    """A sync iterator over an async one, advanced on the background loop."""
    try:
        while True:
            try:
                item = run_sync(_anext(it))
            except StopAsyncIteration:
                return
            yield item
    finally:
        if hasattr(it, "aclose"):
            run_sync(_aclose(it))


class SyncFromAsync(Generic[T]):
    """A sync iterator over an async one that lives on ``loop`` (for worker threads)."""

    def __init__(self, it: AsyncIterator[T], loop: asyncio.AbstractEventLoop) -> None:
        self.it, self.loop = it, loop

    def __iter__(self) -> SyncFromAsync[T]:
        return self

    def __next__(self) -> T:
        import asyncio

        try:
            return asyncio.run_coroutine_threadsafe(_anext(self.it), self.loop).result()  # type: ignore[no-any-return]
        except StopAsyncIteration:
            raise StopIteration from None


async def run_in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking ``fn`` in a worker thread with the current context."""
    import asyncio

    return await asyncio.to_thread(fn, *args)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Channel(Generic[T]):
    """A bounded buffer from one producer thread to one async consumer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, maxsize: int) -> None:

        self.loop = loop
        self.maxsize = maxsize
        self.items: deque[T] = deque()
        self.cond = threading.Condition(threading.Lock())
        self.waiter: asyncio.Future[None] | None = None
        self.cancelled = False
        self.finished = False
        self.error: BaseException | None = None
        self.exited: asyncio.Future[None] = loop.create_future()

    def _notify_consumer(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None:
            self.loop.call_soon_threadsafe(_wake, waiter)

    def put(self, item: T) -> bool:
        """Called by the producer; False when the consumer has gone away."""
        with self.cond:
            while len(self.items) >= self.maxsize and not self.cancelled:
                self.cond.wait()
            if self.cancelled:
                return False
            self.items.append(item)
            self._notify_consumer()
        return True

    def close(self, error: BaseException | None) -> None:
        with self.cond:
            self.finished = True
            self.error = error
            self._notify_consumer()
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self.loop.call_soon_threadsafe(_wake, self.exited)

    def cancel(self) -> None:
        with self.cond:
            self.cancelled = True
            self.cond.notify_all()

    def take(self) -> T | asyncio.Future[None]:
        """An item, ``_SENTINEL`` at the end, or a future to await before trying again."""
        with self.cond:
            if self.items:
                item = self.items.popleft()
                if len(self.items) == self.maxsize - 1:
                    self.cond.notify()
                return item
            if self.finished:
                if self.error is not None:
                    raise self.error
                return _SENTINEL  # type: ignore[no-any-return]
            waiter = self.loop.create_future()
            self.waiter = waiter
            return waiter


class StopRequested(Exception):
    """Raised by a producer that saw ``stop_requested()``: it ends the stream quietly."""


_WORKER = threading.local()


def stop_requested() -> bool:
    """In a worker thread of ``iterate_in_thread``: whether its consumer has gone away.

    A producer that blocks before its first item (waiting for a lock, say) can poll this
    and raise ``StopRequested`` instead of starting work nobody will read."""
    channel = getattr(_WORKER, "channel", None)
    return channel is not None and channel.cancelled


def _produce(channel: _Channel[T], make_iter: Callable[[], Iterator[T]]) -> None:
    error: BaseException | None = None
    iterator: Iterator[T] | None = None
    _WORKER.channel = channel
    try:
        iterator = make_iter()
        for item in iterator:
            if not channel.put(item):
                break
    except StopRequested:
        pass
    except BaseException as exc:  # delivered to the consumer, which re-raises it
        error = exc
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:  # a failing close is reported if nothing else failed
                error = error or exc
        channel.close(error)


async def iterate_in_thread(
    make_iter: Callable[[], Iterator[T]], *, maxsize: int = 8, name: str = "lmstream-stream"
) -> AsyncIterator[T]:
    """Iterate ``make_iter()`` in one worker thread; items arrive through a bounded buffer.

    When the consumer stops (``aclose()``, ``break`` + close, task cancellation), the
    producer is told at once, stops before producing another item, closes its iterator in
    its own thread, and the consumer waits for that cleanup before returning.
    """
    import asyncio

    loop = asyncio.get_running_loop()
    channel: _Channel[T] = _Channel(loop, maxsize)
    ctx = contextvars.copy_context()
    thread = threading.Thread(
        target=ctx.run, args=(_produce, channel, make_iter), name=name, daemon=True
    )
    thread.start()
    try:
        while True:
            item = channel.take()
            if item is _SENTINEL:
                return
            if isinstance(item, asyncio.Future):
                await item
                continue
            yield item
    finally:
        channel.cancel()
        if not channel.exited.done():
            await asyncio.shield(channel.exited)
