"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

from typing import Any

from lmstream import errors
from lmstream._json import error_dict

__all__ = ["HTTPError", "error_body", "from_exception", "inband", "typed"]


def error_body(
    message: str, type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The JSON body of an error response."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class HTTPError(Exception):
    """An error answer: status, OpenAI-shaped body and extra headers."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str = "invalid_request_error",
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type, param=param, code=code)
        self.headers = headers or {}


_STATUS: list[tuple[type[BaseException], int, str, str | None]] = [
    (errors.ContextLengthError, 400, "invalid_request_error", "context_length_exceeded"),
    (errors.InvalidInputError, 400, "invalid_request_error", None),
    (errors.StreamingUnsupportedError, 400, "invalid_request_error", None),
    (errors.RateLimitError, 429, "rate_limit_error", "rate_limit_exceeded"),
    (errors.AuthenticationError, 502, "server_error", "upstream_authentication"),
    (errors.APITimeoutError, 504, "server_error", "timeout"),
    (errors.APIConnectionError, 502, "server_error", "upstream_unavailable"),
    # an upstream that refuses the request refuses what the client sent: theirs to fix
    (errors.BadRequestError, 400, "invalid_request_error", None),
    (errors.APIStatusError, 502, "server_error", "upstream_error"),
    (errors.ModelLoadError, 503, "server_error", "model_unavailable"),
]


def from_exception(exc: BaseException) -> HTTPError:
    """The answer for an error raised while serving a request."""
    if isinstance(exc, HTTPError):
        return exc
    for cls, status, kind, code in _STATUS:
        if isinstance(exc, cls):
            return HTTPError(status, str(exc), kind, code=code)
    return HTTPError(500, f"{type(exc).__name__}: {exc}", "server_error", code="generation_failed")


def typed(answer: HTTPError, cause: BaseException | None) -> HTTPError:
    """``answer`` carrying the error the model raised (``error.lmstream``: its type, message,
    partial text and usage), so lmstream's own clients raise that error again; an answer
    the server made itself (``cause`` an ``HTTPError`` or none) carries nothing more."""
    if cause is not None and not isinstance(cause, HTTPError):
        answer.body["error"]["lmstream"] = error_dict(cause)
    return answer


def inband(answer: HTTPError) -> dict[str, Any]:
    """The body of an error sent inside a stream that already answered 200: the answer's,
    with the status it would have had (``error.status``), so a client can still type it."""
    return {"error": {**answer.body["error"], "status": answer.status}}
