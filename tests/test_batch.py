"""Batch: a sliding window of ``max_concurrency`` calls (never waves), one result or one
exception per input in input order, and ``*_as_completed`` in completion order."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from helpers import collect, is_sync
from stream_probes import settle, take_then

from lmstream import (
    BaseCallbackHandler,
    FakeLLM,
    InvalidInputError,
    Runnable,
    RunnableLambda,
)

WAIT = 10.0  # seconds a step waits for another before it fails (a regression fails, not hangs)

METHODS = ["batch", "abatch", "batch_as_completed", "abatch_as_completed"]


def run_batch(runnable: Runnable[Any, Any], method: str, *args: Any, **kwargs: Any) -> list[Any]:
    """Results in input order, whichever batch method ran."""
    if method == "batch":
        return runnable.batch(*args, **kwargs)
    if method == "abatch":
        return asyncio.run(runnable.abatch(*args, **kwargs))
    pairs = collect(getattr(runnable, method)(*args, **kwargs))
    indices = [i for i, _ in pairs]
    assert sorted(indices) == list(range(len(pairs)))
    return [r for _, r in sorted(pairs, key=lambda p: p[0])]


def completion_order(runnable: Runnable[Any, Any], method: str, *args: Any, **kw: Any) -> list[int]:
    pairs = collect(getattr(runnable, method)(*args, **kw))
    return [i for i, _ in pairs]


def is_async_method(method: str) -> bool:
    return method.startswith("a")


class Gate:
    """Events and counters that work for sync steps (threads) and async steps (one loop)."""

    def __init__(self, asynchronous: bool) -> None:
        self.asynchronous = asynchronous
        self.lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.started: list[Any] = []
        self.finished: list[Any] = []
        self.on_leave: list[Callable[[], None]] = []

    def enter(self, x: Any) -> None:
        with self.lock:
            self.started.append(x)
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)

    def leave(self, x: Any) -> None:
        with self.lock:
            self.in_flight -= 1
            self.finished.append(x)
        for hook in self.on_leave:
            hook()


def step(gate: Gate, body: Callable[[Any], Any], abody: Callable[[Any], Any]) -> RunnableLambda:
    """A lambda that counts itself in and out around ``body`` (sync) or ``abody`` (async)."""

    def sync(x: Any) -> Any:
        gate.enter(x)
        try:
            return body(x)
        finally:
            gate.leave(x)

    async def asynchronous(x: Any) -> Any:
        gate.enter(x)
        try:
            return await abody(x)
        finally:
            gate.leave(x)

    return RunnableLambda(asynchronous if gate.asynchronous else sync)


# -- sliding window -------------------------------------------------------------------------


def first_waits_for_the_rest(gate: Gate, n: int) -> RunnableLambda:
    """Item 0 finishes only once items 1..n-1 have: waves of max_concurrency would never
    start the later items while item 0 waits, so they would time out."""
    others_done = threading.Event()
    aothers = asyncio.Event() if gate.asynchronous else None

    def check() -> None:
        if len(gate.finished) == n - 1 and 0 not in gate.finished:
            others_done.set()
            if aothers is not None:
                aothers.set()

    gate.on_leave.append(check)

    def body(x: int) -> int:
        if x == 0 and not others_done.wait(WAIT):
            raise TimeoutError("the other items never ran: waves, not a sliding window")
        return x * 10

    async def abody(x: int) -> int:
        assert aothers is not None
        if x == 0:
            try:
                await asyncio.wait_for(aothers.wait(), WAIT)
            except TimeoutError:
                raise TimeoutError("the others never ran: waves, not a sliding window") from None
        await asyncio.sleep(0)
        return x * 10

    return step(gate, body, abody)


@pytest.mark.parametrize("method", METHODS)
def test_max_concurrency_is_a_sliding_window(method: str) -> None:
    gate = Gate(is_async_method(method))
    runnable = first_waits_for_the_rest(gate, 4)
    results = run_batch(runnable, method, [0, 1, 2, 3], {"max_concurrency": 2})
    assert results == [0, 10, 20, 30]
    assert gate.finished[-1] == 0
    assert gate.peak == 2


ORDER = [2, 0, 3, 1]


def test_batch_as_completed_yields_each_result_as_it_finishes() -> None:
    # each call waits for its turn, given when the consumer has received the one before:
    # if results were held back, the calls would time out
    turns = {i: threading.Event() for i in ORDER}

    def body(x: int) -> int:
        if not turns[x].wait(WAIT):
            raise TimeoutError(f"item {x} never got its turn")
        return x * 10

    turns[ORDER[0]].set()
    received = []
    for i, result in RunnableLambda(body).batch_as_completed([0, 1, 2, 3]):
        received.append((i, result))
        if len(received) < len(ORDER):
            turns[ORDER[len(received)]].set()
    assert received == [(i, i * 10) for i in ORDER]


async def test_abatch_as_completed_yields_each_result_as_it_finishes() -> None:
    turns = {i: asyncio.Event() for i in ORDER}

    async def body(x: int) -> int:
        await asyncio.wait_for(turns[x].wait(), WAIT)
        return x * 10

    turns[ORDER[0]].set()
    received = []
    async for i, result in RunnableLambda(body).abatch_as_completed([0, 1, 2, 3]):
        received.append((i, result))
        if len(received) < len(ORDER):
            turns[ORDER[len(received)]].set()
    assert received == [(i, i * 10) for i in ORDER]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("limit", [1, 3])
def test_never_more_than_max_concurrency_in_flight(method: str, limit: int) -> None:
    gate = Gate(is_async_method(method))
    barrier = threading.Barrier(limit, timeout=WAIT)

    def body(x: int) -> int:
        barrier.wait()  # only passes once `limit` calls are in flight together
        return x

    async def abody(x: int) -> int:
        for _ in range(3):
            await asyncio.sleep(0)
        return x

    runnable = step(gate, body, abody)
    results = run_batch(runnable, method, list(range(4 * limit)), {"max_concurrency": limit})
    assert results == list(range(4 * limit))
    assert gate.peak == limit


def test_without_max_concurrency_everything_may_run_at_once() -> None:
    gate = Gate(True)

    async def abody(x: int) -> int:
        await asyncio.sleep(0)
        return x

    runnable = step(gate, lambda x: x, abody)
    assert asyncio.run(runnable.abatch(list(range(6)))) == list(range(6))
    assert gate.peak == 6


# -- results and exceptions -----------------------------------------------------------------


def inverse(gate: Gate) -> RunnableLambda:
    async def abody(x: int) -> float:
        await asyncio.sleep(0)
        return 1 / x

    return step(gate, lambda x: 1 / x, abody)


@pytest.mark.parametrize("method", METHODS)
def test_return_exceptions_gives_each_input_its_own_result(method: str) -> None:
    runnable = inverse(Gate(is_async_method(method)))
    results = run_batch(runnable, method, [1, 0, 2, 0, 4], return_exceptions=True)
    assert results[0] == 1.0 and results[2] == 0.5 and results[4] == 0.25
    assert isinstance(results[1], ZeroDivisionError)
    assert isinstance(results[3], ZeroDivisionError)
    assert results[1] is not results[3]


@pytest.mark.parametrize("method", METHODS)
def test_order_is_kept_when_completion_order_differs(method: str) -> None:
    gate = Gate(is_async_method(method))
    runnable = first_waits_for_the_rest(gate, 5)
    assert run_batch(runnable, method, [0, 1, 2, 3, 4]) == [0, 10, 20, 30, 40]
    assert gate.finished[-1] == 0


@pytest.mark.parametrize("method", METHODS)
def test_the_first_exception_propagates_and_pending_work_is_cancelled(method: str) -> None:
    gate = Gate(is_async_method(method))
    runnable = inverse(gate)
    with pytest.raises(ZeroDivisionError):
        run_batch(runnable, method, [0, 1, 2, 3, 4, 5, 6, 7], {"max_concurrency": 1})
    assert gate.started == [0]  # nothing started after the failure


@pytest.mark.parametrize("method", ["abatch", "abatch_as_completed"])
def test_a_failure_cancels_the_calls_in_flight(method: str) -> None:
    cancelled: list[int] = []

    async def abody(x: int) -> int:
        if x == 0:
            await asyncio.sleep(0)
            raise KeyError("first")
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:
            cancelled.append(x)
            raise
        return x

    gate = Gate(True)
    runnable = step(gate, lambda x: x, abody)
    with pytest.raises(KeyError, match="first"):
        run_batch(runnable, method, [0, 1, 2, 3], {"max_concurrency": 2})
    assert gate.started == [0, 1]
    assert cancelled == [1]


@pytest.mark.parametrize("method", ["batch", "batch_as_completed"])
def test_a_failure_waits_for_the_threads_in_flight_and_starts_nothing_more(method: str) -> None:
    failed = threading.Event()

    def body(x: int) -> int:
        if x == 0:
            failed.set()
            raise KeyError("first")
        if x == 1:
            failed.wait(WAIT)  # still running when the failure is seen
        return x

    gate = Gate(False)
    runnable = step(gate, body, body)
    with pytest.raises(KeyError, match="first"):
        run_batch(runnable, method, [0, 1, 2, 3], {"max_concurrency": 2})
    assert gate.in_flight == 0  # the call in flight finished before the error was raised
    assert len(gate.started) <= 3


@pytest.mark.parametrize("method", METHODS)
def test_a_config_list_must_match_the_inputs(method: str) -> None:
    runnable = RunnableLambda(lambda x: x)
    with pytest.raises(InvalidInputError, match="same length"):
        run_batch(runnable, method, [1, 2, 3], [{}, {}])


@pytest.mark.parametrize("method", METHODS)
def test_a_config_list_gives_each_input_its_config(method: str) -> None:
    def tagged(x: int, config: Any) -> Any:
        return (x, config["tags"])

    configs = [{"tags": [f"t{i}"]} for i in range(3)]
    results = run_batch(RunnableLambda(tagged), method, [0, 1, 2], configs)
    assert [(x, [t for t in tags if t.startswith("t")]) for x, tags in results] == [
        (0, ["t0"]),
        (1, ["t1"]),
        (2, ["t2"]),
    ]


class RootIds(BaseCallbackHandler):
    def __init__(self) -> None:
        self.ids: list[uuid.UUID] = []
        self.lock = threading.Lock()

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: Any, **kw: Any) -> None:
        if kw.get("parent_run_id") is None:
            with self.lock:
                self.ids.append(run_id)


@pytest.mark.parametrize("method", METHODS)
def test_one_config_with_a_run_id_names_the_first_run_only(method: str) -> None:
    run_id = uuid.uuid4()
    handler = RootIds()
    with pytest.warns(RuntimeWarning, match="run_id"):
        run_batch(
            RunnableLambda(lambda x: x),
            method,
            [1, 2, 3],
            {"run_id": run_id, "callbacks": [handler]},
        )
    assert len(handler.ids) == 3
    assert handler.ids.count(run_id) == 1


@pytest.mark.parametrize("method", METHODS)
def test_empty_and_single_inputs(method: str) -> None:
    runnable = RunnableLambda(lambda x: x + 1)
    assert run_batch(runnable, method, []) == []
    assert run_batch(runnable, method, [1]) == [2]
    (error,) = run_batch(
        inverse(Gate(is_async_method(method))), method, [0], return_exceptions=True
    )
    assert isinstance(error, ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        run_batch(inverse(Gate(is_async_method(method))), method, [0])


@pytest.mark.parametrize("method", METHODS)
def test_a_string_is_not_a_list_of_inputs(method: str) -> None:
    with pytest.raises(InvalidInputError):
        run_batch(RunnableLambda(lambda x: x), method, "abc")


@pytest.mark.parametrize("method", METHODS)
def test_kwargs_reach_every_call(method: str) -> None:
    llm = FakeLLM(["hello"])
    assert run_batch(llm, method, ["a", "b", "c"], max_tokens=2) == ["he", "he", "he"]


# -- closing the *_as_completed iterators ---------------------------------------------------


def test_closing_as_completed_stops_pending_work(flavour: str) -> None:
    gate = Gate(not is_sync(flavour))

    async def abody(x: int) -> int:
        await asyncio.sleep(0)
        return x

    runnable = step(gate, lambda x: x, abody)
    method = "batch_as_completed" if is_sync(flavour) else "abatch_as_completed"
    stream = getattr(runnable, method)(list(range(20)), {"max_concurrency": 1})
    items, (started, in_flight) = take_then(stream, 1, lambda: (len(gate.started), gate.in_flight))
    assert items == [(0, 0)]
    assert started <= 2  # the first, and at most the one in flight when it was closed
    assert in_flight == 0  # closing waited for (or cancelled) the call in flight
    settle()
    assert len(gate.started) == started


async def test_aclosing_as_completed_cancels_the_call_in_flight() -> None:
    cancelled = asyncio.Event()

    async def slow(x: int) -> int:
        if x == 0:
            return 0
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return x

    agen = RunnableLambda(slow).abatch_as_completed([0, 1, 2], {"max_concurrency": 2})
    assert await agen.__anext__() == (0, 0)
    await agen.aclose()  # type: ignore[attr-defined]
    assert cancelled.is_set()
