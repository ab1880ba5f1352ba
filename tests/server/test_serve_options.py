"""``lmstream serve``'s options as a real process: generation options become request
defaults on every endpoint, a taken port is one clear line, and the help is plain text."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

SERVE = [sys.executable, "-m", "lmstream", "serve"]


@contextmanager
def served(*args: str) -> Iterator[str]:
    """The URL of ``lmstream serve --port 0 ARGS``, read from its banner."""
    proc = subprocess.Popen([*SERVE, "--port", "0", *args], stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        banner = proc.stderr.readline()
        found = re.search(r"on (http://127\.0\.0\.1:\d+) ", banner)
        assert found, banner
        yield found.group(1)
    finally:
        proc.kill()
        proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()


def texts_of_every_endpoint(url: str, body: dict[str, Any]) -> dict[str, str]:
    """The text each endpoint answers for ``prompt``, with ``body`` as the request's settings."""
    texts = {}
    completion = httpx.post(url + "/v1/completions", json={"model": "m", "prompt": "p", **body})
    texts["completions"] = completion.json()["choices"][0]["text"]
    run = {"input": "p", "kwargs": body}
    texts["invoke"] = httpx.post(url + "/invoke", json=run).json()["output"]
    batch = httpx.post(url + "/batch", json={"inputs": ["p"], "kwargs": body}).json()
    texts["batch"] = batch["results"][0]["output"]
    with httpx.stream("POST", url + "/stream", json=run) as response:
        frames = [json.loads(line[6:]) for line in response.iter_lines() if line[:6] == "data: "]
    texts["stream"] = "".join(f["text"] for f in frames if f.get("type") == "Generation")
    return texts


def test_generation_options_are_the_defaults_for_requests() -> None:
    with served("-m", "fake:abc.defghij", "--max-tokens", "6", "--stop", ".") as url:
        defaults = texts_of_every_endpoint(url, {})
        own = texts_of_every_endpoint(url, {"max_tokens": 2})
        events = httpx.post(
            url + "/stream_events", json={"input": "p", "version": "v2"}, timeout=30
        ).text
    assert set(defaults.values()) == {"abc"}  # --stop, on every endpoint
    assert set(own.values()) == {"ab"}  # a request's own setting wins
    assert '"ls_max_tokens":6' in events.replace(" ", "")


def test_temperature_reaches_the_model_when_the_request_has_none() -> None:
    with served("-m", "fake:ab", "--temperature", "0.25") as url:
        plain = httpx.post(url + "/stream_events", json={"input": "p", "version": "v2"}).text
        own = httpx.post(
            url + "/stream_events",
            json={"input": "p", "version": "v2", "kwargs": {"temperature": 1.5}},
        ).text
    assert '"ls_temperature":0.25' in plain.replace(" ", "")
    assert '"ls_temperature":1.5' in own.replace(" ", "")


def test_the_embedded_model_answers_the_same_with_fixed_defaults() -> None:
    args = ["--temperature", "0", "--seed", "1", "--max-tokens", "6"]
    with served(*args) as url:
        body = {"model": "m", "prompt": "Write me a story."}
        answers = [httpx.post(url + "/v1/completions", json=body, timeout=60).json()]
        answers += [httpx.post(url + "/v1/completions", json=body, timeout=60).json()]
    assert answers[0]["choices"][0]["text"] == answers[1]["choices"][0]["text"]
    assert [a["usage"]["completion_tokens"] for a in answers] == [6, 6]


def test_a_default_max_tokens_over_the_cap_is_a_usage_error() -> None:
    result = subprocess.run(
        [*SERVE, "-m", "fake:x", "--max-tokens", "10", "--max-tokens-cap", "5"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.endswith("--max-tokens must be at most --max-tokens-cap\n")


def test_a_port_in_use_is_one_line_and_a_failure() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*SERVE, "--port", str(port)],  # the embedded model: it fails before loading it
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr == (
        f"lmstream: error: OSError: cannot listen on 127.0.0.1:{port}: "
        "the port is already in use (choose another with --port)\n"
    )
