"""Router: one model over many OpenAI-compatible servers (vLLM, llama.cpp's server,
SGLang, ``lmstream serve``), streaming each request through one of them.

::

    llm = Router(["http://gpu1:8000/v1", "http://gpu2:8000/v1"], model="Qwen/Qwen2.5-7B")
    for chunk in llm.stream("Tell me a story"):
        ...

Each backend is an ``OpenAI`` client without retries of its own; the router chooses the
backend (see ``_router_pool``), checks health without spending tokens (``_router_health``)
and retries on another backend, invisibly, when an attempt fails before its first chunk
(a refused connection, 5xx, 429). After the first chunk it never retries (the text would
repeat): the stream ends in the typed error, which keeps the partial text and names the
backend (``error.backend``). Chunks pass through as they come, and a consumer that stops
closes the upstream response, so the backend stops generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from lmstream.chunks import GenerationChunk
from lmstream.errors import APIError, InvalidInputError
from lmstream.llm import LLM
from lmstream.providers._router_health import Prober
from lmstream.providers._router_pool import (
    POLICIES,
    Attempts,
    Backend,
    NoBackendError,
    Pool,
    affine,
    name_backend,
)
from lmstream.providers.openai import OpenAI

if TYPE_CHECKING:
    from typing import Self

__all__ = ["NoBackendError", "Router", "served_model"]

_PASSED_ON = (
    "temperature", "max_tokens", "top_p", "seed", "extra_body", "timeout", "connect_timeout",
    "first_token_timeout", "idle_timeout",
)  # fmt: skip
"""Settings given to every backend's client."""


