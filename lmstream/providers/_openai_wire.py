"""The OpenAI completions protocol, pure: response bytes in, chunks or typed errors out.

``CompletionStream`` turns a streamed ``/v1/completions`` body into ``GenerationChunk``s.
A stream counts as finished only when it has sent a ``finish_reason`` and ``[DONE]``;
anything else (cut short, malformed, an in-band ``{"error": ...}``, a ``finish_reason``
of ``"abort"``/``"error"``) raises a typed error. ``parse_completion`` does the same for
a whole JSON body. Errors are mapped in ``_openai_errors``.
"""

from __future__ import annotations

from typing import Any

from lmstream._sse import SSEEvent
from lmstream.chunks import Generation, GenerationChunk, Usage
from lmstream.errors import APIError, ProtocolError
from lmstream.providers._frames import FrameReader
from lmstream.providers._http import DEFAULT_SIZES, SizeLimits
from lmstream.providers._openai_errors import decoded, inband_error, loads

__all__ = [
    "CompletionStream", "event_payload", "finished", "parse_completion", "response_info",
    "token_details", "usage_of",
]  # fmt: skip

_MAX_COUNT = 2**63 - 1  # a token count past what a signed 64-bit integer holds is a lie

_DETAILS = (
    ("prompt_tokens_details", "cached_tokens", "input_token_details", "cache_read"),
    ("completion_tokens_details", "reasoning_tokens", "output_token_details", "reasoning"),
)
_FAILED = frozenset({"abort", "error"})  # finish reasons that mean the server gave up


def _count(usage: dict[str, Any], key: str) -> int:
    value = usage.get(key)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
        raise ProtocolError(f"usage has a bad {key}: {value!r}"[:200])
    return value


def usage_of(value: Any) -> Usage:
    """The usage a server reported, or a ``ProtocolError`` unless each count is an int in
    [0, 2**63)."""
    if not isinstance(value, dict):
        raise ProtocolError(f"usage is not an object: {value!r}"[:200])
    prompt, completion = _count(value, "prompt_tokens"), _count(value, "completion_tokens")
    total = _count(value, "total_tokens") if value.get("total_tokens") is not None else None
    total = prompt + completion if total is None else total
    return Usage(prompt, completion, total, value.get("estimated") is True)  # lmstream serve's


def token_details(value: dict[str, Any]) -> dict[str, dict[str, int]]:
    """LangChain's ``input_token_details``/``output_token_details`` for an OpenAI usage
    object's cached prompt tokens and reasoning tokens, when it reports them."""
    out: dict[str, dict[str, int]] = {}
    for group, key, ours, theirs in _DETAILS:
        details = value.get(group)
        if isinstance(details, dict) and details.get(key) is not None:
            out[ours] = {theirs: _count(details, key)}
    return out


def response_info(payload: dict[str, Any], info: dict[str, Any]) -> None:
    """Put the answer's ``id`` and ``model_name`` (the server's ``model``) in ``info``."""
    for key, ours in (("id", "id"), ("model", "model_name")):
        value = payload.get(key)
        if isinstance(value, str) and value:
            info[ours] = value


def _choice(payload: dict[str, Any]) -> dict[str, Any] | None:
    choices = payload.get("choices")
    if not isinstance(choices, list):
        if "usage" in payload:
            return None
        raise ProtocolError(f"a completion without choices: {payload!r}"[:200])
    if not choices:
        return None
    choice = choices[0]
    if len(choices) > 1 or not isinstance(choice, dict) or choice.get("index", 0) != 0:
        raise ProtocolError(f"unexpected choices (n=1 was asked): {choices!r}"[:200])
    return choice


def _text(choice: dict[str, Any]) -> str:
    text = choice.get("text")
    if text is None:
        return ""
    if not isinstance(text, str):
        raise ProtocolError(f"text is not a string: {text!r}"[:200])
    return text


def _payload(data: str) -> dict[str, Any]:
    payload = loads(data, "an event that is not JSON")
    if not isinstance(payload, dict):
        raise ProtocolError(f"an event that is not a JSON object: {data!r}"[:200])
    if payload.get("error"):
        raise inband_error(payload)
    return payload


def finished(reader: FrameReader[Any], finish_reason: str | None) -> str:
    """The finish reason of a stream that has ended, or why it is incomplete."""
    if not reader.done:
        cut = " in the middle of an event" if reader.decoder.pending else ""
        raise ProtocolError(f"the stream ended{cut} before [DONE]")
    if finish_reason is None:
        raise ProtocolError("the stream ended without a finish_reason")
    return finish_reason


def event_payload(reader: FrameReader[Any], event: SSEEvent) -> dict[str, Any] | None:
    """The JSON of one event of an OpenAI stream (``None``: nothing to read in it): marks
    the reader done on ``[DONE]``, raises an in-band error as its typed error."""
    if event.data == "[DONE]":
        reader.done = True
        return None
    if event.event == "error":
        raise inband_error(decoded(event.data.encode()))
    if event.event != "message":
        return None  # an event type of some extension: not ours to read
    return _payload(event.data)


def _finish(reason: Any, payload: dict[str, Any]) -> str:
    if not isinstance(reason, str):
        raise ProtocolError(f"finish_reason is not a string: {reason!r}"[:200])
    if reason in _FAILED:
        raise APIError(f"the server ended the generation with {reason!r}", body=payload)
    return reason


class CompletionStream(FrameReader[GenerationChunk]):
    """What a streamed completion has said so far; feed it the body's bytes (see
    ``FrameReader``: chunks that arrive before an error are handed on first)."""

    __slots__ = ("finish_reason", "named", "usage")

    def __init__(self, limits: SizeLimits = DEFAULT_SIZES) -> None:
        super().__init__(limits)
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.named: dict[str, Any] = {}  # the answer's id and model, from its first event

    def _event(self, event: SSEEvent) -> GenerationChunk | None:
        payload = event_payload(self, event)
        if payload is None:
            return None
        if payload.get("usage") is not None:
            self.usage = {"usage": usage_of(payload["usage"]), **token_details(payload["usage"])}
        if not self.named:
            response_info(payload, self.named)
        choice = _choice(payload)
        if choice is None:
            return None
        if choice.get("finish_reason") is not None:
            self.finish_reason = _finish(choice["finish_reason"], payload)
        text, logprobs = _text(choice), choice.get("logprobs")
        if not text and logprobs is None:
            return None
        return GenerationChunk(text, None if logprobs is None else {"logprobs": logprobs})

    def _last(self) -> GenerationChunk:
        """The last chunk (``finish_reason``, ``usage``), or why the stream is incomplete."""
        info: dict[str, Any] = {"finish_reason": finished(self, self.finish_reason), **self.named}
        if self.usage is not None:
            info.update(self.usage)
        return GenerationChunk("", info)


def parse_completion(raw: bytes) -> Generation:
    """A whole (non-streamed) completion body as a ``Generation``."""
    payload = _payload(raw.decode("utf-8", "replace"))
    choice = _choice(payload)
    if choice is None or choice.get("finish_reason") is None:
        raise ProtocolError(f"a completion without a finished choice: {payload!r}"[:200])
    text = _text(choice)
    info: dict[str, Any] = {"finish_reason": _finish(choice["finish_reason"], payload)}
    response_info(payload, info)
    if payload.get("usage") is not None:
        info.update(usage=usage_of(payload["usage"]), **token_details(payload["usage"]))
    if choice.get("logprobs") is not None:
        info["logprobs"] = choice["logprobs"]
    return Generation(text, info)
