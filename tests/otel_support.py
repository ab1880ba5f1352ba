"""OpenTelemetry for tests: the SDK's in-memory span exporter and metric reader, installed
as the global providers for one test and removed after it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once

__all__ = ["Telemetry", "installed"]


class Telemetry:
    """What the providers of one test collected."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def spans(self, kind: str | None = None) -> list[ReadableSpan]:
        """Finished spans, oldest first; only model calls with ``kind="model"``."""
        found = list(self.exporter.get_finished_spans())
        if kind == "model":
            return [s for s in found if "gen_ai.operation.name" in (s.attributes or {})]
        return found

    def span(self) -> ReadableSpan:
        """The one model span (fails if there is not exactly one)."""
        spans = self.spans("model")
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def points(self, name: str) -> list[Any]:
        """The data points of the metric ``name``."""
        data = self.reader.get_metrics_data()
        out: list[Any] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        out.extend(metric.data.data_points)
        return out


def _reset() -> None:
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    internal = metrics._internal  # type: ignore[attr-defined]
    internal._METER_PROVIDER = None
    internal._METER_PROVIDER_SET_ONCE = Once()


def installed(monkeypatch: pytest.MonkeyPatch, **env: str) -> Iterator[Telemetry]:
    """Install fresh global providers (with ``env`` set) for the duration of a test."""
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    telemetry = Telemetry()
    _reset()
    trace.set_tracer_provider(telemetry.tracer_provider)
    metrics.set_meter_provider(telemetry.meter_provider)
    try:
        yield telemetry
    finally:
        telemetry.tracer_provider.shutdown()
        telemetry.meter_provider.shutdown()
        _reset()
