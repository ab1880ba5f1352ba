"""Small requests and idle connections cannot hold ``lmstream serve``: a client that stops
reading loses its model slot, a batch takes its turns at the model's gate, slow and silent
connections are timed out or evicted, request lists and stop lists are bounded, event
streams send their metadata once, and a shutdown answers the requests still in flight."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import Outcomes, free_port, wait_until
from server_runner import running

from lmstream import FakeLLM

Answer = dict[str, Any]


def raw_request(url: str, path: str, body: dict[str, Any], *, rcvbuf: int = 0) -> socket.socket:
    """A socket that has sent one JSON POST and reads nothing back."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect((host, int(port)))
    data = json.dumps(body).encode()
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    sock.sendall(f"{head}Content-Length: {len(data)}\r\n\r\n".encode() + data)
    return sock


def closed_by_server(sock: socket.socket, timeout: float = 10.0) -> bool:
    """Whether the server closes ``sock`` within ``timeout`` (a liveness bound, not a timing)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_a_client_that_never_reads_loses_its_model_slot() -> None:
    ends = Outcomes()
    llm = FakeLLM([["x" * 4096] * 50_000], delay=0.001, callbacks=[ends])
    llm.thread_safe = False  # one generation at a time: the reader-less stream holds it
    with running({"m": llm}, send_timeout=0.5) as server:
        stuck = raw_request(server.url, "/stream", {"input": "p"}, rcvbuf=4096)
        assert wait_until(lambda: llm.tokens_produced > 0)
        other = httpx.post(
            server.url + "/invoke", json={"input": "q", "kwargs": {"max_tokens": 2}}, timeout=60
        )
        stuck.close()
    assert other.status_code == 200 and other.json()["output"] == "x" * 8192
    assert ends.outcomes[0] == "cancelled", (ends.outcomes, ends.starts, llm.tokens_produced)


class Running(Outcomes):
    """Counts the generations running at once."""

    def __init__(self) -> None:
        super().__init__()
        self.now = self.most = 0

    def on_llm_start(self, serialized: Any, prompts: list[str], **kwargs: Any) -> None:
        super().on_llm_start(serialized, prompts, **kwargs)
        self.now += 1
        self.most = max(self.most, self.now)

    def _ended(self, outcome: str) -> None:
        super()._ended(outcome)
        self.now -= 1


def test_a_batch_takes_each_turn_at_the_gate() -> None:
    ends = Running()
    llm = FakeLLM(["abcde"], delay=0.02, callbacks=[ends])
    llm.thread_safe = False

    async def run(url: str) -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            inputs = [f"b{i}" for i in range(6)]
            body = {"inputs": inputs, "max_concurrency": 6}
            batch = asyncio.ensure_future(client.post("/batch", json=body))
            assert await asyncio.to_thread(wait_until, lambda: bool(ends.starts))
            other = await client.post("/invoke", json={"input": "other"})
            return await batch, other

    with running({"m": llm}) as server:
        batch, other = asyncio.run(run(server.url))
    assert batch.status_code == 200 and other.status_code == 200
    assert [r["output"] for r in batch.json()["results"]] == ["abcde"] * 6
    assert ends.most == 1  # a model that is not thread-safe never runs two at once
    assert ends.starts.index("other") < 6 - 1  # served between the batch's inputs


def test_silent_slow_and_stalled_connections_are_timed_out() -> None:
    with running({"m": FakeLLM(["ok"])}, header_timeout=0.5, idle_timeout=0.5) as server:
        host, port = server.url.removeprefix("http://").split(":")
        silent = socket.create_connection((host, int(port)))
        slow = socket.create_connection((host, int(port)))
        stalled = socket.create_connection((host, int(port)))
        stalled.sendall(b"POST /invoke HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{")

        kept = socket.create_connection((host, int(port)))  # slow on its second request
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert kept.recv(4096).startswith(b"HTTP/1.1 200")

        def trickle(sock: socket.socket) -> None:  # a request head, byte by byte, unfinished
            with contextlib.suppress(OSError):
                sock.sendall(b"POST /invoke HTTP/1.1\r\n")
                for _ in range(100):
                    sock.sendall(b"X")
                    time.sleep(0.1)

        for sock in (slow, kept):
            threading.Thread(target=trickle, args=(sock,), daemon=True).start()
        assert closed_by_server(silent) and closed_by_server(slow) and closed_by_server(kept)
        stalled.settimeout(10)
        answer = b""
        while not answer.endswith(b"}}") and (data := stalled.recv(4096)):
            answer += data
        assert httpx.get(server.url + "/health").status_code == 200
    for sock in (silent, slow, kept, stalled):
        sock.close()
    assert answer.startswith(b"HTTP/1.1 408")
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == "timeout"


@contextlib.contextmanager
def server_process(*args: str, files: int) -> Iterator[str]:
    """``lmstream serve`` in a process that may open at most ``files`` file descriptors."""
    port = free_port()
    command = [sys.executable, "-m", "lmstream", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: _healthy(url), timeout=30)
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (files, files))
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=30)


def _healthy(url: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(url + "/health").status_code == 200
    return False


def test_a_request_is_served_while_slow_and_silent_connections_are_held() -> None:
    held: list[socket.socket] = []
    with server_process("-m", "fake:ok", "--max-connections", "100", files=256) as url:
        host, port = url.removeprefix("http://").split(":")
        try:
            for _ in range(200):  # slowloris: a request head that never ends
                sock = socket.create_connection((host, int(port)))
                sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: localhost\r\n")
                held.append(sock)
            held += [socket.create_connection((host, int(port))) for _ in range(300)]
            for sock in held[:200]:
                with contextlib.suppress(OSError):
                    sock.sendall(b"X-Still: here\r\n")
            answer = httpx.post(url + "/v1/completions", json={"model": "m", "prompt": "p"})
        finally:
            for sock in held:
                sock.close()
    assert answer.status_code == 200
    assert answer.json()["choices"][0]["text"] == "ok"


def test_request_lists_and_stop_lists_are_bounded() -> None:
    ends = Outcomes()
    with running({"m": FakeLLM(["ok"], callbacks=[ends])}) as server:
        url = server.url + "/v1/completions"
        many = httpx.post(url, json={"model": "m", "prompt": [""] * 1_000})
        huge = httpx.post(url, json={"model": "m", "prompt": [""] * 20_000})
        stops = httpx.post(url, json={"model": "m", "prompt": "p", "stop": ["s"] * 17})
        long_stop = httpx.post(url, json={"model": "m", "prompt": "p", "stop": "s" * 257})
        kwargs = {"stop": [str(i) for i in range(90_000)]}
        runnable = httpx.post(server.url + "/invoke", json={"input": "p", "kwargs": kwargs})
    for answer in (many, huge, stops, long_stop, runnable):
        assert answer.status_code == 400, answer.text
    assert many.json()["error"]["param"] == "prompt"
    assert "at most 64 prompts" in many.json()["error"]["message"]
    assert stops.json()["error"]["param"].startswith("stop")
    assert ends.starts == []  # refused before any generation was built


def test_event_streams_send_the_metadata_once() -> None:
    blob = "m" * 20_000
    with running({"m": FakeLLM(["abcdefghij"])}) as server:
        body = {"input": "p", "config": {"metadata": {"blob": blob}}}
        answer = httpx.post(server.url + "/stream_events", json=body)
    assert answer.status_code == 200
    assert answer.text.count(blob) == 1
    assert len(answer.content) < len(blob) + 8_000  # ten tokens of events, and the blob once


def _complete(url: str, max_tokens: int, out: list[Any]) -> None:
    body = {"model": "m", "prompt": "p", "max_tokens": max_tokens}
    try:
        out.append(httpx.post(url + "/v1/completions", json=body, timeout=60))
    except httpx.HTTPError as exc:
        out.append(exc)


def test_sigterm_answers_plain_requests_still_in_flight() -> None:
    port = free_port()
    args = ["-m", "fake:" + "x" * 300, "--option", "delay=0.02", "--grace", "3"]
    command = [sys.executable, "-m", "lmstream", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: _healthy(url), timeout=30)
        short: list[Any] = []
        long: list[Any] = []
        threads = [
            threading.Thread(target=_complete, args=(url, n, out))
            for out, n in ((short, 60), (long, 300))
        ]
        for thread in threads:
            thread.start()
        time.sleep(1)  # both requests reach the server (this is not measured)
        proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=60)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert short[0].status_code == 200  # finished within the grace period
    assert short[0].json()["choices"][0]["text"] == "x" * 60
    assert isinstance(long[0], httpx.Response), long[0]  # answered, not dropped
    assert long[0].status_code == 503 and long[0].json()["error"]["code"] == "shutdown"


@pytest.mark.parametrize("count", [10, 10_000])
def test_stop_matching_does_not_read_the_stop_list_per_chunk(count: int) -> None:
    from lmstream._accumulate import TextState
    from lmstream.chunks import GenerationChunk

    class Watched(str):
        reads = 0

        def __getitem__(self, key: Any) -> str:
            Watched.reads += 1
            return str.__getitem__(self, key)

    state = TextState([Watched(f"<stop {i}>") for i in range(count)])
    Watched.reads = 0
    text = "".join(
        out.text
        for piece in ["a <st", "op", " 7", ">b"]
        if (out := state.feed(GenerationChunk(piece)))
    )
    assert (text, state.stopped) == ("a ", True)
    assert Watched.reads == 0  # the list was compiled once; each chunk costs its own length


def test_the_published_limits_are_the_defaults() -> None:
    import re
    from pathlib import Path

    from lmstream.cli.serve import parser

    page = (Path(__file__).resolve().parents[2] / "docs" / "reliability.md").read_text()
    block = page.split("<!-- limits:start -->")[1].split("<!-- limits:end -->")[0]
    rows = re.findall(r"^\| [^|]+ \| `--([a-z-]+)` \| ([0-9.]+) \|", block, re.MULTILINE)
    defaults = vars(parser().parse_args([]))
    assert len(rows) == 10
    for flag, default in rows:
        assert float(default) == defaults[flag.replace("-", "_")], flag
