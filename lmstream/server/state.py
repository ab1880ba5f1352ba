"""What a running server knows: its models, their admission gates, its limits, and the
one log line per request."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from lmstream.llm import BaseLLM
from lmstream.server.admission import Gate
from lmstream.server.errors import HTTPError

__all__ = ["RequestLog", "ServedModel", "ServerSettings", "ServerState"]

logger = logging.getLogger("lmstream.server")
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


@dataclass
class ServerSettings:
    """Limits and options of ``lmstream serve``."""

    api_keys: list[str] = field(default_factory=list)
    max_body_bytes: int = 1_000_000
    max_tokens_cap: int = 4096
    default_max_tokens: int = 16
    max_waiting: int = 32
    """Requests that may wait for a busy model before the server answers 429."""
    max_concurrency: int = 256
    """Generations at once per thread-safe model (a thread-unsafe one runs one at a time)."""
    max_batch: int = 64
    grace_seconds: float = 10.0
    """On shutdown, how long in-flight streams may go on before they are ended."""
    request_defaults: dict[str, Any] = field(default_factory=dict)
    """Generation parameters (``max_tokens``, ``temperature``...) for requests without them."""
    allowed_hosts: list[str] | None = None
    """Host names the server answers to (``*`` for any). By default: any when keys are
    set, else only loopback names, so a web page cannot reach a keyless server through
    DNS rebinding. Browser requests must also come from an allowed ``Origin``."""
    max_connections: int = 1000
    """Open connections; past it, a new one evicts the oldest without a request in flight."""
    header_timeout: float = 10.0
    """Seconds a connection has to send a complete request head."""
    idle_timeout: float = 15.0
    """Seconds a connection may stay silent between requests or while sending a body."""
    send_timeout: float = 30.0
    """Seconds a send may wait on a client that does not read; then the connection is
    dropped and the generation behind it cancelled."""


@dataclass
class ServedModel:
    """One model and the names it answers to."""

    name: str
    llm: BaseLLM
    gate: Gate
    aliases: tuple[str, ...] = ()


class ServerState:
    """The models, limits and shutdown signals of one app."""

    def __init__(
        self, models: dict[str, BaseLLM], settings: ServerSettings, aliases: dict[str, str]
    ):
        self.settings = settings
        self.models: dict[str, ServedModel] = {}
        for name, llm in models.items():
            active = settings.max_concurrency if llm.thread_safe else 1
            own = tuple(a for a, target in aliases.items() if target == name)
            self.models[name] = ServedModel(name, llm, Gate(active, settings.max_waiting), own)
        self.names = {alias: self.models[target] for alias, target in aliases.items()}
        self.names.update(self.models)
        self.created = int(time.time())
        self.draining = asyncio.Event()
        self.expired = asyncio.Event()

    def resolve(self, name: str | None) -> ServedModel:
        """The model for a requested name: with one model, any name is answered by it."""
        if name is not None and name in self.names:
            return self.names[name]
        if len(self.models) == 1:
            return next(iter(self.models.values()))
        if name is None:
            raise HTTPError(400, "Name a model: this server serves several.", param="model")
        known = ", ".join(sorted(self.names))
        raise HTTPError(
            404,
            f"The model {name!r} does not exist here (served: {known}).",
            param="model",
            code="model_not_found",
        )


class RequestLog:
    """Collects one request's outcome and writes it as a single log line."""

    def __init__(self, method: str, path: str, model: str | None = None) -> None:
        # percent-encoded again: a decoded path could end the line or forge its fields
        self.method, self.path, self.model = quote(method), quote(path, safe=_PATH_SAFE), model
        self.t0 = time.monotonic()
        self.first: float | None = None
        self.tokens = 0
        self.outcome = "finished"
        self.status = 200

    def token(self, n: int = 1) -> None:
        """Count streamed tokens; the first one marks the time to first token."""
        if self.first is None:
            self.first = time.monotonic()
        self.tokens += n

    def write(self, **extra: Any) -> None:
        """Emit the line (never headers: keys stay out of logs)."""
        if self.status >= 400 and self.outcome == "finished":
            self.outcome = "rejected"
        ttft = f"{(self.first - self.t0) * 1000:.0f}ms" if self.first is not None else "-"
        took = (time.monotonic() - self.t0) * 1000
        extras = "".join(f" {k}={v}" for k, v in extra.items())
        logger.info(
            "%s %s %d model=%s outcome=%s ttft=%s tokens=%d duration=%.0fms%s",
            self.method,
            self.path,
            self.status,
            self.model or "-",
            self.outcome,
            ttft,
            self.tokens,
            took,
            extras,
        )
