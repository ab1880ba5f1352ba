"""Shared fixtures: every streaming test runs in both flavours through ``flavour``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest


def _collect_async(agen: AsyncIterator[Any]) -> list[Any]:
    async def run() -> list[Any]:
        return [item async for item in agen]

    return asyncio.run(run())


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    """Run a test once on the sync path and once on the async path."""
    return str(request.param)


def collect(stream: Iterator[Any] | AsyncIterator[Any]) -> list[Any]:
    """All items of a sync or async stream (an async one runs on a fresh loop)."""
    if hasattr(stream, "__anext__"):
        return _collect_async(stream)  # type: ignore[arg-type]
    return list(stream)  # type: ignore[arg-type]


Streamer = Callable[..., list[Any]]
