"""What a retry decides with, shared by the HTTP providers' retries and the router's
retries on another backend: which errors may be sent again, and the longest a server's
Retry-After is waited out."""

from __future__ import annotations

from lmstream.errors import APIConnectionError, APITimeoutError, RateLimitError, ServerError

__all__ = ["MAX_RETRY_AFTER", "retryable"]

MAX_RETRY_AFTER = 60.0
"""Seconds: a server asking for longer is better answered with its error (a call), or
kept aside no longer than this (a router's backend)."""


def retryable(error: BaseException) -> bool:
    """Whether a failed attempt may be sent again: nothing reached the server (a connect
    timeout, a refused connection), or the server asked for it (429, 5xx)."""
    if isinstance(error, APITimeoutError):
        return error.phase == "connect"  # nothing reached the server: safe to send again
    return isinstance(error, (APIConnectionError, RateLimitError, ServerError))
