"""Routers: one model over many OpenAI-compatible servers (vLLM, llama.cpp's server,
SGLang, ``lmstream serve``), streaming each request through one of them.

::

    llm = Router(["http://gpu1:8000/v1", "http://gpu2:8000/v1"], model="Qwen/Qwen2.5-7B")
    for chunk in llm.stream("Tell me a story"):
        ...
    chat = llm.chat_model()  # /v1/chat/completions over the same backends
    for chunk in chat.stream([("human", "Tell me a story")]):
        ...

``Router`` is a text model (``/v1/completions``), ``ChatRouter`` a chat model
(``/v1/chat/completions``: messages and tools out; text, reasoning, tool-call fragments
and usage in). Each backend is an ``OpenAI``/``ChatOpenAI`` client without retries of
its own; the router chooses the backend (see ``_router_pool``), checks health without
spending tokens (``_router_health``) and retries on another backend, invisibly, when an
attempt fails before its first chunk (a refused connection, 5xx, 429). After the first
chunk it never retries (the text would repeat): the stream ends in the typed error, which
keeps the partial text (a chat stream's, its partial message too) and names the backend
(``error.backend``). Chunks pass through as they come (``_router_core``), and a consumer
that stops closes the upstream response, so the backend stops generating.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from lmstream.chat_model import BaseChatModel
from lmstream.chunks import GenerationChunk
from lmstream.llm import LLM
from lmstream.messages import AIMessageChunk, BaseMessage
from lmstream.providers._router_core import RouterCore, v1
from lmstream.providers._router_pool import Backend, NoBackendError

__all__ = ["ChatRouter", "NoBackendError", "Router", "served_model"]


def served_model(upstreams: list[str], api_key: str | None = None) -> str | None:
    """The first model id the first upstream that answers lists at ``/v1/models``."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    for url in upstreams:
        try:
            answer = httpx.get(v1(url) + "/models", headers=headers, timeout=5.0)
            listed = answer.json().get("data") if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            continue
        if isinstance(listed, list) and listed and isinstance(listed[0], dict):
            return str(listed[0].get("id")) if listed[0].get("id") else None
    return None


class Router(RouterCore, LLM):
    """A text model whose requests are spread over several OpenAI-compatible servers."""

    _chat: ChatRouter | None = None

    @property
    def _llm_type(self) -> str:
        return "router"

    def _client(self, backend: Backend) -> Any:
        return backend.llm

    def _stream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        return self._routed(prompt, stop, kwargs)

    def _astream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[GenerationChunk]:
        return self._arouted(prompt, stop, kwargs)

    def chat_model(self) -> ChatRouter:
        """The chat model over the same backends (``/v1/chat/completions``), with this
        router's settings: one pool, so balancing, health and ``stats()`` count both kinds
        of request. Always the same instance."""
        if self._chat is None:
            self._chat = ChatRouter(self)
        return self._chat


class ChatRouter(RouterCore, BaseChatModel):
    """A chat model whose requests are spread over several OpenAI-compatible servers'
    ``/v1/chat/completions``. Reasoning arrives as reasoning whichever field a backend
    names it in (``reasoning_content`` or ``reasoning``), tool-call fragments keep their
    index, and usage is the backend's, once. ``bind_tools`` and per-call settings (tools,
    ``tool_choice``, ``response_format``...) go to the backend as they are.

    ``ChatRouter(router)`` is the chat side of a text ``Router`` (as its
    ``chat_model()``): its backends, health checks, settings and stats."""

    supports_response_format = True  # the backend holds it, or refuses it (a 400)

    @property
    def _llm_type(self) -> str:
        return "chat-router"

    def _client(self, backend: Backend) -> Any:
        return backend.chat

    def _stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        return self._routed(messages, stop, kwargs)

    def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        return self._arouted(messages, stop, kwargs)
