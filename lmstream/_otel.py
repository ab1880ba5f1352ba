"""OpenTelemetry for runs: a span per run and the GenAI metrics, free when nobody traces.

lmstream never imports OpenTelemetry itself. Each run asks ``observer(run_type)`` for a
recorder; the answer is ``None``, after a look into ``sys.modules``, unless the
application imported ``opentelemetry`` and set a tracer or meter provider. The question
is asked again for every run, so a provider set later is honoured; the tracer and the
instruments built for a provider are kept until it changes.

The recorder is an event sink of its run (``runs.Run`` reports start, chunks and the one
outcome to it), so every way a run ends (finished, failed, cancelled by ``break``,
``close()``, task cancellation or garbage collection, a time limit) ends its span once.
Model runs follow the GenAI semantic conventions (``_genai``); other steps get an
internal span named after the step, the parent of the spans of the steps inside it.
"""

from __future__ import annotations

import os
import sys
from time import perf_counter
from typing import TYPE_CHECKING, Any

from lmstream import _genai

if TYPE_CHECKING:
    from lmstream.runs import Run

__all__ = ["RunRecorder", "current_tracing", "observed", "observer", "refresh"]

_modules = sys.modules
_open: dict[Any, Any] = {}  # run id -> its open span, so a child's span finds its parent


class _Telemetry:
    """What one pair of providers gives: a tracer, the instruments, the options."""

    __slots__ = ("api", "capture", "instruments", "latest", "tracer")

    def __init__(self, api: Any, tracer: Any, meter: Any) -> None:
        self.api = api
        self.tracer = tracer
        self.instruments = _genai.instruments(meter) if meter is not None else None
        opt_in = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
        self.latest = "gen_ai_latest_experimental" in opt_in.replace(" ", "").split(",")
        capture = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "")
        self.capture = capture.strip().lower() in ("true", "1", "span_only", "span_and_event")


_seen: tuple[Any, Any] = (None, None)
_telemetry: _Telemetry | None = None


def _provider(module: Any, getter: str, proxies: tuple[str, ...]) -> Any:
    if module is None:
        return None
    provider = getattr(module, getter)()
    return None if type(provider).__name__ in proxies else provider


def _current() -> _Telemetry | None:
    trace = _modules.get("opentelemetry.trace")
    metrics = _modules.get("opentelemetry.metrics")
    if trace is None and metrics is None:
        return None
    tp = _provider(trace, "get_tracer_provider", ("ProxyTracerProvider", "NoOpTracerProvider"))
    mp = _provider(metrics, "get_meter_provider", ("_ProxyMeterProvider", "NoOpMeterProvider"))
    if (tp, mp) != _seen:
        return refresh(tp, mp)
    return _telemetry


def refresh(tracer_provider: Any = None, meter_provider: Any = None) -> _Telemetry | None:
    """Build the tracer and instruments for these providers (and re-read the options)."""
    global _seen, _telemetry
    from lmstream import __version__

    _seen = (tracer_provider, meter_provider)
    if tracer_provider is None and meter_provider is None:
        _telemetry = None
        return None
    from opentelemetry import trace

    tracer = meter = None
    if tracer_provider is not None:
        tracer = tracer_provider.get_tracer("lmstream", __version__)
    if meter_provider is not None:
        meter = meter_provider.get_meter("lmstream", __version__)
    _telemetry = _Telemetry(trace, tracer, meter)
    return _telemetry


def observed() -> bool:
    """Whether runs are traced or measured now (models then gather their parameters)."""
    return "opentelemetry" in _modules and _current() is not None


def current_tracing() -> _Telemetry | None:
    """The telemetry in use when a tracer provider is set, else ``None``."""
    if "opentelemetry" not in _modules:
        return None
    telemetry = _current()
    return telemetry if telemetry is not None and telemetry.tracer is not None else None


def observer(run_type: str) -> RunRecorder | None:
    """A recorder for a new run, or ``None`` when nobody traces or measures it."""
    if "opentelemetry" not in _modules:
        return None
    telemetry = _current()
    if telemetry is None:
        return None
    if telemetry.tracer is None and run_type not in _genai.MODEL_RUNS:
        return None  # metrics only: they are about model calls
    return RunRecorder(telemetry)


class RunRecorder:
    """The span and measurements of one run, fed by the run as an event sink."""

    is_event_sink = True
    __slots__ = ("attrs", "chunks", "first", "last", "model", "span", "t0", "telemetry")

    def __init__(self, telemetry: _Telemetry) -> None:
        self.telemetry = telemetry
        self.span: Any = None
        self.attrs: dict[str, Any] = {}
        self.model = False
        self.chunks = 0
        self.t0 = self.last = 0.0
        self.first: float | None = None

    def run_started(self, run: Run) -> None:
        """Open the run's span, under its parent run's span or the current context."""
        telemetry = self.telemetry
        self.model = run.run_type in _genai.MODEL_RUNS
        self.t0 = perf_counter()
        if self.model:
            self.attrs, params = _genai.request_attributes(run, telemetry.latest)
        if telemetry.tracer is None:
            return
        api = telemetry.api
        parent = _open.get(run.parent_id) if run.parent_id is not None else None
        context = api.set_span_in_context(parent) if parent is not None else None
        if self.model:
            name, kind = _genai.span_name(self.attrs), api.SpanKind.CLIENT
            attributes = {**self.attrs, **params}
            if telemetry.capture:
                _genai.capture_input(attributes, run, telemetry.latest)
        else:
            name, kind = run.name, api.SpanKind.INTERNAL
            attributes = {"lmstream.run.type": run.run_type}
        self.span = telemetry.tracer.start_span(name, context, kind, attributes)
        if self.model and telemetry.capture and not telemetry.latest:
            _genai.capture_prompt_event(self.span, run)
        _open[run.id] = self.span

    def run_chunk(self, run: Run, chunk: Any) -> None:
        """Time a model's chunk: the first one, and the gaps between the others."""
        if not self.model:
            return
        now = perf_counter()
        if self.first is None:
            self.first = now
        elif (instruments := self.telemetry.instruments) is not None:
            instruments.per_chunk.record(now - self.last, self.attrs)
        self.last = now
        self.chunks += 1

    def run_finished(
        self, run: Run, outcome: str, payload: Any, error: BaseException | None
    ) -> None:
        """End the span with the outcome, and record the call's metrics."""
        if self.span is None and self.t0 == 0.0:
            self.run_started(run)  # ended before it was reported as started
        end = perf_counter()
        if self.span is not None:
            _open.pop(run.id, None)
            self._end_span(run, outcome, payload, error)
        if self.model and (found := self.telemetry.instruments) is not None:
            first = None if self.first is None else self.first - self.t0
            _genai.record(found, self.attrs, end - self.t0, first, payload, error)

    def _end_span(self, run: Run, outcome: str, payload: Any, error: BaseException | None) -> None:
        span, api, telemetry = self.span, self.telemetry.api, self.telemetry
        attributes: dict[str, Any] = {"lmstream.run.outcome": outcome}
        if self.model:
            attributes.update(_genai.response_attributes(payload, self.first, self.t0))
            attributes["gen_ai.request.stream"] = self.chunks > 0
            if telemetry.capture:
                _genai.capture_output(span, attributes, payload, telemetry.latest)
        if error is not None:
            attributes.update(_genai.error_attributes(error))
            span.record_exception(error)
            span.set_status(api.Status(api.StatusCode.ERROR, str(error)[:500]))
        span.set_attributes(attributes)
        span.end()
