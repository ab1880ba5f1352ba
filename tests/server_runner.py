"""A real lmstream server (uvicorn) on loopback, in a thread, serving models from a test."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from helpers import free_port

from lmstream.llm import BaseLLM
from lmstream.server import ServerSettings, create_app
from lmstream.server.connections import uvicorn_options


class Served:
    """A running server: its base URL and its app."""

    def __init__(self, url: str, app: Any) -> None:
        self.url = url
        self.app = app


@contextmanager
def running(
    models: dict[str, BaseLLM], aliases: dict[str, str] | None = None, **settings: Any
) -> Iterator[Served]:
    """Serve ``models`` on a free loopback port for the duration of the block."""
    options = ServerSettings(**settings)
    app = create_app(models, options, aliases)
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        **uvicorn_options(options),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
