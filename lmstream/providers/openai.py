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

from lmstream._llmcore import check_stop
from lmstream.chunks import Generation

try:
    import httpx  # noqa: F401 - the clear message when the extra is missing
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the OpenAI provider needs httpx: pip install 'lmstream[openai]'") from exc

from lmstream.errors import APIContextLengthError
from lmstream.providers._http import Call, SizeLimits
from lmstream.providers._http_llm import HTTPLLM, Wire
from lmstream.providers._openai_params import build_call, check, check_base_url, merged
from lmstream.providers._openai_wire import CompletionStream, parse_completion

__all__ = ["APIContextLengthError", "OpenAI"]

_SETTINGS = (
    "model", "temperature", "max_tokens", "top_p", "seed", "n", "logprobs", "extra_body",
    "stream_usage", "timeout", "connect_timeout", "first_token_timeout", "idle_timeout",
    "max_retries", "retry_backoff",
)  # fmt: skip


class OpenAI(HTTPLLM):
    """An LLM served by any OpenAI-compatible ``/v1/completions`` endpoint."""

    model: str = "gpt-3.5-turbo-instruct"
    base_url: str = ""
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    n: int = 1
    logprobs: int | None = None
    extra_body: dict[str, Any] | None = None
    stream_usage: bool = True
    timeout: float | None = None
    connect_timeout: float | None = 5.0
    first_token_timeout: float | None = 600.0
    idle_timeout: float | None = 60.0
    max_retries: int = 2
    retry_backoff: float = 0.5

    def __init__(
        self,
        model: str = "gpt-3.5-turbo-instruct",
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        n: int = 1,
        logprobs: int | None = None,
        extra_body: dict[str, Any] | None = None,
        stream_usage: bool = True,
        timeout: float | None = None,
        connect_timeout: float | None = 5.0,
        first_token_timeout: float | None = 600.0,
        idle_timeout: float | None = 60.0,
        max_retries: int = 2,
        retry_backoff: float = 0.5,
        **kwargs: Any,
    ) -> None:
        given = locals()
        settings = {name: given[name] for name in _SETTINGS}
        for name, value in settings.items():
            check(name, value)
        url = check_base_url(
            base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        )
        stops = check_stop(stop)
        super().__init__(**kwargs, **settings, base_url=url, stop=stops)
        self._connect(api_key, "OPENAI_API_KEY")

    @property
    def _llm_type(self) -> str:
        return "openai"

    def _plan(self, prompt: str, stop: list[str] | None, kw: dict[str, Any], stream: bool) -> Call:
        # read at each call: settings assigned after construction apply, as in LangChain
        settings = {name: getattr(self, name) for name in _SETTINGS}
        settings = merged(settings, kw) if kw else settings
        url = f"{self.base_url}/completions"
        return build_call(url, self._headers, settings, prompt, stop, stream)

    def _wire(self, limits: SizeLimits) -> Wire:
        return CompletionStream(limits)

    def _parse(self, raw: bytes) -> Generation:
        return parse_completion(raw)
