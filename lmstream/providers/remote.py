"""RemoteLLM: a model served by ``lmstream serve``, through its runnable endpoints.

``invoke`` posts to ``/invoke`` and streams read ``/stream`` (SSE: ``metadata``, one
``data`` frame per chunk, then ``end`` or ``error``), natively sync and async. The remote
model composes with ``|`` like a local one, its runs are local runs (callbacks and
``astream_events`` see them), and a typed error raised over there is raised here with
the same class, the partial text and the usage. Closing a stream closes the response,
so the server stops the model.
"""

from __future__ import annotations

import json
from typing import Any

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("RemoteLLM needs httpx: pip install 'lmstream[openai]'") from exc

from lmstream import errors
from lmstream._sse import SSEDecodeError, SSEDecoder
from lmstream.chunks import Generation, GenerationChunk, Usage
from lmstream.providers._http_llm import HTTPLLM, Wire
from lmstream.settings import TEXT, URL, kind, number, setting

__all__ = ["RemoteLLM", "remote_error"]

_CALL = ("max_tokens", "temperature", "top_p", "seed")  # sent to the served model


def _usage(value: Any) -> Usage | None:
    if not isinstance(value, dict):
        return None
    try:
        return Usage(
            int(value["prompt_tokens"]), int(value["completion_tokens"]),
            int(value["total_tokens"]), bool(value.get("estimated", False)),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError):
        raise errors.ProtocolError(f"the server sent a malformed usage: {value!r}"[:200]) from None


def _info(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    info = dict(value)
    if "usage" in info:
        info["usage"] = _usage(info["usage"])
    return info


def remote_error(data: Any) -> errors.LMStreamError:
    """The typed error an ``error`` frame or result describes, as the server raised it."""
    if not isinstance(data, dict):
        return errors.ProtocolError(f"the server sent a malformed error: {data!r}"[:200])
    name, message = data.get("type"), str(data.get("message", ""))
    cls = getattr(errors, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, errors.LMStreamError)):
        cls, message = errors.ProviderError, f"{name}: {message}"
    partial, usage = str(data.get("partial_text") or ""), _usage(data.get("usage"))
    try:
        if issubclass(cls, errors.APITimeoutError):
            return cls(
                message, phase=str(data.get("phase", "total")), partial_text=partial, usage=usage
            )
        if issubclass(cls, errors.APIStatusError):
            status = int(data.get("status_code", 502))
            return cls(message, status_code=status, partial_text=partial, usage=usage)
        if issubclass(cls, errors.GenerationError):
            return cls(message, partial_text=partial, usage=usage)
        return cls(message)
    except TypeError:  # a class whose constructor wants more than a frame carries
        return errors.ProviderError(f"{name}: {message}", partial_text=partial, usage=usage)


class RunnableStream:
    """Reads ``/stream``'s frames: ``data`` chunks until ``end``; ``error`` raises."""

    __slots__ = ("decoder", "done", "run_id")

    def __init__(self) -> None:
        self.decoder = SSEDecoder()
        self.done = False
        self.run_id: str | None = None

    def feed(self, data: bytes) -> list[GenerationChunk]:
        """The chunks these bytes complete."""
        try:
            events = self.decoder.feed(data)
        except SSEDecodeError as exc:
            raise errors.ProtocolError(str(exc)) from exc
        out = []
        for event in events:
            payload = _decoded(event.data)
            if event.event == "data":
                out.append(self._chunk(payload))
            elif event.event == "metadata" and isinstance(payload, dict):
                self.run_id = payload.get("run_id")
            elif event.event == "error":
                raise remote_error(payload)
            elif event.event == "end":
                self.done = True
                break
        return out

    def _chunk(self, payload: Any) -> GenerationChunk:
        if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
            raise errors.ProtocolError(f"the server sent a malformed chunk: {payload!r}"[:200])
        return GenerationChunk(payload["text"], _info(payload.get("generation_info")))

    def end(self) -> GenerationChunk:
        """Nothing more to add: the last data frame carried the outcome."""
        if not self.done:
            raise errors.ProtocolError("the stream ended without an end or error frame")
        return GenerationChunk("")


def _decoded(data: str) -> Any:
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        raise errors.ProtocolError(
            f"the server sent a frame that is not JSON: {data!r}"[:200]
        ) from None


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

    def _wire(self) -> Wire:
        return RunnableStream()

    def _failure(
        self, status: int, headers: httpx.Headers, raw: bytes
    ) -> tuple[errors.APIError, float | None]:
        # an error the model raised over there comes back as itself, not as an HTTP status
        try:
            typed = json.loads(raw)["error"]["lmstream"]
        except (ValueError, KeyError, TypeError):
            return super()._failure(status, headers, raw)
        error = remote_error(typed)
        if isinstance(error, errors.APIError):
            return error, None
        raise error

    def _parse(self, raw: bytes) -> Generation:
        payload = _decoded(raw.decode("utf-8", errors="replace"))
        if not isinstance(payload, dict) or not isinstance(payload.get("output"), str):
            raise errors.ProtocolError(f"the server sent a malformed answer: {payload!r}"[:200])
        info = {
            "finish_reason": payload.get("finish_reason"),
            "usage": _usage(payload.get("usage")),
        }
        return Generation(payload["output"], {k: v for k, v in info.items() if v is not None})
