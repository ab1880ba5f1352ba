"""Runnables that fail on purpose, for the retry and fallback tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from lmstream import LLM, GenerationChunk

FAST = {"wait_exponential_jitter": False}


class Flaky(LLM):
    """Streams ``text``; its first ``failures`` calls raise ``error`` at chunk ``fail_at``."""

    def __init__(
        self, text: str, failures: int, fail_at: int = 0, error: Exception | None = None
    ) -> None:
        super().__init__()
        self.text = text
        self.failures = failures
        self.fail_at = fail_at
        self.error = error or KeyError("flaky")
        self.calls = 0
        self.lock = threading.Lock()

    def _chunks(self) -> Iterator[str]:
        with self.lock:
            self.calls += 1
            failing = self.calls <= self.failures
        for i, char in enumerate(self.text):
            if failing and i == self.fail_at:
                raise self.error
            yield char
        if failing and self.fail_at >= len(self.text):
            raise self.error

    def _stream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        for char in self._chunks():
            yield GenerationChunk(char)

    async def _astream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[GenerationChunk]:
        for char in self._chunks():
            await asyncio.sleep(0)
            yield GenerationChunk(char)


def drain(stream: Any, got: list[Any]) -> None:
    """Read a sync or async stream into ``got`` (what arrived before an error stays)."""
    if not hasattr(stream, "__anext__"):
        for item in stream:
            got.append(item)
        return

    async def run() -> None:
        async for item in stream:
            got.append(item)

    asyncio.run(run())


class Picky:
    """A generator step that fails, before any output, on its first ``failures`` runs;
    it records the input each run saw."""

    def __init__(self, failures: int, read_before_failing: int = 2) -> None:
        self.failures = failures
        self.read = read_before_failing
        self.runs: list[list[str]] = []

    def __call__(self, chunks: Iterator[str]) -> Iterator[str]:
        seen: list[str] = []
        self.runs.append(seen)
        failing = len(self.runs) <= self.failures
        for chunk in chunks:
            seen.append(chunk)
            if failing and len(seen) == self.read:
                raise KeyError("picky")
        yield "".join(seen).upper()
