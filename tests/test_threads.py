"""The sync-to-async bridge: one worker thread per stream, a bounded buffer, a cancel flag;
and ``run_sync`` from sync code and from inside a running loop."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
from helpers import wait_until

from lmstream._threads import iterate_in_thread, run_in_thread, run_sync


class Producer:
    """A counting producer that records its thread and whether its cleanup ran."""

    def __init__(self, limit: int | None = None, fail_at: int | None = None) -> None:
        self.limit = limit
        self.fail_at = fail_at
        self.produced = 0
        self.threads: set[threading.Thread] = set()
        self.cleaned = threading.Event()

    def __call__(self) -> Iterator[int]:
        try:
            i = 0
            while self.limit is None or i < self.limit:
                self.threads.add(threading.current_thread())
                if i == self.fail_at:
                    raise KeyError(f"failed at {i}")
                self.produced += 1
                yield i
                i += 1
        finally:
            self.cleaned.set()


async def test_items_arrive_in_order_from_one_worker_thread() -> None:
    producer = Producer(limit=50)
    items = [item async for item in iterate_in_thread(producer, maxsize=4)]
    assert items == list(range(50))
    (thread,) = producer.threads
    assert thread is not threading.current_thread()
    assert producer.cleaned.is_set()


async def test_one_thread_per_stream_even_with_several_streams_at_once() -> None:
    producers = [Producer(limit=20) for _ in range(3)]

    async def consume(p: Producer) -> list[int]:
        return [item async for item in iterate_in_thread(p, maxsize=2)]

    results = await asyncio.gather(*(consume(p) for p in producers))
    assert results == [list(range(20))] * 3
    threads = [next(iter(p.threads)) for p in producers]
    assert all(len(p.threads) == 1 for p in producers)
    assert len(set(threads)) == 3


@pytest.mark.parametrize("maxsize", [1, 3, 8])
async def test_the_producer_never_runs_more_than_the_buffer_ahead(maxsize: int) -> None:
    producer = Producer()  # endless
    stream = iterate_in_thread(producer, maxsize=maxsize)
    consumed = 0
    try:
        for _ in range(5):
            await stream.__anext__()
            consumed += 1
            # the producer fills the buffer and then holds one more item while it waits
            full = partial(lambda target: producer.produced >= target, consumed + maxsize)
            await asyncio.to_thread(wait_until, full)
            await asyncio.sleep(0.02)  # a chance to run further ahead if it were unbounded
            assert consumed + maxsize <= producer.produced <= consumed + maxsize + 1
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert producer.cleaned.is_set()


async def test_aclose_stops_the_producer_and_waits_for_its_cleanup() -> None:
    producer = Producer()
    stream = iterate_in_thread(producer, maxsize=2)
    assert [await stream.__anext__() for _ in range(3)] == [0, 1, 2]
    await stream.aclose()  # type: ignore[attr-defined]
    assert producer.cleaned.is_set()  # cleanup ran before aclose() returned
    (thread,) = producer.threads
    thread.join(5)
    assert not thread.is_alive()
    produced = producer.produced
    await asyncio.sleep(0.02)
    assert producer.produced == produced <= 3 + 2 + 1


async def test_break_then_aclose_stops_the_producer() -> None:
    producer = Producer()
    stream = iterate_in_thread(producer, maxsize=2)
    async for item in stream:
        if item == 1:
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert producer.cleaned.is_set()
    assert producer.produced <= 2 + 2 + 1


async def test_cancelling_the_consumer_task_stops_the_producer() -> None:
    gate = threading.Semaphore(3)
    cleaned = threading.Event()
    produced: list[int] = []

    def gated() -> Iterator[int]:
        try:
            for i in range(1000):
                gate.acquire()
                produced.append(i)
                yield i
        finally:
            cleaned.set()

    got: list[int] = []
    three = asyncio.Event()

    async def consume() -> None:
        async for item in iterate_in_thread(gated, maxsize=2):
            got.append(item)
            if len(got) == 3:
                three.set()

    task = asyncio.ensure_future(consume())
    await three.wait()
    task.cancel()  # it is waiting for the fourth item
    gate.release(100)  # the producer may go on, up to the cancel flag or a full buffer
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()
    assert len(produced) <= 3 + 2 + 1


async def test_cancelling_a_consumer_waiting_on_a_blocked_producer() -> None:
    release = threading.Event()
    cleaned = threading.Event()

    def blocked() -> Iterator[int]:
        try:
            yield 0
            release.wait(10)
            yield 1
        finally:
            cleaned.set()

    async def consume() -> list[int]:
        return [item async for item in iterate_in_thread(blocked)]

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.01)
    assert not task.done()  # the consumer waits for the producer's cleanup ...
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()  # ... which ran before the task finished


async def test_errors_propagate_with_their_type_after_the_items_before_them() -> None:
    producer = Producer(fail_at=2)
    got: list[int] = []

    async def consume() -> None:
        async for item in iterate_in_thread(producer):
            got.append(item)

    with pytest.raises(KeyError, match="failed at 2"):
        await consume()
    assert got == [0, 1]
    assert producer.cleaned.is_set()


async def test_an_error_making_the_iterator_propagates() -> None:
    def make() -> Iterator[int]:
        raise LookupError("no iterator")

    with pytest.raises(LookupError, match="no iterator"):
        async for _ in iterate_in_thread(make):
            pass


async def test_a_failing_close_is_reported() -> None:
    class Closing:
        def __iter__(self) -> Closing:
            return self

        def __next__(self) -> int:
            raise StopIteration

        def close(self) -> None:
            raise OSError("close failed")

    with pytest.raises(OSError, match="close failed"):
        async for _ in iterate_in_thread(Closing):
            pass


async def test_the_producer_sees_the_consumers_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("consumer")

    def make() -> Iterator[str]:
        yield var.get()

    assert [x async for x in iterate_in_thread(make)] == ["consumer"]


async def test_no_thread_is_left_behind_after_many_streams() -> None:
    async def one(i: int) -> None:
        producer = Producer(limit=None if i % 3 else 5, fail_at=4 if i % 5 == 1 else None)
        stream = iterate_in_thread(producer, maxsize=2)
        try:
            async for item in stream:
                if item == 2 and i % 3:
                    break
        except KeyError:
            pass
        finally:
            await stream.aclose()  # type: ignore[attr-defined]

    await one(0)  # start anything started once per process
    before = threading.active_count()
    for i in range(200):
        await one(i)
    for _ in range(500):  # threads that have signalled the end may still be exiting
        if threading.active_count() <= before:
            break
        await asyncio.sleep(0.01)
    assert threading.active_count() <= before


def test_run_sync_from_sync_code() -> None:
    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    assert run_sync(add(2, 3)) == 5


def test_run_sync_propagates_errors_and_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")

    async def read() -> str:
        return var.get()

    async def fail() -> None:
        raise KeyError("x")

    assert run_sync(read()) == "caller"
    with pytest.raises(KeyError):
        run_sync(fail())


async def test_run_sync_from_inside_a_running_loop() -> None:
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return x * 2

    assert run_sync(double(21)) == 42  # blocks this loop's thread, but works


def test_run_sync_refuses_the_background_loop_itself() -> None:
    async def inner() -> int:
        return 1

    async def outer() -> Any:
        coro = inner()
        try:
            return run_sync(coro)
        finally:
            coro.close()

    with pytest.raises(RuntimeError, match="background loop"):
        run_sync(outer())


async def test_run_in_thread_runs_elsewhere_with_the_context() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")

    def where() -> tuple[threading.Thread, str]:
        return threading.current_thread(), var.get()

    thread, value = await run_in_thread(where)
    assert thread is not threading.current_thread()
    assert value == "caller"


def test_a_producer_waiting_before_its_first_item_can_see_the_consumer_leave() -> None:
    from lmstream._threads import StopRequested, iterate_in_thread, stop_requested

    never = threading.Event()
    gave_up = threading.Event()
    started = threading.Event()

    def blocked() -> Iterator[int]:
        started.set()
        while not never.wait(0.01):  # like waiting for a model's lock
            if stop_requested():
                gave_up.set()
                raise StopRequested
        yield 1

    async def main() -> None:
        stream = iterate_in_thread(blocked)
        task = asyncio.ensure_future(stream.__anext__())
        await asyncio.to_thread(started.wait)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await stream.aclose()

    asyncio.run(main())
    assert gave_up.wait(5)
