"""``lmstream serve`` as a real process: start-up, and a graceful shutdown on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from helpers import free_port


@contextmanager
def served(*args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    command = [sys.executable, "-m", "lmstream", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
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
        assert proc.stderr is not None
        proc.stderr.close()


def collect_stream(url: str, max_tokens: int, out: list[Any], started: threading.Event) -> None:
    body = {"model": "m", "prompt": "p", "stream": True, "max_tokens": max_tokens}
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                out.append(line[6:])
                started.set()


def test_sigterm_lets_short_streams_finish_and_ends_long_ones_with_an_error() -> None:
    args = ["-m", "fake:" + "x" * 300, "--option", "delay=0.02", "--grace", "1"]
    with served(*args) as (url, proc):
        short: list[Any] = []
        long: list[Any] = []
        threads = []
        for out, n in ((short, 20), (long, 300)):
            started = threading.Event()
            thread = threading.Thread(target=collect_stream, args=(url, n, out, started))
            thread.start()
            threads.append(thread)
            assert started.wait(30)
        proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=60)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
        assert proc.stderr is not None
        banner = proc.stderr.readline()
    assert short[-1] == "[DONE]"  # finished within the grace period
    assert "".join(json.loads(f)["choices"][0]["text"] for f in short[:-1]) == "x" * 20
    last = json.loads(long[-1])
    assert last["error"]["code"] == "shutdown"  # cut at the end of the grace period
    assert 20 < len(long) < 300
    assert "no API key: loopback only" in banner


def test_the_banner_names_the_keys_requirement() -> None:
    with served("-m", "fake:x", "--api-key", "sk-test", "--served-model-name", "smol") as (
        url,
        proc,
    ):
        assert httpx.get(url + "/v1/models").status_code == 401
        headers = {"Authorization": "Bearer sk-test"}
        names = [m["id"] for m in httpx.get(url + "/v1/models", headers=headers).json()["data"]]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
        assert proc.stderr is not None
        banner = proc.stderr.readline()
    assert names == ["smol"]
    assert "1 API key(s) required" in banner and "sk-test" not in banner


def test_limits_given_on_the_command_line_apply() -> None:
    with served("-m", "fake:x", "--max-batch", "2", "--max-body-bytes", "300") as (url, _):
        assert httpx.post(url + "/batch", json={"inputs": ["a", "b"]}).status_code == 200
        over = httpx.post(url + "/batch", json={"inputs": ["a", "b", "c"]})
        big = httpx.post(url + "/invoke", json={"input": "x" * 400})
    assert over.status_code == 400 and "at most 2 inputs" in over.json()["error"]["message"]
    assert big.status_code == 413


def test_serve_chat_loads_a_chat_model() -> None:
    with served("--chat", "-m", "fake:Ahoy there") as (url, _):
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        answer = httpx.post(url + "/v1/chat/completions", json=body, timeout=30).json()
        invoked = httpx.post(url + "/invoke", json={"input": "hi"}, timeout=30).json()
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "Ahoy there"}
    assert invoked["output"]["type"] == "ai" and invoked["output"]["content"] == "Ahoy there"
