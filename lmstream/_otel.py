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
from contextvars import ContextVar
from time import perf_counter
from typing import TYPE_CHECKING, Any

from lmstream import _genai

if TYPE_CHECKING:
    from lmstream.runs import Run

__all__ = ["RunRecorder", "current_tracing", "observed", "observer", "refresh", "trace_headers"]

_modules = sys.modules
_open: dict[Any, Any] = {}  # run id -> its open span, so a child's span finds its parent
# the span of the model call started last in this context, for its provider's request
# headers: a provider's request goes out right after its run starts, in the same context
_calling: ContextVar[Any] = ContextVar("lmstream_model_span", default=None)


class _Telemetry:
    """What one pair of providers gives: a tracer, the instruments, the options."""

    __slots__ = ("api", "capture", "client", "instruments", "internal", "latest", "tracer")

    def __init__(self, api: Any, tracer: Any, meter: Any) -> None:
        self.api = api
        self.tracer = tracer
        self.client, self.internal = api.SpanKind.CLIENT, api.SpanKind.INTERNAL
        self.instruments = _genai.instruments(meter) if meter is not None else None
        opt_in = os.environ.get("OTEL_SEMCONV_STABILITY_OPT_IN", "")
        self.latest = "gen_ai_latest_experimental" in opt_in.replace(" ", "").split(",")
        capture = os.environ.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "")
        self.capture = capture.strip().lower() in ("true", "1", "span_only", "span_and_event")


_NO_ANSWER: tuple[None, dict[str, Any]] = (None, {})
_UNSEEN: Any = object()
_seen: list[Any] = [_UNSEEN, _UNSEEN]  # the globals last looked at
_telemetry: _Telemetry | None = None


_NO_TRACER = ("NoneType", "ProxyTracerProvider", "NoOpTracerProvider")
_NO_METER = ("NoneType", "_ProxyMeterProvider", "NoOpMeterProvider")
_apis: list[Any] = []  # the trace module and the metrics globals, once both are imported


def _find_apis() -> list[Any] | None:
    if _apis:
        return _apis
    if "opentelemetry" not in _modules:
        return None
    trace = _modules.get("opentelemetry.trace")
    metrics = _modules.get("opentelemetry.metrics._internal")
    if trace is not None and metrics is not None:
        _apis.extend((trace, metrics))
        return _apis
    return [trace, metrics]  # one of them so far: look again next time


def _provider(value: Any, variable: str, load: Any, none: tuple[str, ...]) -> Any:
    if value is None and variable in os.environ:  # named by the environment: load it
        value = load()
    return None if type(value).__name__ in none else value


def _current() -> _Telemetry | None:
    apis = _find_apis()
    if apis is None:
        return None
    trace, metrics = apis
    # the globals themselves: get_tracer_provider() reads the environment on every call
    tp = None if trace is None else trace._TRACER_PROVIDER
    mp = None if metrics is None else metrics._METER_PROVIDER
    if tp is _seen[0] and mp is _seen[1]:
        return _telemetry
    _seen[:] = [tp, mp]
    if trace is not None:
        tp = _provider(tp, "OTEL_PYTHON_TRACER_PROVIDER", trace.get_tracer_provider, _NO_TRACER)
    if metrics is not None:
        mp = _provider(mp, "OTEL_PYTHON_METER_PROVIDER", metrics.get_meter_provider, _NO_METER)
    return refresh(tp, mp)


def refresh(tracer_provider: Any = None, meter_provider: Any = None) -> _Telemetry | None:
    """Build the tracer and instruments for these providers (and re-read the options)."""
    global _telemetry
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours: str | None = version("lmstream")
    except PackageNotFoundError:  # run from a source tree
        ours = None

    if tracer_provider is None and meter_provider is None:
        _telemetry = None
        return None
    from opentelemetry import trace

    tracer = meter = None
    if tracer_provider is not None:
        tracer = tracer_provider.get_tracer("lmstream", ours)
    if meter_provider is not None:
        meter = meter_provider.get_meter("lmstream", ours)
    _telemetry = _Telemetry(trace, tracer, meter)
    return _telemetry


def trace_headers() -> dict[str, str]:
    """W3C ``traceparent`` (and ``tracestate``) headers naming the model call's span, as
    the configured propagator writes them; none when nothing is traced."""
    span, telemetry = _calling.get(), _telemetry
    if span is None or telemetry is None or telemetry.tracer is None:
        return {}  # nothing traced now: a span an earlier call left here is not sent
    from opentelemetry import propagate

    carrier: dict[str, str] = {}
    propagate.inject(carrier, telemetry.api.set_span_in_context(span))
    return carrier


