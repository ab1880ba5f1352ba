"""``GET /metrics``: the server's Prometheus metrics, from the one record of each request.

Requests by route, model and outcome; requests turned away with 429; running and
waiting requests per model (read from the admission gates when scraped); time to first
token, time per output token and request duration histograms; prompt and generated
tokens. Names follow the model servers operators already watch (``vllm:*``), under
``lmstream_``. Each app has a registry of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

if TYPE_CHECKING:
    from lmstream.server.state import RequestLog, ServerState

__all__ = ["ServerMetrics"]

# the GenAI conventions' boundaries for a model server's gen_ai.server.* histograms
_FIRST_TOKEN = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0)  # fmt: skip
_PER_TOKEN = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
_DURATION = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96,
             81.92)  # fmt: skip


class _Gates:
    """Running and waiting requests per model, read from the gates at scrape time."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        running = GaugeMetricFamily(
            "lmstream_requests_running", "Generations running now.", labels=["model"]
        )
        waiting = GaugeMetricFamily(
            "lmstream_requests_waiting", "Requests waiting for a generation slot.",
            labels=["model"],
        )  # fmt: skip
        for name, served in self.state.models.items():
            gate = served.gate
            running.add_metric([name], gate.active)
            waiting.add_metric([name], len([w for w in gate.waiters if not w.done()]))
        yield running
        yield waiting


class ServerMetrics:
    """The metrics of one app."""

    def __init__(self, state: ServerState) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "lmstream_requests", "Requests answered, by route, model and outcome.",
            ["route", "model", "outcome"], registry=registry,
        )  # fmt: skip
        self.rate_limited = Counter(
            "lmstream_rate_limited_requests", "Requests turned away with 429 (model busy).",
            ["route", "model"], registry=registry,
        )  # fmt: skip
        self.duration = Histogram(
            "lmstream_request_duration_seconds", "Time from request to the end of the answer.",
            ["route", "model"], buckets=_DURATION, registry=registry,
        )  # fmt: skip
        self.first_token = Histogram(
            "lmstream_time_to_first_token_seconds", "Time from request to the first token.",
            ["model"], buckets=_FIRST_TOKEN, registry=registry,
        )  # fmt: skip
        self.per_token = Histogram(
            "lmstream_time_per_output_token_seconds", "Time per output token after the first.",
            ["model"], buckets=_PER_TOKEN, registry=registry,
        )  # fmt: skip
        self.prompt_tokens = Counter(
            "lmstream_prompt_tokens", "Prompt tokens processed.", ["model"], registry=registry
        )
        self.generation_tokens = Counter(
            "lmstream_generation_tokens", "Tokens generated.", ["model"], registry=registry
        )
        registry.register(_Gates(state))

    def observe(self, log: RequestLog, route: str, now: float) -> None:
        """Count one answered request from its log record."""
        model = log.model or ""
        self.requests.labels(route, model, log.outcome).inc()
        if log.status == 429:
            self.rate_limited.labels(route, model).inc()
        ended = log.ended if log.ended is not None else now
        self.duration.labels(route, model).observe(ended - log.t0)
        if not log.model:
            return
        if log.first is not None and log.tokens:
            self.first_token.labels(model).observe(log.first - log.t0)
        usage = log.usage
        generated = usage.completion_tokens if usage is not None else log.tokens
        if log.first is not None and log.last is not None and generated > 1:
            self.per_token.labels(model).observe((log.last - log.first) / (generated - 1))
        if usage is not None:
            self.prompt_tokens.labels(model).inc(usage.prompt_tokens)
        self.generation_tokens.labels(model).inc(generated)

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)

    async def answer(self, scope: Any, receive: Any, send: Any) -> None:
        """Answer a ``GET /metrics`` request (ASGI)."""
        await Response(self.exposition(), media_type=CONTENT_TYPE_LATEST)(scope, receive, send)


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus metrics, in the text exposition format."""
    found: ServerMetrics = request.app.state.lmstream_metrics
    return Response(found.exposition(), media_type=CONTENT_TYPE_LATEST)


def install(app: Any, state: ServerState) -> ServerMetrics:
    """Add ``GET /metrics`` to ``app``; the metrics it serves."""
    found = ServerMetrics(state)
    app.state.lmstream_metrics = found
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    return found
