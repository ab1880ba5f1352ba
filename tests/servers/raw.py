"""A loopback HTTP server that writes its answers byte for byte, with no framing of its own.

``ScriptedServer`` answers through uvicorn, which frames every body without a length as
chunks. ``RawServer`` plays the same ``Reply`` scripts (status, headers, then ``Send``,
``Stall`` and ``Reset`` steps) on a bare socket and ends the body by closing the
connection: a close-delimited body, as HTTP/1.0 servers and some proxies send. Headers a
script sets (``content-length``, ``transfer-encoding``) are written as they are.

::

    with RawServer() as server:
        server.script(Reply(headers={"content-type": "text/event-stream"}, steps=[Stall()]))
        OpenAI(base_url=server.url, idle_timeout=0.3)   # .../v1
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from servers.scripted import Reply, Reset, Send, Stall, error

__all__ = ["RawServer"]

_REASONS = {200: "OK", 400: "Bad Request", 418: "I'm a teapot", 500: "Internal Server Error"}


def _head(reply: Reply) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in reply.headers.items()]
    lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class RawServer:
    """The server: start it with ``with``; ``requests`` holds each request's JSON body."""

    def __init__(self) -> None:
        self.handler: Callable[[Any], Reply] = lambda body: error(418, "an unscripted request")
        self.requests: list[Any] = []
        self._queue: list[Reply] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self.url = ""

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self._queue.extend(replies)

    def reset_log(self) -> None:
        """Forget recorded requests and queued replies."""
        with self._lock:
            self.requests.clear()
            self._queue.clear()

    def __enter__(self) -> RawServer:
        started = threading.Event()

        async def serve() -> None:
            self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
            started.set()

        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)
        started.wait(10)
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        self._loop.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            body = await _request(reader)
            with self._lock:
                self.requests.append(body)
                reply = self._queue.pop(0) if self._queue else self.handler(body)
            await asyncio.sleep(reply.delay)
            writer.write(_head(reply))
            for step in reply.steps:
                if not await _run(step, reader, writer):
                    return
            await writer.drain()
            writer.close()
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()


async def _request(reader: asyncio.StreamReader) -> Any:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.decode("latin-1").split("\r\n"):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    raw = await reader.readexactly(length)
    return json.loads(raw) if raw else None


async def _run(step: Send | Stall | Reset, reader: asyncio.StreamReader,
               writer: asyncio.StreamWriter) -> bool:  # fmt: skip
    """Do one step; ``False`` when the answer ends here."""
    if isinstance(step, Reset):
        if step.rst:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            writer.close()
        return False
    if isinstance(step, Stall):
        try:  # silence until the client goes (or the stall ends)
            await asyncio.wait_for(reader.read(), step.seconds)
        except TimeoutError:
            return True
        writer.close()
        return False
    await asyncio.sleep(step.delay)
    writer.write(step.data)
    await writer.drain()
    return True
