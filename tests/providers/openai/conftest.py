"""Fixtures for the OpenAI provider: the scripted server, and clients of the real llama.cpp
server (``llama_server``, in ``tests/conftest.py``: started once per session).

Test modules here cannot import this file by name, so its helpers are fixtures.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

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