def _v1(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def served_model(upstreams: list[str], api_key: str | None = None) -> str | None:
    """The first model id the first upstream that answers lists at ``/v1/models``."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    for url in upstreams:
        try:
            answer = httpx.get(_v1(url) + "/models", headers=headers, timeout=5.0)
            listed = answer.json().get("data") if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            continue
        if isinstance(listed, list) and listed and isinstance(listed[0], dict):
            return str(listed[0].get("id")) if listed[0].get("id") else None
    return None


class Router(LLM):
    """A model whose requests are spread over several OpenAI-compatible servers."""

    upstreams: list[str]
    model: str = "default"
    policy: str = "p2c"
    affinity: str | None = None
    prefix_chars: int = 256
    max_retries: int = 3
    eject_after: int = 3
    probe_interval: float = 2.0
    probe_path: str = "/v1/models"
    metrics: bool = False
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    extra_body: dict[str, Any] | None = None
    timeout: float | None = None
    connect_timeout: float | None = 5.0
    first_token_timeout: float | None = 600.0
    idle_timeout: float | None = 60.0

    def __init__(self, upstreams: list[str], *, api_key: str | None = None, **kwargs: Any):
        """``upstreams``: base URLs (``/v1`` is added when missing). ``policy``: ``"p2c"``
        (power of two choices on requests in flight) or ``"least"``; ``affinity="prefix"``
        keeps prompts with the same first ``prefix_chars`` characters on one backend, and
        a call's ``session_id=`` keyword does the same for a session. A backend is ejected
        after ``eject_after`` consecutive failures and admitted again after a successful
        probe (``probe_interval`` seconds apart; 0: no probes); ``metrics=True`` reads its
        queue from ``/metrics``."""
        if isinstance(upstreams, str) or not upstreams:
            raise InvalidInputError("upstreams must be a non-empty list of base URLs")
        super().__init__(upstreams=[_v1(u) for u in upstreams], **kwargs)
        if self.policy not in POLICIES:
            raise InvalidInputError(f"policy must be one of {POLICIES}, not {self.policy!r}")
        if self.affinity not in (None, "prefix"):
            raise InvalidInputError(f"affinity must be None or 'prefix', not {self.affinity!r}")
        if self.eject_after < 1 or self.max_retries < 0:
            raise InvalidInputError("eject_after must be >= 1 and max_retries >= 0")
        settings = {name: getattr(self, name) for name in _PASSED_ON}
        backends = [
            Backend(url, OpenAI(self.model, base_url=url, api_key=api_key, stop=self.stop,
                                max_retries=0, **settings))
            for url in self.upstreams
        ]  # fmt: skip
        self._pool = Pool(backends, self.policy, self.eject_after)
        self._prober = Prober(
            self._pool, interval=self.probe_interval, path=self.probe_path,
            metrics=self.metrics, headers=backends[0].llm._headers,
        )  # fmt: skip

    @property
    def _llm_type(self) -> str:
        return "router"

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per backend URL: requests in flight, counters (requests, completed, failed,
        retried elsewhere, cancelled, ejections, probes, tokens) and health."""
        return {b.url: b.stats() for b in self._pool.backends}

    def backend_for(self, key: str) -> str | None:
        """The URL of the backend a session id (or, with ``affinity="prefix"``, a prompt)
        goes to now, ``None`` when none is admitted."""
        if self.affinity == "prefix":
            key = key[: self.prefix_chars]
        admitted = [b for b in self._pool.backends if not b.ejected]
        return affine(admitted, key).url if admitted else None

    def _attempts(self, prompt: str, kwargs: dict[str, Any]) -> tuple[Attempts, dict[str, Any]]:
        self._prober.start()
        session = kwargs.pop("session_id", None)
        if session is not None and not isinstance(session, str):
            raise InvalidInputError(f"session_id must be a str, not {session!r}")
        key = session
        if key is None and self.affinity == "prefix":
            key = prompt[: self.prefix_chars]
        return Attempts(key, self.max_retries), kwargs

    def _stream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        attempts, kw = self._attempts(prompt, kwargs)
        while True:
            backend, wait = attempts.next(self._pool)
            if backend is None:
                time.sleep(wait)
                continue
            relay = _Relay(self._pool, attempts, backend)
            try:
                with contextlib.closing(backend.llm._stream(prompt, stop, **kw)) as chunks:
                    for chunk in chunks:
                        yield relay.passed(chunk)
                relay.done()
                return
            except BaseException as exc:
                relay.ended(exc)  # raises, unless another backend is to be tried

    async def _astream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[GenerationChunk]:
        attempts, kw = self._attempts(prompt, kwargs)
        while True:
            backend, wait = attempts.next(self._pool)
            if backend is None:
                await asyncio.sleep(wait)
                continue
            relay = _Relay(self._pool, attempts, backend)
            try:
                async with contextlib.aclosing(backend.llm._astream(prompt, stop, **kw)) as chunks:
                    async for chunk in chunks:
                        yield relay.passed(chunk)
                relay.done()
                return
            except BaseException as exc:
                relay.ended(exc)

    # -- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the health checks and close the backends' connections."""
        self._prober.stop()
        for backend in self._pool.backends:
            backend.llm.close()

    async def aclose(self) -> None:
        """Stop the health checks and close this event loop's connections."""
        await asyncio.to_thread(self._prober.stop)
        for backend in self._pool.backends:
            await backend.llm.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _Relay:
    """One attempt on one backend: what passed through, and how it ended."""

    __slots__ = ("attempts", "backend", "pool", "sent", "usage")

    def __init__(self, pool: Pool, attempts: Attempts, backend: Backend) -> None:
        self.pool, self.attempts, self.backend = pool, attempts, backend
        self.sent = False
        self.usage: Any = None

    def passed(self, chunk: GenerationChunk) -> GenerationChunk:
        self.sent = True
        info = chunk.generation_info
        if info and info.get("usage") is not None:
            self.usage = info["usage"]
        return chunk

    def done(self) -> None:
        self.pool.finished(self.backend, "completed", self.usage)

    def ended(self, exc: BaseException) -> None:
        """Raise what ends the stream, or return to let another backend be tried."""
        if not isinstance(exc, APIError):  # the consumer stopped, or bad input
            outcome = "failed" if isinstance(exc, Exception) else "cancelled"
            self.pool.finished(self.backend, outcome)
            raise exc
        if self.sent:  # text reached the consumer: a retry would repeat it
            self.pool.failed(self.backend, exc)
            self.pool.finished(self.backend, "failed", self.usage)
            raise name_backend(exc, self.backend)
        self.attempts.failed(self.pool, self.backend, exc)
