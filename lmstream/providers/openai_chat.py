"""ChatOpenAI: any OpenAI-compatible ``/v1/chat/completions`` server, streamed delta by delta.

OpenAI itself, vLLM, SGLang, llama.cpp's server, Ollama, LM Studio: messages and tools
out; text, reasoning, tool-call fragments and usage in (the protocol is read in
``_openai_chat_wire``). The I/O is the HTTP providers' own (``_http_model``): sync on
``httpx.Client``, async on ``httpx.AsyncClient`` (native), time limits per phase, retries
before the first chunk, typed errors that keep the partial message, and the response
closed the moment the consumer stops.

Usage is asked for (``stream_options.include_usage``) unless ``stream_usage=False``; a
server that rejects ``stream_options`` is asked once more without it, and this instance
does not send it again.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

from lmstream.messages import AIMessage, AIMessageChunk, BaseMessage
from lmstream.settings import TEXT, URL, Rule, kind, number, setting

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the OpenAI provider needs httpx: pip install 'lmstream[openai]'") from exc

from lmstream.errors import APIError, APIStatusError
from lmstream.providers._http import SizeLimits
from lmstream.providers._http_chat import HTTPChatModel
from lmstream.providers._http_model import Reader
from lmstream.providers._openai_chat_wire import ChatStream, messages_out, parse_chat
from lmstream.providers._openai_errors import failure

__all__ = ["ChatOpenAI"]

_BODY = (
    "model", "temperature", "top_p", "max_tokens", "max_completion_tokens", "seed",
    "logprobs", "top_logprobs", "presence_penalty", "frequency_penalty", "logit_bias",
    "user", "response_format", "tools", "tool_choice", "parallel_tool_calls",
    "reasoning_effort",
)  # fmt: skip
"""Settings sent in the request body when set."""
_ONE = Rule(lambda v: v == 1 and type(v) is int, "1 (one answer per call: use batch for more)")
_STR, _DICT, _BOOL = kind(str, text="a str"), kind(dict, text="a dict"), kind(bool, text="a bool")
_TOKENS = number(1, integer=True)
_TOOLS = kind(list, text="a list of OpenAI tool schemas (see bind_tools)")
_CHOICE = kind(str, dict, text='"auto", "none", "required" or {"type": "function", ...}')


def _base_url() -> str:
    return os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"


def _rejects_stream_options(error: APIError) -> bool:
    """Whether ``error`` is a server refusing the ``stream_options`` field."""
    return (
        isinstance(error, APIStatusError)
        and error.status_code in (400, 422)
        and "stream_options" in f"{error} {error.body}"
    )


class ChatOpenAI(HTTPChatModel):
    """A chat model served by any OpenAI-compatible ``/v1/chat/completions`` endpoint.

    The key comes from ``api_key`` or ``OPENAI_API_KEY``, the URL from ``base_url`` or
    ``OPENAI_BASE_URL``. Every setting but ``base_url`` and ``stop`` may also be given per
    call (``bind_tools`` binds ``tools`` and ``tool_choice``); fields a server adds go in
    ``extra_body``."""

    supports_response_format = True

    key_variable = "OPENAI_API_KEY"
    positional = ("model",)

    model: str = setting("gpt-4o-mini", TEXT, per_call=True)
    base_url: str = setting(factory=_base_url, rule=URL)
    temperature: float | None = setting(None, number(0), per_call=True)
    max_tokens: int | None = setting(None, _TOKENS, per_call=True)
    max_completion_tokens: int | None = setting(None, _TOKENS, per_call=True)
    top_p: float | None = setting(None, number(0, 1), per_call=True)
    seed: int | None = setting(None, kind(int, text="an int"), per_call=True)
    n: int = setting(1, _ONE, per_call=True)
    logprobs: bool | None = setting(None, _BOOL, per_call=True)
    top_logprobs: int | None = setting(None, number(0, 20, integer=True), per_call=True)
    presence_penalty: float | None = setting(None, number(), per_call=True)
    frequency_penalty: float | None = setting(None, number(), per_call=True)
    logit_bias: dict[str, float] | None = setting(None, _DICT, per_call=True)
    user: str | None = setting(None, _STR, per_call=True)
    response_format: dict[str, Any] | None = setting(None, _DICT, per_call=True)
    tools: list[dict[str, Any]] | None = setting(None, _TOOLS, per_call=True)
    tool_choice: str | dict[str, Any] | None = setting(None, _CHOICE, per_call=True)
    parallel_tool_calls: bool | None = setting(None, _BOOL, per_call=True)
    reasoning_effort: str | None = setting(None, _STR, per_call=True)
    extra_body: dict[str, Any] | None = setting(None, kind(dict, text="a dict of extra JSON "
                                                "fields"), per_call=True)  # fmt: skip
    stream_usage: bool = setting(True, _BOOL, per_call=True)

    def __init__(self, *args: Any, **settings: Any) -> None:
        super().__init__(*args, **settings)
        self._stream_options = True  # until a server refuses them

    @property
    def _llm_type(self) -> str:
        return "openai-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model}

    def _request(
        self, prompt: list[BaseMessage], stop: list[str] | None, settings: dict[str, Any],
        stream: bool,
    ) -> tuple[str, dict[str, Any]]:  # fmt: skip
        body = {k: settings[k] for k in _BODY if settings[k] is not None}
        body["messages"], body["stream"] = messages_out(prompt), stream
        if stop:
            body["stop"] = stop
        if stream and settings["stream_usage"] and self._stream_options:
            body["stream_options"] = {"include_usage": True}
        if settings["extra_body"]:
            body.update(settings["extra_body"])
        return f"{self.base_url}/chat/completions", body

    def _wire(self, limits: SizeLimits) -> Reader:
        return ChatStream(limits)

    def _parse(self, raw: bytes) -> AIMessage:
        return parse_chat(raw)

    def _failure(
        self, status: int, headers: httpx.Headers, raw: bytes
    ) -> tuple[APIError, float | None]:
        return failure(status, headers, raw)

    def _fall_back(self, error: APIError, kwargs: dict[str, Any]) -> bool:
        """Whether to ask again without ``stream_options`` (then never send them again)."""
        sent = self._stream_options and kwargs.get("stream_usage", self.stream_usage)
        if not (sent and _rejects_stream_options(error)):
            return False
        self._stream_options = False
        return True

    # -- the hooks ------------------------------------------------------------------------

    def _stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        for attempt in (0, 1):
            with contextlib.closing(self._http_stream(messages, stop, kwargs)) as chunks:
                try:
                    first = next(chunks, None)
                except APIError as error:  # refused before any chunk: nothing handed on
                    if attempt or not self._fall_back(error, kwargs):
                        raise
                    continue
                if first is not None:
                    yield first
                    yield from chunks
                return

    async def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        for attempt in (0, 1):
            async with contextlib.aclosing(self._http_astream(messages, stop, kwargs)) as chunks:
                try:
                    first = await anext(chunks, None)
                except APIError as error:
                    if attempt or not self._fall_back(error, kwargs):
                        raise
                    continue
                if first is not None:
                    yield first
                    async for chunk in chunks:
                        yield chunk
                return
