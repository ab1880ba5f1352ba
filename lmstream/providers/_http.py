"""One HTTP call with time limits per phase and retries before the first chunk. Pure
bookkeeping: the sync and async shells do the I/O and ask a ``Call`` what to do next.

Phases and their limits:

* ``connect``: opening the connection (``connect`` seconds);
* ``first_token``: from the start of an attempt until the first chunk is handed on (or,
  for a whole answer, until it has arrived);
* ``idle``: from the moment the consumer asks for the next chunk until it comes.
  Keep-alive comments and empty events are not chunks: they do not reset the clock;
* ``total``: the whole call, retries and waits between them included.

A call is retried, with exponential backoff and jitter or after the server's
``Retry-After``, on connection errors, connect timeouts, 429 and 5xx, but only while
nothing has been handed on, at most ``max_retries`` times, and never past the total limit.

Sizes are bounded too (``SizeLimits``): one line or event of a streamed answer, and the
whole answer after decompression. Past a limit the call fails with a ``ProtocolError``.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

import httpx

from lmstream.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    InvalidInputError,
    ProtocolError,
)
from lmstream.providers._retry import MAX_RETRY_AFTER, retryable
from lmstream.providers._watchdog import Guard, guard_for

__all__ = [
    "DEFAULT_SIZES",
    "MAX_BODY_BYTES",
    "MAX_EVENT_BYTES",
    "Call",
    "RetryPolicy",
    "SizeLimits",
    "TimeLimits",
    "too_large",
]

_INF = math.inf
_MAX_BACKOFF = 8.0
MAX_EVENT_BYTES = 8 * 2**20
"""The default limit of one line, and of the data of one event, of a streamed answer."""
MAX_BODY_BYTES = 64 * 2**20
"""The default limit of a whole answer, decompressed (a streamed one included)."""


@dataclass(frozen=True, slots=True)
class TimeLimits:
    """Seconds allowed per phase (``None``: no limit)."""

    connect: float | None = 5.0
    first_token: float | None = 600.0
    idle: float | None = 60.0
    total: float | None = None

    def describe(self, phase: str) -> str:
        """What passing the limit of ``phase`` means, in words."""
        seconds = getattr(self, phase)
        return {
            "connect": f"could not connect within {seconds} s",
            "first_token": f"no first chunk within {seconds} s",
            "idle": f"no new chunk within {seconds} s",
            "total": f"the call took longer than {seconds} s",
        }[phase]


@dataclass(frozen=True, slots=True)
class SizeLimits:
    """Bytes a server may make the client hold (``None``: no limit): ``event``, one line
    or the data of one event of a streamed answer; ``body``, the whole answer."""

    event: int | None = MAX_EVENT_BYTES
    body: int | None = MAX_BODY_BYTES

    def __post_init__(self) -> None:
        for name, value in (("max_event_bytes", self.event), ("max_body_bytes", self.body)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):  # fmt: skip
                raise InvalidInputError(f"{name} must be an int >= 1 or None, not {value!r}")


DEFAULT_SIZES = SizeLimits()


def too_large(limit: int | None) -> ProtocolError:
    """The error for an answer longer than ``limit`` bytes."""
    return ProtocolError(f"the answer is larger than max_body_bytes ({limit} bytes)")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to wait before trying a failed call again."""

    max_retries: int = 2
    backoff: float = 0.5

    def delay(self, attempt: int, error: BaseException, retry_after: float | None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or ``None``: don't retry."""
        if attempt >= self.max_retries or not retryable(error):
            return None
        if retry_after is not None:
            return retry_after if retry_after <= MAX_RETRY_AFTER else None
        return min(_MAX_BACKOFF, self.backoff * 2.0**attempt) * (0.5 + random.random() / 2)


def _positive(seconds: float) -> float | None:
    return None if seconds == _INF else max(seconds, 0.001)


class Call:
    """One logical request: its attempts, their deadlines and the retry decisions."""

    __slots__ = (
        "_attempt_at", "_send_phases", "_total_at", "_wait_at", "attempts", "first",
        "headers", "json", "limits", "policy", "retry_after", "stream", "url", "yielded",
    )  # fmt: skip

    def __init__(
        self,
        url: str,
        json: dict[str, Any],
        headers: dict[str, str],
        limits: TimeLimits,
        policy: RetryPolicy,
        *,
        stream: bool | None = None,
    ) -> None:
        self.url, self.json, self.headers = url, json, headers
        self.stream = bool(json.get("stream")) if stream is None else stream
        """Whether the answer is an event stream (else one JSON body)."""
        self.limits, self.policy = limits, policy
        now = time.monotonic()
        self._total_at = now + limits.total if limits.total is not None else _INF
        self._attempt_at = self._wait_at = now
        self._send_phases = ("connect", "first_token")
        self.attempts = 0
        self.first = True
        self.yielded = False
        self.retry_after: float | None = None

    # -- deadlines ---------------------------------------------------------------------

    def deadline(self) -> tuple[float, str]:
        """When the wait in progress must end, and the name of the limit that says so."""
        if self.first:
            limit, start, phase = self.limits.first_token, self._attempt_at, "first_token"
        else:
            limit, start, phase = self.limits.idle, self._wait_at, "idle"
        at = start + limit if limit is not None else _INF
        return (self._total_at, "total") if self._total_at <= at else (at, phase)

    def handed_on(self) -> None:
        """A chunk went to the consumer, who now asks for the next: the idle clock starts."""
        self.first = False
        self.yielded = True
        self._wait_at = time.monotonic()

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        """The next attempt's request, its connect/read limits cut to what is left."""
        now = self._attempt_at = self._wait_at = time.monotonic()
        self.first = True
        left = self._total_at - now
        if left <= 0:
            raise self.timeout("total")
        connect = min(self.limits.connect or _INF, left)
        read_at, read_phase = self.deadline()
        self._send_phases = ("total" if connect == left else "connect", read_phase)
        timeout = httpx.Timeout(
            connect=_positive(connect), read=_positive(read_at - now),
            write=_positive(read_at - now), pool=_positive(left),
        )  # fmt: skip
        return client.build_request(
            "POST", self.url, json=self.json, headers=self.headers, timeout=timeout
        )

    def watch(self, response: httpx.Response) -> Guard | None:
        """Guard the body's reads by deadline; httpx's own read limit then steps aside."""
        guard = guard_for(response.extensions.get("network_stream"))
        if guard is not None:
            # read once, when the body starts: a fixed per-read limit would cut a wait
            # for the first chunk at the idle limit, or let keep-alives stretch it
            timeouts = response.request.extensions.get("timeout")
            if isinstance(timeouts, dict):
                timeouts["read"] = None
        return guard

    # -- outcomes ----------------------------------------------------------------------

    def timeout(self, phase: str) -> APITimeoutError:
        """The error for passing the limit of ``phase``."""
        return APITimeoutError(self.limits.describe(phase), phase=phase)

    def error(self, exc: httpx.HTTPError, guard: Guard | None = None) -> APIError:
        """The typed error for what httpx raised (a deadline that fired takes precedence)."""
        if guard is not None and guard.fired:
            return self.timeout(guard.fired)
        if isinstance(exc, (httpx.ConnectTimeout, httpx.PoolTimeout)):
            return self.timeout(self._send_phases[0])
        if isinstance(exc, httpx.TimeoutException):
            return self.timeout(self._send_phases[1])
        if isinstance(exc, httpx.DecodingError):
            return ProtocolError(f"the body could not be decoded: {exc}")
        detail = str(exc) or type(exc).__name__
        return APIConnectionError(f"connection to {self.url} failed: {detail}")

    def failed(self, error: APIError, retry_after: float | None) -> APIError:
        """``error``, noting the server's Retry-After for the retry decision."""
        self.retry_after = retry_after
        return error

    def retry_delay(self, error: BaseException) -> float | None:
        """Seconds to wait before trying again, or ``None`` when ``error`` is final."""
        if self.yielded:
            return None  # the consumer has text: a new attempt would repeat it
        retry_after = getattr(error, "retry_after", None) or self.retry_after
        delay = self.policy.delay(self.attempts, error, retry_after)
        self.retry_after = None
        if delay is None or time.monotonic() + delay >= self._total_at:
            return None
        self.attempts += 1
        return delay
