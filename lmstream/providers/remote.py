"""RemoteLLM: a model served by ``lmstream serve``, through its runnable endpoints.

``invoke`` posts to ``/invoke`` and streams read ``/stream`` (SSE: ``metadata``, one
``data`` frame per chunk, then ``end`` or ``error``), natively sync and async. The remote
model composes with ``|`` like a local one, its runs are local runs (callbacks and
``astream_events`` see them), and a typed error raised over there is raised here with
the same class and usage (a stream's partial text is the text handed on here). Closing a
stream closes the response, so the server stops the model. ``remote_error`` and
``remote_failure`` read those typed errors for ``RemoteChatModel`` too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("RemoteLLM needs httpx: pip install 'lmstream[openai]'") from exc

from lmstream import errors
from lmstream._sse import SSEEvent
from lmstream.chunks import Generation, GenerationChunk, Usage
from lmstream.providers._frames import FrameReader
from lmstream.providers._http import DEFAULT_SIZES, SizeLimits
from lmstream.providers._http_errors import decoded, loads
from lmstream.providers._http_llm import HTTPLLM, Wire
from lmstream.providers._openai_errors import failure
from lmstream.providers._openai_wire import usage_of
from lmstream.settings import TEXT, URL, kind, number, setting

__all__ = ["RemoteLLM", "remote_error", "remote_failure", "typed_of"]

_CALL = ("max_tokens", "temperature", "top_p", "seed")  # sent to the served model


def _usage(value: Any) -> Usage | None:
    if value is None:
        return None
    usage = usage_of(value)  # counts checked as the OpenAI provider checks them
    estimated = value.get("estimated", False)
    if not isinstance(estimated, bool):
        raise errors.ProtocolError(f"the server sent a malformed usage: {value!r}"[:200])
    return Usage(usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, estimated)


def _info(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    info = dict(value)
    if "usage" in info:
        info["usage"] = _usage(info["usage"])
    return info


def _named(payload: dict[str, Any]) -> dict[str, Any]:
    """The server's run id as the answer's ``id``, and the served ``model`` name."""
    found = {"id": payload.get("run_id"), "model_name": payload.get("model")}
    return {k: v for k, v in found.items() if isinstance(v, str) and v}


def _status(value: Any) -> int:
    ok = isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599
    return value if ok else 502


def _seconds(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok and 0 <= value < math.inf else None


def remote_error(data: Any, *, partial_text: bool = False) -> errors.LMStreamError:
    """The typed error an ``error`` frame or result describes, as the server raised it.

    Its usage is checked like any usage the server sends. Its partial text is taken only
    with ``partial_text=True``, for a whole answer's error, where the server's word is all
    there is: a stream's partial text is what this client handed on, whatever a frame says.
    """
    if not isinstance(data, dict):
        return errors.ProtocolError(f"the server sent a malformed error: {data!r}"[:200])
    name, message = data.get("type"), str(data.get("message", ""))[:2000]
    cls = getattr(errors, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, errors.LMStreamError)):
        cls, message = errors.ProviderError, f"{name}: {message}"
    text = data.get("partial_text") if partial_text else None
    partial, usage = text if isinstance(text, str) else "", _usage(data.get("usage"))
    try:
        if issubclass(cls, errors.APITimeoutError):
            return cls(
                message, phase=str(data.get("phase", "total")), partial_text=partial, usage=usage
            )
        if issubclass(cls, errors.APIStatusError):
            status = _status(data.get("status_code", 502))
            error = cls(message, status_code=status, partial_text=partial, usage=usage)
            if isinstance(error, errors.RateLimitError):  # the wait the model asked for
                error.retry_after = _seconds(data.get("retry_after"))
            return error
        if issubclass(cls, errors.GenerationError):
            return cls(message, partial_text=partial, usage=usage)
        return cls(message)
    except TypeError:  # a class whose constructor wants more than a frame carries
        return errors.ProviderError(f"{name}: {message}", partial_text=partial, usage=usage)


def typed_of(body: Any) -> Any:
    """The typed error an OpenAI-shaped error body carries for lmstream's clients
    (``error.lmstream``, see ``remote_error``), else ``None``."""
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("lmstream") if isinstance(error, dict) else None


def remote_failure(
    status: int, headers: Mapping[str, str], raw: bytes
) -> tuple[errors.APIError, float | None]:
    """The error for an error answer of ``lmstream serve``: the error the model raised
    over there, as itself (an ``APIError`` is returned, to be retried as the policy says;
    any other is raised), else the HTTP status's, with its Retry-After."""
    typed = typed_of(decoded(raw))
    if typed is None:  # the server's own errors have OpenAI's shape (context length too)
        return failure(status, headers, raw)
    error = remote_error(typed, partial_text=True)
    if isinstance(error, errors.APIError):
        return error, None
    raise error


