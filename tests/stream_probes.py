"""Stopping a stream early and looking at once, before anything else can clean up."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from lmstream import BaseCallbackHandler

T = TypeVar("T")


def take_then(
    stream: Iterator[Any] | AsyncIterator[Any], n: int, probe: Callable[[], T]
) -> tuple[list[Any], T]:
    """The first ``n`` items, then ``close()``/``aclose()``, then ``probe()`` at once.

    For an async stream the probe runs inside the loop, right after ``aclose()`` returns,
    so what the loop would clean up at its end (abandoned async generators, pending
    tasks) cannot make a missing close look like a prompt one.
    """
    if hasattr(stream, "__anext__"):

        async def run() -> tuple[list[Any], T]:
            items = [await stream.__anext__() for _ in range(n)]  # type: ignore[union-attr]
            await stream.aclose()  # type: ignore[union-attr]
            return items, probe()

        return asyncio.run(run())
    items = [next(stream) for _ in range(n)]  # type: ignore[arg-type]
    stream.close()  # type: ignore[union-attr]
    return items, probe()


def settle() -> None:
    """Give anything still running (wrongly) a chance to run on."""
    threading.Event().wait(0.05)


class Outcomes(BaseCallbackHandler):
    """Records each run's parent, the runs that ended, and the order of cancellations."""

    def __init__(self) -> None:
        self.parents: dict[Any, Any] = {}
        self.order: list[Any] = []
        self.ended: list[Any] = []
        self.lock = threading.Lock()

    def _start(self, run_id: Any, kw: dict[str, Any]) -> None:
        with self.lock:
            self.parents[run_id] = kw.get("parent_run_id")

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: Any, **kw: Any) -> None:
        self._start(run_id, kw)

    def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: Any, **kw: Any) -> None:
        self._start(run_id, kw)

    def on_chain_cancel(self, outputs: Any, *, run_id: Any, **kw: Any) -> None:
        with self.lock:
            self.order.append(run_id)

    def on_chain_end(self, outputs: Any, *, run_id: Any, **kw: Any) -> None:
        with self.lock:
            self.ended.append(run_id)

    def on_chain_error(self, error: BaseException, *, run_id: Any, **kw: Any) -> None:
        self.on_chain_end(None, run_id=run_id)

    on_llm_cancel = on_chain_cancel
    on_llm_end = on_chain_end
    on_llm_error = on_chain_error

    def snapshot(self) -> tuple[list[Any], set[Any]]:
        """(runs cancelled, in order; runs started that have not ended at all)."""
        with self.lock:
            return list(self.order), set(self.parents) - {*self.order, *self.ended}

    def assert_children_first(self, order: list[Any]) -> None:
        """No run was reported cancelled before a run inside it."""
        for i, run_id in enumerate(order):
            parent = self.parents[run_id]
            assert parent is None or parent in order[i + 1 :], "a parent was cancelled first"
