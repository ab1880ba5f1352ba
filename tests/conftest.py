"""Shared fixtures: every streaming test runs in both flavours through ``flavour``."""

from __future__ import annotations

import pytest
from helpers import chunks_of, collect, events_of, invoke_of, is_sync, stream_of, take

__all__ = ["chunks_of", "collect", "events_of", "invoke_of", "is_sync", "stream_of", "take"]


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    """Run a test once on the sync path and once on the async path."""
    return str(request.param)
