"""Running the branches of a parallel step: copies of one input stream for several
consumers, and branch outputs merged in arrival order, each branch at most one chunk
ahead of the consumer (threads on the sync path, tasks on the async path)."""

from __future__ import annotations

import contextvars
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from lmstream._accumulate import AddableDict
from lmstream._utils import EMPTY, aclose, close

if TYPE_CHECKING:
    import asyncio


__all__ = ["ATee", "Tee", "merge_tasks", "merge_threads"]


_FETCH: Any = object()


class _Copies:
    """What both tees share: a buffer per branch, the end of the input, its failure."""

    def __init__(self, n: int) -> None:
        self.buffers: list[deque[Any]] = [deque() for _ in range(n)]
        self.done = False
        self.error: BaseException | None = None

    def next_for(self, i: int) -> Any:
        """Branch ``i``'s next item, ``EMPTY`` at the end, or ``_FETCH``: read the input.

        A failed input fails every branch, so none goes on with the input cut short.
        """
        buf = self.buffers[i]
        if buf:
            return buf.popleft()
        if self.error is not None:
            raise self.error
        return EMPTY if self.done else _FETCH

    def got(self, item: Any) -> None:
        """The input gave ``item`` (``EMPTY``: it ended)."""
        if item is EMPTY:
            self.done = True
        else:
            for buf in self.buffers:
                buf.append(item)


class Tee(_Copies):
    """Copies of one iterator for several consumer threads."""

    def __init__(self, source: Iterator[Any], n: int) -> None:
        super().__init__(n)
        self.source = source
        self.lock = threading.Lock()

    def branch(self, i: int) -> Iterator[Any]:
        while True:
            with self.lock:
                item = self.next_for(i)
                if item is _FETCH:
                    try:
                        self.got(next(self.source, EMPTY))
                    except BaseException as exc:
                        self.error = exc
                        raise
                    item = self.next_for(i)
            if item is EMPTY:
                return
            yield item


class ATee(_Copies):
    """Copies of one async iterator for several consumer tasks."""

    def __init__(self, source: AsyncIterator[Any], n: int) -> None:
        import asyncio

        super().__init__(n)
        self.source = source
        self.lock = asyncio.Lock()

    async def branch(self, i: int) -> AsyncIterator[Any]:
        while True:
            async with self.lock:
                item = self.next_for(i)
                if item is _FETCH:
                    try:
                        self.got(await anext(self.source, EMPTY))
                    except BaseException as exc:
                        self.error = exc
                        raise
                    item = self.next_for(i)
            if item is EMPTY:
                return
            yield item


# What a branch worker hands the consumer: a chunk, an error, or the end of the branch.
_CHUNK, _ERROR, _DONE = range(3)


def merge_threads(branches: dict[str, Iterator[Any]]) -> Iterator[AddableDict]:
    """Drive each branch in its own thread; yield ``{key: chunk}`` in arrival order.

    A branch runs at most one chunk ahead of the consumer (a slot per branch), so a
    consumer that stops early leaves nothing generating; closing waits for every branch
    to be closed in its thread.
    """
    import queue  # only merging threads needs it: not loaded by ``import lmstream``

    merged: queue.Queue[tuple[str, int, Any]] = queue.Queue()
    stop = threading.Event()
    slots = {key: threading.Semaphore(1) for key in branches}

    def worker(key: str, it: Iterator[Any]) -> None:
        try:
            for chunk in it:
                slots[key].acquire()
                if stop.is_set():
                    break
                merged.put((key, _CHUNK, chunk))
        except BaseException as exc:
            merged.put((key, _ERROR, exc))
        finally:
            close(it)
            merged.put((key, _DONE, None))

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(worker, *kv), daemon=True)
        for kv in branches.items()
    ]
    for t in threads:
        t.start()
    try:
        remaining = len(threads)
        while remaining:
            key, kind, item = merged.get()
            if kind == _DONE:
                remaining -= 1
            elif kind == _ERROR:
                raise item
            else:
                slots[key].release()
                yield AddableDict({key: item})
    finally:
        stop.set()
        for slot in slots.values():
            slot.release()  # wake a worker waiting for its slot: it sees the stop flag
        for t in threads:
            t.join()


async def merge_tasks(branches: dict[str, AsyncIterator[Any]]) -> AsyncIterator[tuple[str, Any]]:
    """Drive each branch in its own task; yield ``(key, chunk)`` in arrival order, each
    branch at most one chunk ahead of the consumer; closing cancels every branch."""
    import asyncio

    merged: asyncio.Queue[tuple[str, int, Any]] = asyncio.Queue()
    slots = {key: asyncio.Semaphore(1) for key in branches}

    async def worker(key: str, it: AsyncIterator[Any]) -> None:
        try:
            async for chunk in it:
                await slots[key].acquire()
                merged.put_nowait((key, _CHUNK, chunk))
        except BaseException as exc:
            merged.put_nowait((key, _ERROR, exc))
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            await aclose(it)
            merged.put_nowait((key, _DONE, None))

    tasks = [asyncio.ensure_future(worker(k, it)) for k, it in branches.items()]
    try:
        remaining = len(tasks)
        while remaining:
            key, kind, item = await merged.get()
            if kind == _DONE:
                remaining -= 1
            elif kind == _ERROR:
                raise item
            else:
                slots[key].release()
                yield key, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
