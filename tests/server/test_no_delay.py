"""Every connection of ``lmstream serve`` sends small writes at once (``TCP_NODELAY``),
whichever event loop runs it: a stream's frames are small writes, and with Nagle's
algorithm the first one after the response head waits for the client's delayed
acknowledgement (about 40 ms on Linux). The server is run as ``lmstream serve`` runs it,
on the socket it binds itself."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import uvicorn

from lmstream import FakeLLM
from lmstream.cli.serve import _listen
from lmstream.server import ServerSettings, create_app, uvicorn_options


@contextmanager
def _serving(loop: str) -> Iterator[tuple[str, Any]]:
    """A server on ``loop``, on a socket bound as ``lmstream serve`` binds it; yields its
    URL and its protocol class (whose ``open`` holds the live connections)."""
    settings = ServerSettings()
    options = uvicorn_options(settings)
    app = create_app({"m": FakeLLM(["one two three"], chunking="word")}, settings)
    sock = _listen("127.0.0.1", 0)
    config = uvicorn.Config(app, log_level="warning", lifespan="off", loop=loop, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", options["http"]
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _no_delay(connection: Any) -> bool:
    sock = connection.transport.get_extra_info("socket")
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_every_connection_sends_small_writes_at_once(loop: str) -> None:
    body = {"model": "m", "prompt": "p", "stream": True}
    with (
        _serving(loop) as (url, protocol),
        httpx.Client(base_url=url) as client,
        client.stream("POST", "/v1/completions", json=body) as response,
    ):
        frames = [line for line in response.iter_lines() if line.startswith("data: ")]
        connections = list(protocol.open)
        assert connections and all(_no_delay(c) for c in connections)
    assert frames[-1] == "data: [DONE]" and len(frames) == 4
