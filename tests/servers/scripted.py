"""A scriptable OpenAI-compatible HTTP server for tests and benchmarks.

A real uvicorn server on 127.0.0.1, run in a thread, that answers each request with a
scripted ``Reply``: a status, headers, then body steps (bytes at chosen times, stalls,
a connection reset). It records every request: its JSON body, when it started, when the
answer ended, and when the client disconnected before the end.

::

    with ScriptedServer() as server:                # or the ``scripted`` pytest fixture
        server.script(error(503, headers={"retry-after": "0"}), stream(["Hi", "!"]))
        llm = OpenAI(base_url=server.url)           # .../v1
        ...
        server.requests[-1].body["prompt"]; server.open_connections

Replies queued with ``script`` are used in order, one per request; when the queue is
empty, ``handler(body)`` answers (by default ``echo``: the prompt back, word by word).
Probes (``GET /health``, ``/v1/models``, ``/metrics``) take no reply from the queue: they
are answered by ``server.health`` and ``server.metrics`` and logged in ``server.probes``.

Reply builders: ``stream`` (a streamed completion, optionally split at odd byte
boundaries, paced, cut short, followed by more steps), ``frames``/``sse`` (raw frames),
``error`` (an OpenAI-shaped error body, with headers such as Retry-After), ``completion``
(a whole JSON completion). Steps: ``Send``, ``Stall``, ``Reset``; ``Reply(delay=...)``
holds the status line back. For example, 429 twice then success:
``server.script(*[error(429, headers={"retry-after": "0"})] * 2, stream(["ok"]))``.

Also ``python tests/servers/scripted.py [PORT]`` serves ``echo`` in a process of its own
and prints its base URL (the benchmarks use it).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn

__all__ = [
    "Recorded",
    "Reply",
    "Reset",
    "ScriptedServer",
    "Send",
    "Stall",
    "completion",
    "echo",
    "error",
    "frames",
    "sse",
    "stream",
]


@dataclass(frozen=True)
class Send:
    """Write ``data`` to the body after waiting ``delay`` seconds."""

    data: bytes
    delay: float = 0.0


@dataclass(frozen=True)
class Stall:
    """Send nothing for ``seconds`` (``None``: until the client disconnects)."""

    seconds: float | None = None


@dataclass(frozen=True)
class Reset:
    """Drop the connection mid-answer: a TCP reset (``rst``), else a plain close."""

    rst: bool = True


Step = Send | Stall | Reset


@dataclass
class Reply:
    """What the server does for one request: wait ``delay`` seconds, send the status and
    headers, then run the steps. After the last step the body ends cleanly."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    delay: float = 0.0


@dataclass
class Recorded:
    """One request as the server saw it (times are ``time.monotonic()``)."""

    path: str
    headers: dict[str, str]
    body: Any
    started: float
    ended: float | None = None
    """When the answer was complete (``None`` while it runs or when it was cut)."""
    disconnected: float | None = None
    """When the client went away before the answer was complete."""
    reset: bool = False
    client: tuple[Any, ...] = ()
    """The client's address and port: the same for requests on one connection."""


_PROBED = ("/health", "/v1/models", "/metrics")

# -- reply builders ------------------------------------------------------------------