def observed() -> bool:
    """Whether runs are traced or measured now (models then gather their parameters)."""
    return _current() is not None


def current_tracing() -> _Telemetry | None:
    """The telemetry in use when a tracer provider is set, else ``None``."""
    telemetry = _current()
    return telemetry if telemetry is not None and telemetry.tracer is not None else None


def observer(run_type: str) -> RunRecorder | None:
    """A recorder for a new run, or ``None`` when nobody traces or measures it."""
    telemetry = _current()
    if telemetry is None:
        return None
    if telemetry.tracer is None and run_type not in _genai.MODEL_RUNS:
        return None  # metrics only: they are about model calls
    return RunRecorder(telemetry)


class RunRecorder:
    """The span and measurements of one run, fed by the run as an event sink."""

    __slots__ = ("attrs", "chunks", "first", "model", "span", "t0", "telemetry")

    def __init__(self, telemetry: _Telemetry) -> None:
        self.telemetry = telemetry
        self.span: Any = None
        self.attrs: dict[str, Any] = {}
        self.model = False
        self.chunks = 0
        self.t0 = 0.0
        self.first: float | None = None

    def run_started(self, run: Run) -> None:
        """Open the run's span, under its parent run's span or the current context."""
        telemetry = self.telemetry
        self.model = model = run.is_llm
        if model:
            self.attrs, attributes, name = _genai.request_attributes(run, telemetry.latest)
        tracer = telemetry.tracer
        if tracer is None:
            self.t0 = perf_counter()
            return
        parent = _open.get(run.parent_id) if run.parent_id is not None else None
        context = telemetry.api.set_span_in_context(parent) if parent is not None else None
        if model:
            if telemetry.capture:  # the attributes are shared: the prompt goes on a copy
                attributes = dict(attributes)
                _genai.capture_input(attributes, run, telemetry.latest)
            self.span = span = tracer.start_span(name, context, telemetry.client, attributes)
            if telemetry.capture and not telemetry.latest:
                _genai.capture_prompt_event(span, run)
            _calling.set(span)  # a model call has no steps inside: it needs no run id
        else:
            attributes = {"lmstream.run.type": run.run_type}
            self.span = _open[run.id] = tracer.start_span(
                run.name, context, telemetry.internal, attributes
            )
        self.t0 = perf_counter()  # times are taken from the span's start

    def run_chunk(self, run: Run, chunk: Any) -> None:
        """Count a chunk; the first one's time is the time to first chunk."""
        self.chunks += 1
        if self.first is None:
            self.first = perf_counter()

    def run_finished(
        self, run: Run, outcome: str, payload: Any, error: BaseException | None
    ) -> None:
        """End the span with the outcome, and record the call's metrics."""
        if self.span is None and self.t0 == 0.0:
            self.run_started(run)  # ended before it was reported as started
        end = perf_counter()
        model = self.model
        found = _genai.answer(payload) if model else _NO_ANSWER  # read once, for both
        if (span := self.span) is not None:
            if not model:
                _open.pop(run.id, None)
            elif _calling.get() is span:
                _calling.set(None)
            self._end_span(outcome, found, error)
        if model and (instruments := self.telemetry.instruments) is not None:
            first = None if self.first is None else self.first - self.t0
            gap = None if self.first is None or self.chunks < 2 else end - self.first
            gap = None if gap is None else gap / (self.chunks - 1)
            _genai.record(instruments, self.attrs, (end - self.t0, first, gap), found[1], error)

    def custom_event(
        self, name: str, data: Any, run_id: Any, tags: list[str], metadata: dict[str, Any]
    ) -> None:
        """Custom events are not traced."""

    def _end_span(
        self, outcome: str, found: tuple[str | None, dict[str, Any]], error: BaseException | None
    ) -> None:
        span, telemetry = self.span, self.telemetry
        attributes: dict[str, Any] = {"lmstream.run.outcome": outcome}
        if self.model:
            _genai.response_attributes(found[1], self.first, self.t0, attributes)
            attributes["gen_ai.request.stream"] = self.chunks > 0
            if telemetry.capture:
                _genai.capture_output(span, attributes, found, telemetry.latest)
        if error is not None:
            api = telemetry.api
            attributes.update(_genai.error_attributes(error))
            span.record_exception(error)
            span.set_status(api.Status(api.StatusCode.ERROR, str(error)[:500]))
        span.set_attributes(attributes)
        span.end()
