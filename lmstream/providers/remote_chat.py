"""RemoteChatModel: a chat model served by ``lmstream serve``, through its
``POST /v1/chat/completions``.

The wire is OpenAI's chat completions, read by ``ChatOpenAI``'s own reader
(``_openai_chat_wire``): messages and tools out; text, reasoning, tool-call fragments and
usage in, as ``AIMessageChunk``s. What the OpenAI shape cannot say, the server adds to its
errors: the error the model raised (``error.lmstream``), which comes back here as itself,
mapped as ``RemoteLLM`` maps it (``remote.remote_error``), whether it is an error answer
or an in-band error frame in the middle of a stream. A stream's partial message is what
this client handed on. The I/O is the HTTP providers' own (``_http_model``): natively
sync and async, time limits per phase, retries before the first chunk, and the response
closed the moment the consumer stops, so the server stops the model.
"""

from __future__ import annotations

from typing import Any

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("RemoteChatModel needs httpx: pip install 'lmstream[openai]'") from exc

from lmstream._sse import SSEEvent
from lmstream.errors import APIError
from lmstream.messages import AIMessage, AIMessageChunk, BaseMessage
from lmstream.providers._http import SizeLimits
from lmstream.providers._http_chat import HTTPChatModel
from lmstream.providers._http_model import Reader
from lmstream.providers._openai_chat_wire import ChatStream, messages_out, parse_chat
from lmstream.providers.remote import remote_error, remote_failure, typed_of
from lmstream.settings import TEXT, URL, kind, number, setting

__all__ = ["RemoteChatModel", "RemoteChatStream"]

_BODY = (
    "model", "temperature", "top_p", "max_tokens", "seed", "response_format", "tools",
    "tool_choice",
)  # fmt: skip
"""Settings sent in the request body when set (the ones ``lmstream serve`` honours)."""
_CHOICE = kind(str, dict, text='"auto", "none", "required" or {"type": "function", ...}')


class RemoteChatStream(ChatStream):
    """``ChatStream``, with the server's in-band error frames raised as the typed error the
    model raised over there (its partial text is left to the generation loop: what was
    handed on here)."""

    __slots__ = ()

    def _event(self, event: SSEEvent) -> AIMessageChunk | None:
        try:
            return super()._event(event)
        except APIError as error:
            typed = typed_of(error.body)
            if typed is None:
                raise
            raise remote_error(typed) from None


class RemoteChatModel(HTTPChatModel):
    """A chat model served by ``lmstream serve`` at ``url`` (the key: ``api_key`` or
    ``LMSTREAM_API_KEY``); ``model`` names one of several served models. The generation
    settings, tools (``bind_tools``), time limits and retries may also be given per call."""

    supports_response_format = True  # the served model decides: a 400 when it cannot

    key_variable = "LMSTREAM_API_KEY"
    positional = ("url",)

    url: str = setting(rule=URL)
    model: str | None = setting(None, TEXT, per_call=True)
    temperature: float | None = setting(None, number(0), per_call=True)
    max_tokens: int | None = setting(None, number(1, integer=True), per_call=True)
    top_p: float | None = setting(None, number(0, 1), per_call=True)
    seed: int | None = setting(None, kind(int, text="an int"), per_call=True)
    response_format: dict[str, Any] | None = setting(None, kind(dict, text="a dict"), per_call=True)
    tools: list[dict[str, Any]] | None = setting(
        None, kind(list, text="a list of OpenAI tool schemas (see bind_tools)"), per_call=True
    )
    tool_choice: str | dict[str, Any] | None = setting(None, _CHOICE, per_call=True)

    @property
    def _llm_type(self) -> str:
        return "remote-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"url": self.url, "model_name": self.model}

    def _request(
        self, prompt: list[BaseMessage], stop: list[str] | None, settings: dict[str, Any],
        stream: bool,
    ) -> tuple[str, dict[str, Any]]:  # fmt: skip
        body = {k: settings[k] for k in _BODY if settings[k] is not None}
        body.setdefault("model", "")  # the one model of a server that serves one
        body["messages"], body["stream"] = messages_out(prompt), stream
        if stop:
            body["stop"] = stop
        if stream:
            body["stream_options"] = {"include_usage": True}
        return f"{self.url}/v1/chat/completions", body

    def _wire(self, limits: SizeLimits) -> Reader:
        return RemoteChatStream(limits)

    def _parse(self, raw: bytes) -> AIMessage:
        return parse_chat(raw)

    def _failure(
        self, status: int, headers: httpx.Headers, raw: bytes
    ) -> tuple[APIError, float | None]:
        return remote_failure(status, headers, raw)