class RunnableStream(FrameReader[GenerationChunk]):
    """Reads ``/stream``'s frames: ``data`` chunks until ``end``; ``error`` raises (after
    the chunks that came before it, see ``FrameReader``)."""

    __slots__ = ("named", "run_id")

    def __init__(self, limits: SizeLimits = DEFAULT_SIZES) -> None:
        super().__init__(limits)
        self.run_id: str | None = None
        self.named: dict[str, Any] | None = None  # the answer's id and model, for a chunk

    def _event(self, event: SSEEvent) -> GenerationChunk | None:
        payload = loads(event.data, "the server sent a frame that is not JSON")
        if event.event == "data":
            return self._chunk(payload)
        if event.event == "metadata" and isinstance(payload, dict):
            run_id = payload.get("run_id")
            self.run_id = run_id if isinstance(run_id, str) else None
            self.named = _named(payload)
        elif event.event == "error":
            raise remote_error(payload)
        elif event.event == "end":
            self.done = True
        return None

    def _chunk(self, payload: Any) -> GenerationChunk:
        if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
            raise errors.ProtocolError(f"the server sent a malformed chunk: {payload!r}"[:200])
        info = _info(payload.get("generation_info"))
        if self.named:  # the first chunk carries the answer's id and model
            info, self.named = {**self.named, **(info or {})}, None
        return GenerationChunk(payload["text"], info)

    def _last(self) -> GenerationChunk:
        """Nothing more to add: the last data frame carried the outcome."""
        if not self.done:
            raise errors.ProtocolError("the stream ended without an end or error frame")
        return GenerationChunk("")


class RemoteLLM(HTTPLLM):
    """A model served by ``lmstream serve`` at ``url`` (the key: ``api_key`` or
    ``LMSTREAM_API_KEY``). ``temperature``, ``max_tokens``, ``top_p`` and ``seed`` are
    defaults a call's own arguments override, as are the time limits and retries."""

    key_variable = "LMSTREAM_API_KEY"
    positional = ("url",)

    url: str = setting(rule=URL)
    model: str | None = setting(None, TEXT)
    temperature: float | None = setting(None, number(0), per_call=True)
    max_tokens: int | None = setting(None, number(1, integer=True), per_call=True)
    top_p: float | None = setting(None, number(0, 1), per_call=True)
    seed: int | None = setting(None, kind(int, text="an int"), per_call=True)

    @property
    def _llm_type(self) -> str:
        return "remote"

    def _request(
        self, prompt: str, stop: list[str] | None, settings: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        sent = {k: settings[k] for k in _CALL if settings[k] is not None}
        body: dict[str, Any] = {"input": prompt, "kwargs": {**sent, "stop": stop}}
        if self.model:
            body["model"] = self.model
        return self.url + ("/stream" if stream else "/invoke"), body

    def _wire(self, limits: SizeLimits) -> Wire:
        return RunnableStream(limits)

    def _failure(
        self, status: int, headers: httpx.Headers, raw: bytes
    ) -> tuple[errors.APIError, float | None]:
        return remote_failure(status, headers, raw)

    def _parse(self, raw: bytes) -> Generation:
        text = raw.decode("utf-8", errors="replace")
        payload = loads(text, "the server sent an answer that is not JSON")
        if not isinstance(payload, dict) or not isinstance(payload.get("output"), str):
            raise errors.ProtocolError(f"the server sent a malformed answer: {payload!r}"[:200])
        info = {
            **_named(payload),
            "finish_reason": payload.get("finish_reason"),
            "usage": _usage(payload.get("usage")),
        }
        return Generation(payload["output"], {k: v for k, v in info.items() if v is not None})
