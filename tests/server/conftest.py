"""Fixtures for the server tests: a real uvicorn server on loopback, in a thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from server_runner import running


@pytest.fixture
def serve() -> Callable[..., Any]:
    """``with serve({"name": llm}, **settings) as server: ...``"""
    return running