def sse(*payloads: Any, done: bool = True) -> bytes:
    """Frames for JSON payloads (``str`` payloads go as they are), then ``[DONE]``."""
    out = [f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n" for p in payloads]
    if done:
        out.append("data: [DONE]\n\n")
    return "".join(out).encode()


def _chunk(text: str, finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
    choice = {"text": text, "index": 0, "logprobs": logprobs, "finish_reason": finish}
    return {"id": "cmpl-scripted", "object": "text_completion", "created": 0,
            "model": "scripted", "choices": [choice]}  # fmt: skip


def frames(
    texts: Sequence[str],
    *,
    finish_reason: str | None = "stop",
    usage: tuple[int, int | None] | None = (3, None),
    done: bool = True,
    logprobs: bool = False,
    usage_details: dict[str, Any] | None = None,
) -> list[bytes]:
    """One SSE frame per text, a frame with ``finish_reason`` (``None``: none), a usage
    frame (``(prompt, completion)``; completion ``None`` counts the texts; ``None``: no
    usage; ``usage_details``: more fields of it) and ``[DONE]`` (unless ``done=False``)."""
    out = []
    for text in texts:
        lp = {"tokens": [text], "token_logprobs": [-0.5], "top_logprobs": None,
              "text_offset": [0]} if logprobs else None  # fmt: skip
        out.append(sse(_chunk(text, logprobs=lp), done=False))
    if finish_reason is not None:
        out.append(sse(_chunk("", finish_reason), done=False))
    if usage is not None:
        prompt, completion_tokens = usage
        completion_tokens = len(texts) if completion_tokens is None else completion_tokens
        counts = {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
                  "total_tokens": prompt + completion_tokens, **(usage_details or {})}  # fmt: skip
        out.append(sse({**_chunk(""), "choices": [], "usage": counts}, done=False))
    if done:
        out.append(b"data: [DONE]\n\n")
    return out


def stream(
    texts: Sequence[str],
    *,
    delay: float = 0.0,
    first_delay: float = 0.0,
    split: int | None = None,
    then: Sequence[Step] = (),
    **options: Any,
) -> Reply:
    """A streamed completion of ``texts`` (see ``frames`` for ``options``).

    ``delay`` waits before each frame, ``first_delay`` before the first; ``split`` cuts the
    whole byte stream into pieces of that many bytes (across frames, lines and UTF-8
    characters) sent one by one; ``then`` appends steps (a ``Stall``, a ``Reset``).
    """
    parts = frames(texts, **options)
    if split:
        data = b"".join(parts)
        parts = [data[i : i + split] for i in range(0, len(data), split)]
    steps: list[Step] = [
        Send(p, first_delay if i == 0 and first_delay else delay) for i, p in enumerate(parts)
    ]
    return Reply(headers={"content-type": "text/event-stream"}, steps=[*steps, *then])


def error(
    status: int,
    message: str = "scripted failure",
    *,
    headers: dict[str, str] | None = None,
    code: str | None = None,
    type: str = "server_error",
) -> Reply:
    """An error status with an OpenAI-shaped JSON body."""
    body = {"error": {"message": message, "type": type, "param": None, "code": code}}
    head = {"content-type": "application/json", **(headers or {})}
    return Reply(status, head, [Send(json.dumps(body).encode())])


def completion(
    text: str,
    *,
    finish_reason: str = "stop",
    usage: tuple[int, int] | None = (3, 1),
    usage_details: dict[str, Any] | None = None,
) -> Reply:
    """A whole (non-streamed) completion (``usage_details``: more fields of its usage)."""
    body = _chunk(text, finish_reason)
    if usage is not None:
        body["usage"] = {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                         "total_tokens": sum(usage), **(usage_details or {})}  # fmt: skip
    return Reply(200, {"content-type": "application/json"}, [Send(json.dumps(body).encode())])


def echo(body: Any) -> Reply:
    """The default answer: the prompt back, word by word (``max_tokens`` words at most)."""
    prompt = str(body.get("prompt", "")) if isinstance(body, dict) else ""
    words = [w + " " for w in prompt.split(" ")] if prompt else []
    limit = body.get("max_tokens") if isinstance(body, dict) else None
    reason = "stop"
    if isinstance(limit, int) and len(words) > limit:
        words, reason = words[:limit], "length"
    usage = (len(prompt.split()), len(words))
    if isinstance(body, dict) and body.get("stream"):
        return stream(words, finish_reason=reason, usage=usage)
    return completion("".join(words), finish_reason=reason, usage=usage)


# -- the server ----------------------------------------------------------------------


class ScriptedServer:
    """The server: start it with ``with`` (or ``start()``/``stop()``)."""

    def __init__(self, handler: Callable[[Any], Reply] = echo, *, port: int = 0) -> None:
        self.handler = handler
        self.port = port
        self.requests: list[Recorded] = []
        self._queue: list[Reply] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""
        """The base URL to give a client: ``http://127.0.0.1:<port>/v1``."""
        self.health: Reply | None = None
        """The answer to probes (``GET /health``, ``/v1/models``); ``None``: 200, one model."""
        self.metrics = ""
        """The body of ``GET /metrics`` (Prometheus text); empty: 404."""
        self.probes: list[str] = []
        """The paths probed, in order (probes take no scripted reply)."""

    def script(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        with self._lock:
            self._queue.extend(replies)

    def reset_log(self) -> None:
        """Forget recorded requests and queued replies; restore the default handler."""
        with self._lock:
            self.requests.clear()
            self._queue.clear()
        self.handler = echo

    @property
    def open_connections(self) -> int:
        """TCP connections open right now (keep-alive ones included)."""
        assert self._server is not None
        return len(self._server.server_state.connections)

    @property
    def active(self) -> int:
        """Requests whose answer is neither complete nor cut."""
        return sum(1 for r in list(self.requests) if r.ended is None and r.disconnected is None
                   and not r.reset)  # fmt: skip

    def wait(self, condition: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Poll ``condition`` until it holds or ``timeout`` passes; return the last value."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def start(self) -> ScriptedServer:
        """Start serving on a free loopback port."""
        port = self.port
        if not port:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app, host="127.0.0.1", port=port, http="h11", lifespan="off",
            log_level="warning", access_log=False, timeout_graceful_shutdown=1, interface="asgi3",
            backlog=4096,
        )  # fmt: skip
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        if not self.wait(lambda: self._server is not None and self._server.started, 30):
            raise RuntimeError("the scripted server did not start")
        self.url = f"http://127.0.0.1:{port}/v1"
        return self

    def stop(self) -> None:
        """Stop the server (open answers are cut after a one-second grace)."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the ASGI app ------------------------------------------------------------------

    def _next_reply(self, body: Any) -> Reply:
        with self._lock:
            if self._queue:
                return self._queue.pop(0)
        return self.handler(body)

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET" and scope["path"] in _PROBED:
            await self._probe(scope["path"], send)
            return
        raw = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        record = Recorded(scope["path"], headers, body, time.monotonic())
        record.client = tuple(scope.get("client") or ())
        with self._lock:
            self.requests.append(record)
        await self._answer(self._next_reply(body), record, scope, receive, send)

    async def _answer(
        self, reply: Reply, record: Recorded, scope: dict[str, Any], receive: Any, send: Any
    ) -> None:
        gone = asyncio.Event()
        watcher = asyncio.ensure_future(_watch(receive, record, gone))
        try:
            if reply.delay and not await _sleep_or_gone(reply.delay, gone):
                return
            headers = [(k.encode(), v.encode()) for k, v in reply.headers.items()]
            await send({"type": "http.response.start", "status": reply.status,
                        "headers": headers})  # fmt: skip
            for step in reply.steps:
                if not await _run(step, gone, send, lambda: self._transport(scope)):
                    record.reset = isinstance(step, Reset)
                    return
            record.ended = time.monotonic()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            watcher.cancel()

    async def _probe(self, path: str, send: Any) -> None:
        self.probes.append(path)
        if path == "/metrics":
            status, body = (200, self.metrics.encode()) if self.metrics else (404, b"")
            reply = Reply(status, {"content-type": "text/plain"}, [Send(body)])
        else:
            models = {"object": "list", "data": [{"id": "scripted", "object": "model"}]}
            listed = Send(json.dumps(models).encode())
            reply = self.health or Reply(200, {"content-type": "application/json"}, [listed])
        headers = [(k.encode(), v.encode()) for k, v in reply.headers.items()]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        data = b"".join(step.data for step in reply.steps if isinstance(step, Send))
        await send({"type": "http.response.body", "body": data, "more_body": False})

    def _transport(self, scope: dict[str, Any]) -> Any:
        assert self._server is not None
        client = tuple(scope.get("client") or ())
        for protocol in list(self._server.server_state.connections):
            if getattr(protocol, "client", None) == client:
                return protocol.transport
        return None


async def _watch(receive: Any, record: Recorded, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    if record.ended is None and not record.reset:
        record.disconnected = time.monotonic()
    gone.set()


async def _sleep_or_gone(seconds: float | None, gone: asyncio.Event) -> bool:
    """Wait; ``False`` if the client went away meanwhile."""
    try:
        await asyncio.wait_for(gone.wait(), seconds)
    except TimeoutError:
        return True
    return False


async def _run(step: Step, gone: asyncio.Event, send: Any, transport: Any) -> bool:
    """Do one step; ``False`` when the answer ends here (reset, or the client left)."""
    if isinstance(step, Reset):
        tr = transport()
        if tr is not None:
            if step.rst:
                sock = tr.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            tr.abort() if step.rst else tr.close()
        return False
    wait = step.seconds if isinstance(step, Stall) else step.delay
    if (wait is None or wait > 0) and not await _sleep_or_gone(wait, gone):
        return False
    if gone.is_set():
        return False
    if isinstance(step, Send):
        await send({"type": "http.response.body", "body": step.data, "more_body": True})
    return True


def main() -> None:
    """Serve the echo handler until killed, in a process of its own (for benchmarks):
    ``python tests/servers/scripted.py [PORT]`` prints the base URL once it listens."""
    import sys

    with ScriptedServer(port=int(sys.argv[1]) if len(sys.argv) > 1 else 0) as server:
        print(server.url, flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
