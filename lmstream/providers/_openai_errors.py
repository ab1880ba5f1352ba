"""Errors of the OpenAI protocol, pure: an HTTP error status and body, an in-band
``{"error": ...}`` or a JSON answer where an event stream was asked for, mapped to the
typed errors of ``lmstream.errors`` (a context-length 400 recognised), and Retry-After.

Every parse here reads text a server chose, so each is linear in it: the patterns have no
two neighbouring parts that can match the same characters (no backtracking), they read
at most the first ``SCAN`` characters of a message, and JSON nested too deeply to
decode is a ``ProtocolError`` like any other malformed JSON."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lmstream.errors import (
    APIContextLengthError,
    APIError,
    APIStatusError,
    ProtocolError,
    status_error,
)
from lmstream.providers._http_errors import SCAN, decoded, loads, message_of, retry_after_of

__all__ = [
    "APIContextLengthError",
    "decoded",
    "failure",
    "inband_error",
    "json_for_stream",
    "loads",
    "retry_after_of",
    "status_failure",
]

_CONTEXT = re.compile(
    r"context[ _](length|window|size)|maximum context|exceeds? the (model'?s? )?(maximum|token"
    r" limit|context)|too many tokens|prompt is too long",
    re.IGNORECASE,
)
# bounded gaps, and a number only where a run of digits starts: at most a few dozen steps
# per position of the text, never a rescan of all that follows it
_N_CTX = re.compile(
    r"(?:context length is|context window of)\s{0,8}(\d{1,12})(?!\d)"
    r"|context size\D{0,32}(\d{1,12})(?!\d)",
    re.I,
)
_PROMPT = re.compile(
    r"(?<!\d)(\d{1,12}) in (?:your|the) (?:prompt|messages)|requested tokens \((\d{1,12})\)", re.I
)


def _int_of(pattern: re.Pattern[str], text: str) -> int | None:
    match = pattern.search(text)
    if match is None:
        return None
    return int(next(g for g in match.groups() if g is not None))


def _context_error(message: str, status: int, body: Any) -> APIContextLengthError | None:
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    text = message[:SCAN]
    if code != "context_length_exceeded" and not _CONTEXT.search(text):
        return None
    return APIContextLengthError(
        message, status_code=status, body=body,
        prompt_tokens=_int_of(_PROMPT, text), n_ctx=_int_of(_N_CTX, text),
    )  # fmt: skip


def status_failure(status: int, headers: Mapping[str, str], raw: bytes) -> APIStatusError:
    """The typed error for an HTTP error answer (context length recognised in 400s)."""
    body = decoded(raw)
    message = f"{status}: {message_of(body) or 'no message'}"
    if status in (400, 413, 422):
        error = _context_error(message, status, body)
        if error is not None:
            return error
    return status_error(status, message, body=body, retry_after=retry_after_of(headers))


def failure(status: int, headers: Mapping[str, str], raw: bytes) -> tuple[APIError, float | None]:
    """The error for an answer that is not what was asked (an error status, or JSON where
    an event stream was asked for), and the server's Retry-After in seconds."""
    if 200 <= status < 300:
        return json_for_stream(raw), None
    return status_failure(status, headers, raw), retry_after_of(headers)


def inband_error(payload: Any) -> APIError:
    """The typed error for an ``{"error": ...}`` sent where a result was expected."""
    message = message_of(payload)
    error = payload.get("error") if isinstance(payload, dict) else None
    found = error if isinstance(error, dict) else {}
    status, code = found.get("status"), found.get("code")
    code = status if isinstance(status, int) else code
    context = _context_error(message, 400, payload)
    if context is not None:
        return context
    if isinstance(code, int) and 400 <= code < 600:
        return status_error(code, message, body=payload)
    return APIError(f"the server reported an error: {message}", body=payload)


def json_for_stream(raw: bytes) -> APIError:
    """The error for a JSON answer to a streaming request: its error, else a protocol error."""
    body = decoded(raw)
    if isinstance(body, dict) and body.get("error"):
        return inband_error(body)
    return ProtocolError("the server answered JSON, not an event stream", body=body)
