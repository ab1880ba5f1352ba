"""Running the branches of a parallel step: copies of one input stream for several
consumers, and branch outputs merged in arrival order, each branch at most one chunk
ahead of the consumer (threads on the sync path, tasks on the async path)."""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from typing import Any

from lmstream._accumulate import AddableDict
from lmstream._execution import EMPTY, aclose, close

__all__ = ["ATee", "Tee", "merge_tasks", "merge_threads"]


class Tee:
    """Copies of one iterator for several consumer threads."""

    def __init__(self, source: Iterator[Any], n: int) -> None:
        self.source = source
        self.lock = threading.Lock()
        self.buffers: list[deque[Any]] = [deque() for _ in range(n)]
        self.done = False

    def branch(self, i: int) -> Iterator[Any]:
        buf = self.buffers[i]
        while True:
            with self.lock:
                if not buf:
                    if self.done:
                        return
                    item = next(self.source, EMPTY)
                    if item is EMPTY:
                        self.done = True
                        return
                    for other in self.buffers:
                        other.append(item)
                item = buf.popleft()
            yield item


class ATee:
    """Copies of one async iterator for several consumer tasks."""

    def __init__(self, source: AsyncIterator[Any], n: int) -> None:
        self.source = source
        self.lock = asyncio.Lock()
        self.buffers: list[deque[Any]] = [deque() for _ in range(n)]
        self.done = False

    async def branch(self, i: int) -> AsyncIterator[Any]:
        buf = self.buffers[i]
        while True:
            async with self.lock:
                if not buf:
                    if self.done:
                        return
                    item = await anext(self.source, EMPTY)
                    if item is EMPTY:
                        self.done = True
                        return
                    for other in self.buffers:
                        other.append(item)
                item = buf.popleft()
            yield item


# What a branch worker hands the consumer: a chunk, an error, or the end of the branch.
_CHUNK, _ERROR, _DONE = range(3)


def merge_threads(branches: dict[str, Iterator[Any]]) -> Iterator[AddableDict]:
    """Drive each branch in its own thread; yield ``{key: chunk}`` in arrival order.

    A branch runs at most one chunk ahead of the consumer (a slot per branch), so a
    consumer that stops early leaves nothing generating; closing waits for every branch
    to be closed in its thread.
    """
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
