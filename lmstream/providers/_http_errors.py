"""Error answers of HTTP servers in general, pure: a status and body mapped to the typed
errors of ``lmstream.errors``, the server's message found in its JSON, and Retry-After.
Protocol-specific modules refine these (an OpenAI context-length 400, for instance)."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any

from lmstream.errors import APIError, ProtocolError, status_error

__all__ = ["SCAN", "clip", "decoded", "failure", "loads", "message_of", "retry_after_of", "usable"]

SCAN = 2000  # characters of a server's message searched by patterns, and kept in errors


def decoded(raw: bytes) -> Any:
    """``raw`` as JSON, else as text."""
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to decode
        return raw.decode("utf-8", "replace")


def loads(data: str | bytes, what: str) -> Any:
    """``data`` as JSON, else a ``ProtocolError`` saying it is ``what``."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise ProtocolError(f"{what}: {data[:200]!r}"[:250]) from None


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, saying so."""
    return text if len(text) <= limit else text[:limit] + " [...]"


def message_of(body: Any) -> str:
    """The server's own words in an error body (``{"error": {"message": ...}}``, FastAPI's
    ``detail``, ...), else the body itself, shortened."""
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            for key in ("message", "detail", "msg"):
                if error.get(key):
                    return clip(str(error[key]), SCAN)
        return clip(str(error), 500)
    return clip(str(body), 500)


def retry_after_of(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked us to wait (``retry-after-ms``, ``retry-after``), if any."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            continue
        return max(0.0, when.timestamp() - time.time())
    return None


def usable(status: int, headers: Mapping[str, str], stream: bool) -> bool:
    """Whether an answer is what was asked for (else its body says what went wrong)."""
    if not 200 <= status < 300:
        return False
    return not (stream and headers.get("content-type", "").startswith("application/json"))


def failure(status: int, headers: Mapping[str, str], raw: bytes) -> tuple[APIError, float | None]:
    """The error for an answer that is not what was asked (an error status, or JSON where
    an event stream was asked for), and the server's Retry-After in seconds."""
    body = decoded(raw)
    if 200 <= status < 300:
        if isinstance(body, dict) and body.get("error"):
            return APIError(f"the server reported an error: {message_of(body)}", body=body), None
        return ProtocolError("the server answered JSON, not an event stream", body=body), None
    retry_after = retry_after_of(headers)
    message = f"{status}: {message_of(body) or 'no message'}"
    return status_error(status, message, body=body, retry_after=retry_after), retry_after
