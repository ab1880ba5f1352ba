"""Cancellation conformance: every provider, every way to stop, at most one token after.

For each provider there is a counter of tokens the model has produced (on the model's
side of any HTTP hop). A consumer takes three chunks and stops; once the stream has
returned, the model may have produced at most one more token than it had when the
consumer stopped (the one in flight), and it produces none afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from subjects import PROVIDERS, Subject

TAKE = 3
WAYS = ["break", "close", "aclose", "task-cancel", "events-consumer-stops"]
PAGE = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
BLOCK = re.compile(r"(<!-- cancel:start -->\n)(.*?)(\n<!-- cancel:end -->)", re.DOTALL)
AFTER: dict[tuple[str, str], int] = {}
"""Tokens the model produced after the consumer stopped, by provider and way."""
LEAKS: dict[str, str] = {}
"""What 1,000 cancelled streams left behind, by provider."""


def _stop_sync(subject: Subject, way: str) -> int:
    stream: Iterator[str] = subject.llm.stream(subject.prompt, max_tokens=subject.limit)
    if way == "break":
        for i, _ in enumerate(stream):
            if i + 1 == TAKE:
                at_stop = subject.produced()
                break
        del stream  # a plain for-loop break: the generator goes when its last reference does
        return at_stop
    for _ in range(TAKE):
        next(stream)
    at_stop = subject.produced()
    stream.close()  # type: ignore[attr-defined]
    return at_stop


async def _stop_async(subject: Subject, way: str) -> int:
    llm, prompt, limit = subject.llm, subject.prompt, subject.limit
    if way == "task-cancel":
        return await _cancel_task(subject)
    if way == "events-consumer-stops":
        events = llm.astream_events(prompt, max_tokens=limit)
        seen = 0
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for event in events:
                seen += event["event"] == "on_llm_stream"
                if seen == TAKE:
                    return subject.produced()
        raise AssertionError("the stream ended before the consumer stopped")
    stream: AsyncIterator[str] = llm.astream(prompt, max_tokens=limit)
    for _ in range(TAKE):
        await stream.__anext__()
    at_stop = subject.produced()
    await stream.aclose()  # type: ignore[attr-defined]
    return at_stop


async def _cancel_task(subject: Subject) -> int:
    got = asyncio.Event()
    count = 0
    at_stop: list[int] = []

    async def consume() -> None:
        nonlocal count
        async for _ in subject.llm.astream(subject.prompt, max_tokens=subject.limit):
            count += 1
            if count == TAKE:
                at_stop.append(subject.produced())
                got.set()

    task = asyncio.ensure_future(consume())
    await got.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return at_stop[0]


def stop(subject: Subject, way: str) -> int:
    """Stop a stream after TAKE chunks the given way; the count when it stopped."""
    if way in ("break", "close"):
        return _stop_sync(subject, way)
    return asyncio.run(_stop_async(subject, way))


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_the_model_stops_within_one_token(provider: str, way: str) -> None:
    with PROVIDERS[provider]() as subject:
        start = subject.produced()
        at_stop = stop(subject, way)
        ended = subject.settled()
        time.sleep(0.2)  # long enough for a runaway generation to show itself
        assert subject.produced() == ended  # nothing runs after the stream returned
    assert at_stop - start >= TAKE
    AFTER[provider, way] = ended - at_stop
    assert ended - at_stop <= 1 + subject.in_flight
    assert ended - start < subject.limit // 2


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.timeout(600)  # a thousand real streams: minutes on a busy 2-core machine
@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_a_thousand_cancelled_streams_leave_nothing_behind(provider: str) -> None:
    with PROVIDERS[provider]() as subject:
        for way in ("close", "aclose"):  # warm up pools and caches before counting
            stop(subject, way)
        threads, fds = threading.active_count(), _open_fds()

        async def many() -> tuple[int, int]:
            before = len(asyncio.all_tasks())
            for i in range(subject.soak // 2):
                stream = subject.llm.astream(subject.prompt, max_tokens=subject.limit)
                await stream.__anext__()
                await stream.aclose()  # type: ignore[attr-defined]
                if i % 50 == 0:
                    await asyncio.sleep(0)
            return before, len(asyncio.all_tasks())

        for _ in range(subject.soak // 2):
            stream = subject.llm.stream(subject.prompt, max_tokens=subject.limit)
            next(stream)
            stream.close()  # type: ignore[attr-defined]
        tasks_before, tasks_after = asyncio.run(many())
        subject.settled()
        assert _wait(lambda: threading.active_count() <= threads)
        LEAKS[provider] = (
            f"{subject.soak} streams: threads {threads}→{threading.active_count()}, "
            f"tasks {tasks_before}→{tasks_after}, fds {fds}→{_open_fds()}, "
            f"server connections {subject.open_connections()}"
        )
        assert tasks_after == tasks_before
        assert _open_fds() <= fds
        assert subject.open_connections() <= subject.pool_connections


def _wait(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.02)
    return condition()


def _table() -> str:
    head = ["Provider", *WAYS, "after the cancelled streams"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for provider in PROVIDERS:
        row = [provider, *(str(AFTER[provider, way]) for way in WAYS), LEAKS[provider]]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def test_the_published_figures_are_within_the_bounds() -> None:
    """The table in docs/reliability.md: this run's figures with ``LMSTREAM_WRITE_DOCS=1``;
    otherwise a published run's, which must cover every provider and way, within bounds."""
    page = PAGE.read_text(encoding="utf-8")
    match = BLOCK.search(page)
    assert match is not None, f"{PAGE} has no <!-- cancel:start --> ... <!-- cancel:end --> block"
    complete = len(AFTER) == len(PROVIDERS) * len(WAYS) and len(LEAKS) == len(PROVIDERS)
    if os.environ.get("LMSTREAM_WRITE_DOCS") == "1" and complete:
        PAGE.write_text(BLOCK.sub(lambda m: m[1] + _table() + m[3], page), encoding="utf-8")
        return
    rows = {line.split(" | ")[0].strip("| "): line.strip("|").split(" | ")
            for line in match[2].splitlines()[2:]}  # fmt: skip
    assert set(rows) == set(PROVIDERS)
    for provider, cells in rows.items():
        assert all(0 <= int(cell) <= 1 for cell in cells[1 : 1 + len(WAYS)]), (provider, cells)
        counts = re.findall(r"(\d+)→(\d+)", cells[-1])
        assert len(counts) == 3 and all(int(b) <= int(a) for a, b in counts), cells[-1]
