"""Shared fixtures: every streaming test runs in both flavours through ``flavour``; one
real ``llama_cpp.server`` for the session (slow to start) serves every test that needs it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import chunks_of, collect, events_of, invoke_of, is_sync, stream_of, take

__all__ = ["chunks_of", "collect", "events_of", "invoke_of", "is_sync", "stream_of", "take"]


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    """Run a test once on the sync path and once on the async path."""
    return str(request.param)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a real ``llama_cpp.server`` serving the embedded model."""
    from servers.llama import llama_server_at

    with llama_server_at(tmp_path_factory.mktemp("llama") / "server.log") as url:
        yield url
