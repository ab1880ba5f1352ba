"""What the text and chat routers share: their settings, the backends' pool and health
checks, and the relay of one request's attempts. Each router names the client of a
backend it talks through (``_client``): ``OpenAI`` for text, ``ChatOpenAI`` for chat;
both are made for every backend, so one pool serves both kinds (``Router.chat_model()``).

A stream's chunks pass through as they come. An attempt that fails before its first
chunk goes to another backend (``_router_pool.Attempts``); after it, the stream ends in
the typed error, which names the backend. The consumer stopping closes the backend's
stream, so the backend stops generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Self

from lmstream.chunks import Usage
from lmstream.errors import APIError, InvalidInputError
from lmstream.llm import BaseLLM
from lmstream.providers._router_health import Prober
from lmstream.providers._router_pool import (
    POLICIES,
    Attempts,
    Backend,
    Pool,
    affine,
    name_backend,
)
from lmstream.providers.openai import OpenAI
from lmstream.providers.openai_chat import ChatOpenAI

__all__ = ["RouterCore", "v1"]

_PASSED_ON = (
    "temperature", "max_tokens", "top_p", "seed", "extra_body", "timeout", "connect_timeout",
    "first_token_timeout", "idle_timeout",
)  # fmt: skip
"""Settings given to every backend's clients."""


