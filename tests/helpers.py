"""Helpers for tests that run a behaviour in both flavours (sync and async)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from lmstream import BaseCallbackHandler


def _collect_async(agen: AsyncIterator[Any]) -> list[Any]:
    async def run() -> list[Any]:
        return [item async for item in agen]

    return asyncio.run(run())


def collect(stream: Iterator[Any] | AsyncIterator[Any]) -> list[Any]:
    """All items of a sync or async stream (an async one runs on a fresh loop)."""
    if hasattr(stream, "__anext__"):
        return _collect_async(stream)  # type: ignore[arg-type]
    return list(stream)  # type: ignore[arg-type]


def is_sync(flavour: str) -> bool:
    """Whether ``flavour`` is the sync path."""
    return flavour == "sync"


def stream_of(obj: Any, flavour: str, *args: Any, **kwargs: Any) -> Any:
    """``obj.stream(...)`` or ``obj.astream(...)``."""
    return getattr(obj, "stream" if is_sync(flavour) else "astream")(*args, **kwargs)


def chunks_of(obj: Any, flavour: str, *args: Any, **kwargs: Any) -> list[Any]:
    """``obj.stream_chunks(...)`` or ``obj.astream_chunks(...)``, collected."""
    name = "stream_chunks" if is_sync(flavour) else "astream_chunks"
    return collect(getattr(obj, name)(*args, **kwargs))


def invoke_of(obj: Any, flavour: str, *args: Any, **kwargs: Any) -> Any:
    """``obj.invoke(...)`` or ``await obj.ainvoke(...)``."""
    if is_sync(flavour):
        return obj.invoke(*args, **kwargs)
    return asyncio.run(obj.ainvoke(*args, **kwargs))


def take(stream: Iterator[Any] | AsyncIterator[Any], n: int) -> list[Any]:
    """The first ``n`` items of a stream, then close it (``close()`` / ``aclose()``)."""
    if hasattr(stream, "__anext__"):

        async def run() -> list[Any]:
            items = [await stream.__anext__() for _ in range(n)]  # type: ignore[union-attr]
            await stream.aclose()  # type: ignore[union-attr]
            return items

        return asyncio.run(run())
    items = [next(stream) for _ in range(n)]  # type: ignore[arg-type]
    stream.close()  # type: ignore[union-attr]
    return items


def events_of(runnable: Any, *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """Every event of ``runnable.astream_events(...)``."""
    return collect(runnable.astream_events(*args, **kwargs))


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Outcomes(BaseCallbackHandler):
    """Records LLM runs as callbacks see them: each start's first prompt, and how each run
    ended (``finished``, ``failed`` or ``cancelled``), in order; safe across threads."""

    def __init__(self) -> None:
        self.starts: list[str] = []
        self.outcomes: list[str] = []
        self._lock = threading.Lock()

    def on_llm_start(self, serialized: Any, prompts: list[str], **kwargs: Any) -> None:
        with self._lock:
            self.starts.append(prompts[0] if prompts else "")

    def _ended(self, outcome: str) -> None:
        with self._lock:
            self.outcomes.append(outcome)

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self._ended("finished")

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self._ended("failed")

    def on_llm_cancel(self, response: Any, **kwargs: Any) -> None:
        self._ended("cancelled")


def same_answers(got: Sequence[str], expected: Sequence[str]) -> bool:
    """Whether the local model gave the ``expected`` answers, allowing for its prompt cache:
    a prompt evaluated after a different one reuses their common prefix and evaluates the
    rest in another split, so at a near-tie the greedy words may part after the start (a
    fresh evaluation would cost the whole prompt, ~170 ms on the embedded model)."""
    return len(got) == len(expected) and all(
        g == e or g.split()[:2] == e.split()[:2] for g, e in zip(got, expected, strict=True)
    )
