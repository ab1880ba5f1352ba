"""The router's bookkeeping, pure: its backends, which one takes the next request, and
what a failure means (try another, wait, or give up). No I/O: the router's sync and
async shells do the requests and report here; the prober reports probe outcomes.

Choice: among the backends that are admitted and not cooling down after a 429,

* ``"p2c"`` (power of two choices): two at random, the one with less load;
* ``"least"``: the one with the least load (ties at random);

where load is the requests in flight through this router plus, when known, the
requests waiting in the backend's own queue (from its Prometheus ``/metrics``). With
an affinity key (a session id, or the prompt's opening), the backend is chosen by
rendezvous hashing, so a key keeps its backend while the set of backends holds still
and moves as little as possible when one leaves or comes back.

Circuit breaker: ``eject_after`` consecutive failures (refused connections, 5xx, a
stream cut mid-way, a failed probe) eject a backend; a successful probe admits it again.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from lmstream.errors import (
    APIConnectionError,
    APIError,
    APIStatusError,
    RateLimitError,
)
from lmstream.providers._retry import MAX_RETRY_AFTER, retryable

__all__ = ["POLICIES", "Attempts", "Backend", "NoBackendError", "Pool", "affine"]

POLICIES = ("p2c", "least")
_ROUND_PAUSE = 0.25  # between rounds over backends that all failed


class NoBackendError(APIConnectionError):
    """No backend is admitted: every one is ejected by its health checks."""


@dataclass(eq=False)
class Backend:
    """One upstream server and what the router knows of it."""

    url: str
    llm: Any
    """The OpenAI-compatible client that talks to it (without retries of its own)."""
    chat: Any = None
    """Its chat client (``/v1/chat/completions``), likewise without retries."""
    outstanding: int = 0
    waiting: float = 0.0
    """Requests queued in the backend itself, from its ``/metrics`` (0 when unknown)."""
    failures: int = 0
    """Consecutive failures; ``eject_after`` of them eject the backend."""
    ejected: bool = False
    cool_until: float = 0.0
    """After a 429: not chosen before this ``time.monotonic()``."""
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + n

    def load(self) -> float:
        return self.outstanding + self.waiting

    def stats(self) -> dict[str, Any]:
        """Its counters, load and health, for the router's ``stats()``."""
        return {
            "outstanding": self.outstanding,
            "waiting": self.waiting,
            "ejected": self.ejected,
            "consecutive_failures": self.failures,
            **{k: self.counts.get(k, 0) for k in _COUNTERS},
        }


_COUNTERS = (
    "requests", "completed", "failed", "retried_elsewhere", "cancelled", "ejections",
    "readmissions", "probes", "probe_failures", "prompt_tokens", "completion_tokens",
)  # fmt: skip


def affine(backends: list[Backend], key: str) -> Backend:
    """The backend for an affinity key among ``backends``: rendezvous hashing."""
    return max(
        backends,
        key=lambda b: hashlib.blake2b(f"{b.url}\0{key}".encode(), digest_size=8).digest(),
    )


