"""OpenAI: any OpenAI-compatible ``/v1/completions`` server, streamed token by token.

OpenAI itself, vLLM, SGLang, llama.cpp's server, Ollama, LM Studio, ``lmstream serve``:
the sync path runs on ``httpx.Client``, the async path on ``httpx.AsyncClient`` (native,
no threads). One pooled client per instance (per event loop for async), made on first
use; ``close()``/``aclose()`` or a ``with`` block release it.

Time limits per phase (connect, first token, idle gap, total) and retries before the
first chunk are described in ``_http``; the protocol itself (SSE, ``[DONE]``, in-band
errors, usage) in ``_openai_wire``. When the consumer stops, the response is closed at
once, so the server sees the disconnect and can stop generating.
"""

from __future__ import annotations

import os
from typing import Any

from lmstream.chunks import Generation
from lmstream.settings import TEXT, URL, Rule, kind, number, setting

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the OpenAI provider needs httpx: pip install 'lmstream[openai]'") from exc

from lmstream.errors import APIContextLengthError, APIError
from lmstream.providers._http import SizeLimits
from lmstream.providers._http_llm import HTTPLLM, Wire
from lmstream.providers._openai_errors import failure
from lmstream.providers._openai_wire import CompletionStream, parse_completion

__all__ = ["APIContextLengthError", "OpenAI"]

_BODY = (
    "model", "temperature", "top_p", "max_tokens", "seed", "logprobs", "presence_penalty",
    "frequency_penalty", "logit_bias", "user", "suffix", "echo", "best_of",
)  # fmt: skip
"""Settings sent in the request body when set."""
_ONE = Rule(lambda v: v == 1 and type(v) is int, "1 (one completion per call: use batch for more)")
_STR, _DICT = kind(str, text="a str"), kind(dict, text="a dict")


def _base_url() -> str:
    return os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"


class OpenAI(HTTPLLM):
    """An LLM served by any OpenAI-compatible ``/v1/completions`` endpoint.

    The key comes from ``api_key`` or ``OPENAI_API_KEY``, the URL from ``base_url`` or
    ``OPENAI_BASE_URL``. Every setting but ``base_url`` and ``stop`` may also be given per
    call; fields a server adds go in ``extra_body``."""

    key_variable = "OPENAI_API_KEY"
    positional = ("model",)

    model: str = setting("gpt-3.5-turbo-instruct", TEXT, per_call=True)
    base_url: str = setting(factory=_base_url, rule=URL)
    temperature: float | None = setting(None, number(0), per_call=True)
    max_tokens: int | None = setting(None, number(1, integer=True), per_call=True)
    top_p: float | None = setting(None, number(0, 1), per_call=True)
    seed: int | None = setting(None, kind(int, text="an int"), per_call=True)
    n: int = setting(1, _ONE, per_call=True)
    logprobs: int | None = setting(None, number(0, integer=True), per_call=True)
    presence_penalty: float | None = setting(None, number(), per_call=True)
    frequency_penalty: float | None = setting(None, number(), per_call=True)
    logit_bias: dict[str, float] | None = setting(None, _DICT, per_call=True)
    user: str | None = setting(None, _STR, per_call=True)
    suffix: str | None = setting(None, _STR, per_call=True)
    echo: bool | None = setting(None, kind(bool, text="a bool"), per_call=True)
    best_of: int | None = setting(None, Rule(_ONE.test, "1 (a stream carries one candidate)"),
                                  per_call=True)  # fmt: skip
    extra_body: dict[str, Any] | None = setting(None, kind(dict, text="a dict of extra JSON "
                                                "fields"), per_call=True)  # fmt: skip
    stream_usage: bool = setting(True, kind(bool, text="a bool"), per_call=True)

    @property
    def _llm_type(self) -> str:
        return "openai"

    def _request(
        self, prompt: str, stop: list[str] | None, settings: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        body = {k: settings[k] for k in _BODY if settings[k] is not None}
        body["prompt"], body["stream"] = prompt, stream
        if stop:
            body["stop"] = stop
        if stream and settings["stream_usage"]:
            body["stream_options"] = {"include_usage": True}
        if settings["extra_body"]:
            body.update(settings["extra_body"])
        return f"{self.base_url}/completions", body

    def _wire(self, limits: SizeLimits) -> Wire:
        return CompletionStream(limits)

    def _parse(self, raw: bytes) -> Generation:
        return parse_completion(raw)

    def _failure(
        self, status: int, headers: httpx.Headers, raw: bytes
    ) -> tuple[APIError, float | None]:
        return failure(status, headers, raw)
