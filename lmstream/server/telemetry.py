"""The server's traces and logs: a span per request that joins the caller's trace, the
trace id in every request's log line, and the log line as JSON for log collectors.

The span exists only when an OpenTelemetry tracer provider is set; the model runs a
request starts become its children. Without one, the trace id of an incoming W3C
``traceparent`` header still reaches the log line, so logs can be joined to the
caller's trace.
"""

from __future__ import annotations

import json
import logging
import re
import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from lmstream import _otel

if TYPE_CHECKING:
    from lmstream.server.metrics import ServerMetrics

__all__ = ["JsonFormatter", "ServerTelemetry", "current_trace_id", "fastapi_options", "route_paths"]

Scope = dict[str, Any]
_trace_id: ContextVar[str | None] = ContextVar("lmstream_trace_id", default=None)
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")


def current_trace_id() -> str | None:
    """The trace id of the request being served (hex), if it has one."""
    return _trace_id.get()


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers") or []}


def _incoming(headers: dict[str, str]) -> str | None:
    found = _TRACEPARENT.match(headers.get("traceparent", "").strip().lower())
    if found is None or found.group(1) == "0" * 32:
        return None
    return found.group(1)


class ServerTelemetry:
    """ASGI middleware around the whole app: the request's span, trace id and metrics."""

    def __init__(self, app: Any, metrics: ServerMetrics, routes: set[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.known = routes
        self.state = app.state  # what ``Guard`` exposes: the server's state

    def route(self, path: str) -> str:
        """The route a path belongs to (unknown paths share one label)."""
        return path if path in self.known else "other"

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == "/metrics" and self.state.settings.metrics_public:
            await self.metrics.answer(scope, receive, send)  # no key asked
            return
        headers = _headers(scope)
        telemetry = _otel.current_tracing()
        route = self.route(scope["path"])
        span = token = None
        trace_id = _incoming(headers)
        if telemetry is not None:
            span, token = _open_span(telemetry, scope, route, headers)
            trace_id = f"{span.get_span_context().trace_id:032x}"
        reset = _trace_id.set(trace_id)
        try:
            await self.app(scope, receive, send)
        finally:
            _trace_id.reset(reset)
            log = scope.get("lmstream.log")
            if log is not None:
                self.metrics.observe(log, route, time.monotonic())
            if span is not None:
                _close_span(telemetry, span, token, log)


def _open_span(telemetry: Any, scope: Scope, route: str, headers: dict[str, str]) -> Any:
    from opentelemetry import context, propagate

    api = telemetry.api
    parent = propagate.extract(headers)
    method = scope["method"]
    attributes = {
        "http.request.method": method, "url.path": scope["path"], "http.route": route,
        "url.scheme": scope.get("scheme", "http"),
    }  # fmt: skip
    span = telemetry.tracer.start_span(f"{method} {route}", parent, api.SpanKind.SERVER, attributes)
    return span, context.attach(api.set_span_in_context(span, parent))


def _close_span(telemetry: Any, span: Any, token: Any, log: Any) -> None:
    from opentelemetry import context

    context.detach(token)
    api = telemetry.api
    if log is not None:
        span.set_attributes({
            "http.response.status_code": log.status, "lmstream.request.outcome": log.outcome,
            **({"gen_ai.request.model": log.model} if log.model else {}),
        })  # fmt: skip
        if log.status >= 500 or log.outcome == "failed":
            span.set_status(api.Status(api.StatusCode.ERROR, f"{log.status} {log.outcome}"))
    span.end()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and a request's fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request = getattr(record, "request", None)
        if isinstance(request, dict):
            out.update(request)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)

    def converter(self, seconds: float | None) -> time.struct_time:
        """Times in UTC."""
        return time.gmtime(seconds)


def fastapi_options() -> dict[str, Any]:
    """FastAPI's own request spans off where it has them: the request span is ours."""
    import inspect

    from fastapi import FastAPI

    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": {"tracing": False}}
    return {}


def route_paths(app: Any) -> set[str]:
    """The paths of every route of ``app``, the routers it includes too."""
    found: set[str] = set()
    for route in getattr(app, "routes", ()):
        path = getattr(route, "path", None)
        if isinstance(path, str):
            found.add(path)
        inner = getattr(route, "original_router", None)  # an included router
        if inner is not None:
            found |= route_paths(inner)
    return found