class Pool:
    """The backends, their health, and the choice of one (thread-safe)."""

    def __init__(self, backends: list[Backend], policy: str, eject_after: int) -> None:
        self.backends = backends
        self.policy = policy
        self.eject_after = eject_after
        self._lock = threading.Lock()

    def choose(self, key: str | None, exclude: set[Backend]) -> Backend | None:
        """The backend for the next attempt (its request counted in flight), or ``None``
        when every admitted backend is excluded, ejected or cooling down."""
        now = time.monotonic()
        with self._lock:
            ready = [
                b for b in self.backends
                if not b.ejected and b.cool_until <= now and b not in exclude
            ]  # fmt: skip
            if not ready:
                return None
            if key is not None:
                chosen = affine(ready, key)
            elif self.policy == "least" or len(ready) == 1:
                low = min(b.load() for b in ready)
                chosen = random.choice([b for b in ready if b.load() == low])
            else:
                a, b = random.sample(ready, 2)
                chosen = a if a.load() <= b.load() else b
            chosen.outstanding += 1
            chosen.count("requests")
            return chosen

    def admitted(self) -> bool:
        """Whether any backend is admitted (not ejected)."""
        return any(not b.ejected for b in self.backends)

    def wait_for_any(self, exclude: set[Backend]) -> float | None:
        """Seconds until a backend comes out of its cool-down, or ``None``: none will."""
        now = time.monotonic()
        with self._lock:
            cooling = [b.cool_until - now for b in self.backends
                       if not b.ejected and b not in exclude and b.cool_until > now]  # fmt: skip
        return min(cooling) if cooling else None

    def finished(self, backend: Backend, outcome: str, usage: Any = None) -> None:
        """A request ended: ``completed``, ``cancelled`` (the consumer stopped) or failed
        (then ``failed`` was called first)."""
        with self._lock:
            backend.outstanding -= 1
            if outcome == "completed":
                backend.failures = 0
            backend.count(outcome)
            if usage is not None:
                backend.count("prompt_tokens", int(getattr(usage, "prompt_tokens", 0) or 0))
                backend.count("completion_tokens", int(getattr(usage, "completion_tokens", 0)))

    def failed(self, backend: Backend, error: BaseException) -> None:
        """A request to ``backend`` failed with ``error``: a 429 cools it down for its
        Retry-After; a server-side failure counts towards ejection; a refusal of the
        request itself (4xx) says nothing about the backend's health."""
        with self._lock:
            if isinstance(error, RateLimitError):
                wait = error.retry_after if error.retry_after is not None else 1.0
                backend.cool_until = time.monotonic() + min(wait, MAX_RETRY_AFTER)
            elif isinstance(error, APIError) and _server_side(error):
                self._failure(backend)

    def count(self, backend: Backend, name: str) -> None:
        """Add one to a counter of ``backend``."""
        with self._lock:
            backend.count(name)

    def probed(self, backend: Backend, ok: bool, waiting: float | None = None) -> None:
        """A health probe's outcome: a success admits the backend again."""
        with self._lock:
            backend.count("probes")
            if waiting is not None:
                backend.waiting = waiting
            if ok and backend.ejected:  # a probe does not clear failures of requests
                backend.failures = 0
                backend.ejected = False
                backend.count("readmissions")
            elif not ok:
                backend.count("probe_failures")
                self._failure(backend)

    def _failure(self, backend: Backend) -> None:
        backend.failures += 1
        if not backend.ejected and backend.failures >= self.eject_after:
            backend.ejected = True
            backend.count("ejections")


def _server_side(error: APIError) -> bool:
    """A failure of the backend (5xx, refused, cut, timed out), not of the request (4xx)."""
    return not isinstance(error, APIStatusError) or error.status_code >= 500


class Attempts:
    """One request's attempts: which backends were tried, and whether to go on."""

    __slots__ = ("key", "last", "left", "tried")

    def __init__(self, key: str | None, max_retries: int) -> None:
        self.key = key
        self.left = max_retries
        self.tried: set[Backend] = set()
        self.last: BaseException | None = None

    def next(self, pool: Pool) -> tuple[Backend | None, float]:
        """The backend to try now, or ``(None, seconds)`` to wait before asking again;
        raises when there is nothing left to try."""
        backend = pool.choose(self.key, self.tried)
        if backend is not None:
            self.tried.add(backend)
            return backend, 0.0
        # here a retry is allowed (``failed`` counted it): wait for a backend to be ready
        wait = pool.wait_for_any(set())
        if pool.admitted() and self.tried:  # each was tried: a new round after a pause
            wait = min(wait if wait is not None else _ROUND_PAUSE, _ROUND_PAUSE)
        if wait is not None:
            self.tried = set()
            return None, wait
        if self.last is not None:
            raise self.last
        raise NoBackendError("no backend is available: every one failed its health checks")

    def failed(self, pool: Pool, backend: Backend, error: BaseException) -> None:
        """An attempt failed before its first chunk: raise unless another may follow."""
        pool.failed(backend, error)
        pool.finished(backend, "failed")
        self.last = error = name_backend(error, backend)
        if not retryable(error) or self.left <= 0:
            raise error
        self.left -= 1
        pool.count(backend, "retried_elsewhere")


def name_backend(error: BaseException, backend: Backend) -> BaseException:
    """``error``, its message and ``backend`` attribute naming the backend it came from."""
    if isinstance(error, APIError) and error.backend is None:
        error.backend = backend.url
        error.args = (f"{error.args[0] if error.args else error} (backend {backend.url})",)
    return error