def v1(url: str) -> str:
    """``url`` ending in ``/v1``."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def _backend(url: str, model: str, api_key: str | None, settings: dict[str, Any]) -> Backend:
    text = OpenAI(model, base_url=url, api_key=api_key, max_retries=0, **settings)
    chat = ChatOpenAI(model, base_url=url, api_key=api_key, max_retries=0, **settings)
    return Backend(url, text, chat)


def _settings_of_shared(kwargs: dict[str, Any]) -> None:
    given = sorted(k for k in kwargs if k in RouterCore.__annotations__)
    if given:
        raise InvalidInputError(
            f"a router over another's backends takes its settings, not {', '.join(given)}: "
            "give per-call settings to each call instead"
        )


def usage_in(chunk: Any) -> Usage | None:
    """The usage a text or message chunk carries, if any."""
    meta = getattr(chunk, "usage_metadata", None)
    if meta is not None:
        return Usage(meta["input_tokens"], meta["output_tokens"], meta["total_tokens"])
    info = getattr(chunk, "generation_info", None)
    return info.get("usage") if info else None


if TYPE_CHECKING:  # a mixin to the type checker; a model (for its settings) when run
    _Base = object
else:
    _Base = BaseLLM


class RouterCore(_Base):
    """The routers' settings and machinery; a router adds its model base and ``_client``."""

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

    _pool: Pool
    _prober: Prober

    def __init__(self, upstreams: Any, *, api_key: str | None = None, **kwargs: Any):
        """``upstreams``: base URLs (``/v1`` is added when missing), or a router of the
        other kind, whose backends, health checks and settings this one shares.
        ``policy``: ``"p2c"`` (power of two choices on requests in flight) or ``"least"``;
        ``affinity="prefix"`` keeps prompts with the same first ``prefix_chars`` characters
        (a conversation's first message) on one backend, and a call's ``session_id=``
        keyword does the same for a session. A backend is ejected after ``eject_after``
        consecutive failures and admitted again after a successful probe
        (``probe_interval`` seconds apart; 0: no probes); ``metrics=True`` reads its queue
        from ``/metrics``."""
        shared = upstreams if isinstance(upstreams, RouterCore) else None
        if shared is not None:  # the other kind of router: its backends, its settings
            _settings_of_shared(kwargs)
            kwargs = {**shared._own_settings(), **kwargs}
            upstreams = shared.upstreams
        if isinstance(upstreams, str) or not upstreams:
            raise InvalidInputError("upstreams must be a non-empty list of base URLs")
        super().__init__(upstreams=[v1(u) for u in upstreams], **kwargs)  # type: ignore[call-arg]
        if self.policy not in POLICIES:
            raise InvalidInputError(f"policy must be one of {POLICIES}, not {self.policy!r}")
        if self.affinity not in (None, "prefix"):
            raise InvalidInputError(f"affinity must be None or 'prefix', not {self.affinity!r}")
        if self.eject_after < 1 or self.max_retries < 0:
            raise InvalidInputError("eject_after must be >= 1 and max_retries >= 0")
        if shared is not None:
            self._pool, self._prober = shared._pool, shared._prober
            return
        settings = {name: getattr(self, name) for name in _PASSED_ON}
        settings["stop"] = self.stop
        backends = [_backend(url, self.model, api_key, settings) for url in self.upstreams]
        self._pool = Pool(backends, self.policy, self.eject_after)
        self._prober = Prober(
            self._pool, interval=self.probe_interval, path=self.probe_path,
            metrics=self.metrics, headers=backends[0].llm._headers,
        )  # fmt: skip

    def _own_settings(self) -> dict[str, Any]:
        names = RouterCore.__annotations__
        return {n: getattr(self, n) for n in names if not n.startswith("_") and n != "upstreams"}

    def _client(self, backend: Backend) -> Any:
        """The client this router talks to ``backend`` through."""
        raise NotImplementedError

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per backend URL: requests in flight, counters (requests, completed, failed,
        retried elsewhere, cancelled, ejections, probes, tokens) and health. A text router
        and its chat model share them."""
        return {b.url: b.stats() for b in self._pool.backends}

    def backend_for(self, key: str) -> str | None:
        """The URL of the backend a session id (or, with ``affinity="prefix"``, a prompt)
        goes to now, ``None`` when none is admitted."""
        if self.affinity == "prefix":
            key = key[: self.prefix_chars]
        admitted = [b for b in self._pool.backends if not b.ejected]
        return affine(admitted, key).url if admitted else None

    def _attempts(self, prompt: Any, kwargs: dict[str, Any]) -> tuple[Attempts, dict[str, Any]]:
        self._prober.start()
        session = kwargs.pop("session_id", None)
        if session is not None and not isinstance(session, str):
            raise InvalidInputError(f"session_id must be a str, not {session!r}")
        key = session
        if key is None and self.affinity == "prefix":
            key = _opening(prompt)[: self.prefix_chars]
        return Attempts(key, self.max_retries), kwargs

    def _routed(self, prompt: Any, stop: list[str] | None, kwargs: dict[str, Any]) -> Iterator[Any]:
        """The answer's chunks from the backend that takes it (a router's ``_stream``)."""
        attempts, kw = self._attempts(prompt, kwargs)
        while True:
            backend, wait = attempts.next(self._pool)
            if backend is None:
                time.sleep(wait)
                continue
            relay = _Relay(self._pool, attempts, backend, self._client(backend))
            try:
                with contextlib.closing(relay.open(prompt, stop, kw)) as chunks:
                    for chunk in chunks:
                        yield relay.passed(chunk)
                relay.done()
                return
            except BaseException as exc:
                relay.ended(exc)  # raises, unless another backend is to be tried

    async def _arouted(
        self, prompt: Any, stop: list[str] | None, kwargs: dict[str, Any]
    ) -> AsyncIterator[Any]:
        attempts, kw = self._attempts(prompt, kwargs)
        while True:
            backend, wait = attempts.next(self._pool)
            if backend is None:
                await asyncio.sleep(wait)
                continue
            relay = _Relay(self._pool, attempts, backend, self._client(backend))
            try:
                async with contextlib.aclosing(relay.aopen(prompt, stop, kw)) as chunks:
                    async for chunk in chunks:
                        yield relay.passed(chunk)
                relay.done()
                return
            except BaseException as exc:
                relay.ended(exc)

    # -- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Stop the health checks and close the backends' connections (shared ones too)."""
        self._prober.stop()
        for backend in self._pool.backends:
            backend.llm.close()
            backend.chat.close()

    async def aclose(self) -> None:
        """Stop the health checks and close this event loop's connections."""
        await asyncio.to_thread(self._prober.stop)
        for backend in self._pool.backends:
            await backend.llm.aclose()
            await backend.chat.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _opening(prompt: Any) -> str:
    """What prefix affinity keys on: a text prompt, or a conversation's first message."""
    if isinstance(prompt, str):
        return prompt
    content = prompt[0].content if prompt else ""
    return content if isinstance(content, str) else str(content)


class _Relay:
    """One attempt on one backend: what passed through, and how it ended."""

    __slots__ = ("attempts", "backend", "client", "pool", "sent", "usage")

    def __init__(self, pool: Pool, attempts: Attempts, backend: Backend, client: Any) -> None:
        self.pool, self.attempts, self.backend, self.client = pool, attempts, backend, client
        self.sent = False
        self.usage: Usage | None = None

    def open(self, prompt: Any, stop: list[str] | None, kw: dict[str, Any]) -> Any:
        """The backend's stream of the answer: its client's own hook, a generator."""
        return self.client._stream(prompt, stop, **kw)

    def aopen(self, prompt: Any, stop: list[str] | None, kw: dict[str, Any]) -> Any:
        return self.client._astream(prompt, stop, **kw)

    def passed(self, chunk: Any) -> Any:
        self.sent = True
        usage = usage_in(chunk)
        if usage is not None:
            self.usage = usage
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
