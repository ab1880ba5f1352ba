"""OpenTelemetry with the real local model: the span of a finished, a stopped and a
failed generation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import collect, stream_of, take
from opentelemetry.trace import SpanKind, StatusCode
from otel_support import Telemetry, installed

from lmstream import InvalidInputError
from lmstream.providers.llamacpp import LlamaCpp


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    yield from installed(monkeypatch)


def test_a_finished_generation(otel: Telemetry, llm: LlamaCpp, prompt: str, flavour: str) -> None:
    text = "".join(collect(stream_of(llm, flavour, prompt, max_tokens=6)))
    span = otel.span()
    attrs = dict(span.attributes or {})
    assert span.kind is SpanKind.CLIENT and span.status.status_code is StatusCode.UNSET
    assert span.name == f"text_completion {llm.model_name}"
    assert attrs["gen_ai.system"] == "llamacpp"
    assert attrs["gen_ai.request.max_tokens"] == 6 and attrs["gen_ai.request.temperature"] == 0
    assert attrs["gen_ai.request.seed"] == 7
    assert attrs["gen_ai.usage.output_tokens"] == 6 and not attrs["lmstream.usage.estimated"]
    assert attrs["gen_ai.usage.input_tokens"] > 0
    assert attrs["gen_ai.response.finish_reasons"] == ("length",)
    assert text and attrs["lmstream.run.outcome"] == "finished"
    usage = otel.points("gen_ai.client.token.usage")
    [out] = [p for p in usage if dict(p.attributes)["gen_ai.token.type"] == "output"]
    assert (out.count, out.sum) == (1, 6)


def test_a_stopped_generation(
    otel: Telemetry, llm: LlamaCpp, long_prompt: str, flavour: str
) -> None:
    assert len(take(stream_of(llm, flavour, long_prompt, max_tokens=64), 2)) == 2
    span = otel.span()
    attrs = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.UNSET
    assert attrs["lmstream.run.outcome"] == "cancelled"
    assert attrs["gen_ai.response.finish_reasons"] == ("cancelled",)


def test_a_failed_generation(otel: Telemetry, llm: LlamaCpp, flavour: str) -> None:
    with pytest.raises(InvalidInputError):
        collect(stream_of(llm, flavour, "word " * 4000))  # longer than the context
    span = otel.span()
    assert span.status.status_code is StatusCode.ERROR
    assert str(dict(span.attributes or {})["error.type"]).startswith("lmstream.errors.")
