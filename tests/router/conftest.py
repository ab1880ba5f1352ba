"""Fixtures for the router: three scripted backends for the session (reset per test; each
answers ``/v1/completions`` and ``/v1/chat/completions`` with the prompt or the last
message back), factories of routers over them (closed after the test), and ``lmstream
serve`` processes that a test may kill."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from helpers import free_port
from servers.scripted import Reply, ScriptedServer, echo
from servers.scripted_chat import chat_echo

from lmstream import ChatRouter, Router


def either_echo(body: Any) -> Reply:
    """The prompt back for a completion, the last message's words for a chat completion."""
    return chat_echo(body) if isinstance(body, dict) and "messages" in body else echo(body)


@pytest.fixture(scope="session")
def scripted_backends() -> Iterator[list[ScriptedServer]]:
    with ScriptedServer() as a, ScriptedServer() as b, ScriptedServer() as c:
        yield [a, b, c]


@pytest.fixture
def backends(scripted_backends: list[ScriptedServer]) -> list[ScriptedServer]:
    """Three scripted servers, each with an empty log, the echo handler and good health."""
    for server in scripted_backends:
        server.reset_log()
        server.handler = either_echo
        server.health = None
        server.metrics = ""
        server.probes.clear()
    return scripted_backends


@pytest.fixture
def make_router() -> Iterator[Callable[..., Router]]:
    """``make_router(urls, **settings)``: a router without probes unless asked for."""
    made: list[Router] = []

    def make(urls: list[str], **settings: Any) -> Router:
        settings.setdefault("probe_interval", 0)
        router = Router(urls, **settings)
        made.append(router)
        return router

    yield make
    for router in made:
        router.close()


@pytest.fixture
def make_chat_router() -> Iterator[Callable[..., ChatRouter]]:
    """``make_chat_router(urls, **settings)``: a chat router without probes unless asked for."""
    made: list[ChatRouter] = []

    def make(urls: list[str], **settings: Any) -> ChatRouter:
        settings.setdefault("probe_interval", 0)
        router = ChatRouter(urls, **settings)
        made.append(router)
        return router

    yield make
    for router in made:
        router.close()


@contextmanager
def lmstream_serve(*args: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``lmstream serve ARGS`` as a process of its own, on a free port: its URL and process."""
    port = free_port()
    command = [sys.executable, "-m", "lmstream", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def serve_process() -> Callable[..., Any]:
    """``lmstream_serve`` for test modules, which cannot import this file by name."""
    return lmstream_serve
