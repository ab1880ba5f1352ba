"""OpenTelemetry: every way a model call ends, ends its span once, with the right
attributes and status; chains nest; metrics match the run."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import collect, invoke_of, is_sync, stream_of, take
from opentelemetry.trace import SpanKind, StatusCode
from otel_support import Telemetry, installed

from lmstream import (
    LLM,
    FakeChatModel,
    FakeLLM,
    GenerationChunk,
    PromptTemplate,
    ProviderError,
    StrOutputParser,
)


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    yield from installed(monkeypatch)


def _fake(**kwargs: Any) -> FakeLLM:
    return FakeLLM(["hello world"], metadata={"ls_model_name": "fake-1"}, **kwargs)


def test_a_finished_stream(otel: Telemetry, flavour: str) -> None:
    out = collect(stream_of(_fake(), flavour, "say hi", max_tokens=50, temperature=0.5))
    assert "".join(out) == "hello world"
    span = otel.span()
    attrs = dict(span.attributes or {})
    assert span.name == "text_completion fake-1" and span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert attrs["gen_ai.operation.name"] == "text_completion"
    assert attrs["gen_ai.system"] == "fake" and attrs["gen_ai.request.model"] == "fake-1"
    assert attrs["gen_ai.request.max_tokens"] == 50
    assert attrs["gen_ai.request.temperature"] == 0.5
    assert attrs["gen_ai.request.stream"] is True
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.usage.input_tokens"] == len("say hi")
    assert attrs["gen_ai.usage.output_tokens"] == len("hello world")
    assert attrs["lmstream.run.outcome"] == "finished"
    assert attrs["gen_ai.response.time_to_first_chunk"] >= 0 and _seconds(span) > 0
    assert "error.type" not in attrs


class _Tuned(LLM):
    model: str = "tuned-1"
    temperature: float | None = None

    def _stream(self, prompt: str, stop: Any = None, **kwargs: Any) -> Iterator[GenerationChunk]:
        yield GenerationChunk("ok")


def test_each_call_is_described_by_its_own_parameters(otel: Telemetry, flavour: str) -> None:
    llm = _Tuned()
    for change, kwargs in [
        ({}, {}),
        ({"temperature": 0.5}, {}),  # the instance changed between calls
        ({}, {"stop": ["x"]}),
        ({"model": "tuned-2"}, {}),
        ({}, {"temperature": 1}),
        ({}, {"temperature": 1.0}),  # equal to 1, but another attribute
        ({}, {}),
    ]:
        for key, value in change.items():
            setattr(llm, key, value)
        assert collect(stream_of(llm, flavour, "p", **kwargs)) == ["ok"]
    spans = otel.spans("model")
    attrs = [dict(s.attributes or {}) for s in spans]
    assert [s.name for s in spans] == ["text_completion tuned-1"] * 3 + [
        "text_completion tuned-2"
    ] * 4
    temperatures = [a.get("gen_ai.request.temperature") for a in attrs]
    assert temperatures == [None, 0.5, 0.5, 0.5, 1, 1.0, 0.5]
    assert [type(t) for t in temperatures[4:6]] == [int, float]
    assert [a.get("gen_ai.request.stop_sequences") for a in attrs] == [
        None,
        None,
        ("x",),
        *[None] * 4,
    ]


def test_invoke_is_not_a_stream(otel: Telemetry, flavour: str) -> None:
    assert invoke_of(_fake(), flavour, "p", stop=["o"]) == "hell"
    attrs = dict(otel.span().attributes or {})
    assert attrs["gen_ai.request.stream"] is False
    assert attrs["gen_ai.request.stop_sequences"] == ("o",)
    assert "gen_ai.response.time_to_first_chunk" not in attrs


def test_a_provider_error(otel: Telemetry, flavour: str) -> None:
    with pytest.raises(ProviderError) as info:
        collect(stream_of(_fake(error_after=3), flavour, "p"))
    span = otel.span()
    attrs = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == str(info.value)
    assert attrs["error.type"] == "lmstream.errors.ProviderError"
    assert attrs["lmstream.run.outcome"] == "failed"
    assert attrs["gen_ai.response.finish_reasons"] == ("error",)
    assert attrs["gen_ai.usage.output_tokens"] == 3
    assert [e.name for e in span.events] == ["exception"]


def test_break_close_and_aclose_cancel(otel: Telemetry, flavour: str) -> None:
    assert take(stream_of(_fake(), flavour, "p"), 2) == ["h", "e"]
    span = otel.span()
    attrs = dict(span.attributes or {})
    assert span.status.status_code is StatusCode.UNSET  # cancelled is not an error
    assert attrs["lmstream.run.outcome"] == "cancelled"
    assert attrs["gen_ai.response.finish_reasons"] == ("cancelled",)
    assert attrs["gen_ai.usage.output_tokens"] == 2 and attrs["lmstream.usage.estimated"]


def test_a_plain_break(otel: Telemetry, flavour: str) -> None:
    llm = _fake()
    if is_sync(flavour):
        for _ in llm.stream("p"):
            break
        gc.collect()
    else:

        async def run() -> None:
            async for _ in llm.astream("p"):
                break

        asyncio.run(run())  # the loop closes the abandoned generator on the way out
    assert dict(otel.span().attributes or {})["lmstream.run.outcome"] == "cancelled"


def test_garbage_collection_of_an_abandoned_stream(otel: Telemetry, flavour: str) -> None:
    llm = _fake()
    if is_sync(flavour):
        stream = llm.stream("p")
        next(stream)
        assert otel.spans() == []  # open while the stream may go on
        del stream
        gc.collect()
    else:

        async def run() -> None:
            stream = llm.astream("p")
            await anext(stream)
            del stream
            gc.collect()
            await asyncio.sleep(0)  # the loop's finalizer closes it

        asyncio.run(run())
    assert dict(otel.span().attributes or {})["lmstream.run.outcome"] == "cancelled"


def test_task_cancellation(otel: Telemetry) -> None:
    async def consume() -> None:
        async for _ in _fake(delay=0.05).astream("p"):
            pass

    async def run() -> None:
        task = asyncio.create_task(consume())
        await asyncio.sleep(0.12)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    span = otel.span()
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes or {})["lmstream.run.outcome"] == "cancelled"


def test_a_span_opens_when_the_stream_starts_not_when_it_is_made(
    otel: Telemetry, flavour: str
) -> None:
    stream = stream_of(_fake(), flavour, "p")
    assert otel.spans() == []
    collect(stream)
    assert len(otel.spans()) == 1


def test_a_chain_nests_its_steps(otel: Telemetry, flavour: str) -> None:
    chain = PromptTemplate.from_template("Tell me about {topic}") | _fake() | StrOutputParser()
    tracer = otel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("request") as outer:
        assert "".join(collect(stream_of(chain, flavour, {"topic": "otters"}))) == "hello world"
    spans = {s.name: s for s in otel.spans()}
    assert set(spans) == {
        "request", "RunnableSequence", "PromptTemplate", "text_completion fake-1",
        "StrOutputParser",
    }  # fmt: skip
    root = spans["RunnableSequence"]
    assert root.parent is not None and root.parent.span_id == outer.get_span_context().span_id
    for name in ("PromptTemplate", "text_completion fake-1", "StrOutputParser"):
        span = spans[name]
        assert span.parent is not None and span.parent.span_id == root.context.span_id
        assert span.context.trace_id == outer.get_span_context().trace_id
        assert dict(span.attributes or {})["lmstream.run.outcome"] == "finished"
    assert dict(spans["PromptTemplate"].attributes or {})["lmstream.run.type"] == "prompt"


def test_a_chain_stopped_early_ends_every_span_once(otel: Telemetry, flavour: str) -> None:
    chain = PromptTemplate.from_template("{q}") | _fake() | StrOutputParser()
    assert take(stream_of(chain, flavour, {"q": "x"}), 3) == ["h", "e", "l"]
    spans = otel.spans()
    assert sorted(s.name for s in spans) == [
        "PromptTemplate", "RunnableSequence", "StrOutputParser", "text_completion fake-1",
    ]  # fmt: skip
    outcomes = {s.name: dict(s.attributes or {})["lmstream.run.outcome"] for s in spans}
    assert outcomes["PromptTemplate"] == "finished"
    assert outcomes["text_completion fake-1"] == "cancelled"
    assert outcomes["RunnableSequence"] == "cancelled"


def test_a_failing_step_marks_the_chain(otel: Telemetry, flavour: str) -> None:
    chain = PromptTemplate.from_template("{q}") | _fake(error_after=1) | StrOutputParser()
    with pytest.raises(ProviderError):
        collect(stream_of(chain, flavour, {"q": "x"}))
    spans = {s.name: s for s in otel.spans()}
    assert spans["RunnableSequence"].status.status_code is StatusCode.ERROR
    assert spans["text_completion fake-1"].status.status_code is StatusCode.ERROR
    assert spans["PromptTemplate"].status.status_code is StatusCode.UNSET


def test_no_content_unless_asked(otel: Telemetry, flavour: str) -> None:
    collect(stream_of(_fake(), flavour, "secret prompt"))
    span = otel.span()
    assert "secret" not in json.dumps(dict(span.attributes or {}))
    assert not span.events


@pytest.mark.parametrize("latest", [False, True])
def test_content_when_asked(monkeypatch: pytest.MonkeyPatch, flavour: str, latest: bool) -> None:
    env = {"OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true"}
    if latest:
        env["OTEL_SEMCONV_STABILITY_OPT_IN"] = "gen_ai_latest_experimental"
    for otel in installed(monkeypatch, **env):
        collect(stream_of(_fake(), flavour, "the prompt"))
        span = otel.span()
        attrs = dict(span.attributes or {})
        if latest:
            assert attrs["gen_ai.provider.name"] == "fake" and "gen_ai.system" not in attrs
            [given] = json.loads(str(attrs["gen_ai.input.messages"]))
            assert given == {"role": "user", "parts": [{"type": "text", "content": "the prompt"}]}
            [answer] = json.loads(str(attrs["gen_ai.output.messages"]))
            assert answer["parts"][0]["content"] == "hello world"
            assert answer["finish_reason"] == "stop"
        else:
            assert attrs["gen_ai.system"] == "fake" and "gen_ai.provider.name" not in attrs
            events = {e.name: dict(e.attributes or {}) for e in span.events}
            assert "the prompt" in str(events["gen_ai.content.prompt"]["gen_ai.prompt"])
            assert events["gen_ai.content.completion"]["gen_ai.completion"] == "hello world"


def _seconds(span: Any) -> float:
    return float(span.end_time - span.start_time) / 1e9


def _one(otel: Telemetry, name: str, **attrs: Any) -> Any:
    found = [
        p
        for p in otel.points(name)
        if all(dict(p.attributes).get(k) == v for k, v in attrs.items())
    ]
    assert len(found) == 1, (name, attrs, otel.points(name))
    return found[0]


def test_metrics_match_the_run(otel: Telemetry, flavour: str) -> None:
    collect(stream_of(_fake(), flavour, "four"))
    collect(stream_of(_fake(), flavour, "four", max_tokens=3))
    span = otel.spans()[0]
    duration = _one(otel, "gen_ai.client.operation.duration")
    assert duration.count == 2
    assert list(duration.explicit_bounds)[:3] == [0.01, 0.02, 0.04]
    assert dict(duration.attributes)["gen_ai.request.model"] == "fake-1"
    out = _one(otel, "gen_ai.client.token.usage", **{"gen_ai.token.type": "output"})
    assert (out.count, out.sum) == (2, len("hello world") + 3)
    given = _one(otel, "gen_ai.client.token.usage", **{"gen_ai.token.type": "input"})
    assert (given.count, given.sum) == (2, 8)
    assert list(given.explicit_bounds)[:4] == [1, 4, 16, 64]
    assert _one(otel, "gen_ai.client.operation.time_to_first_chunk").count == 2
    per_chunk = _one(otel, "gen_ai.client.operation.time_per_output_chunk")
    assert per_chunk.count == 2  # one mean gap per streamed call
    assert 0 < per_chunk.sum <= duration.sum  # one clock: a gap is within its call
    assert _seconds(span) > 0  # the span has its own clock: no comparison across clocks


def test_metrics_of_a_failure_name_the_error(otel: Telemetry, flavour: str) -> None:
    with pytest.raises(ProviderError):
        invoke_of(_fake(error_after=0), flavour, "p")
    point = _one(otel, "gen_ai.client.operation.duration")
    assert dict(point.attributes)["error.type"] == "lmstream.errors.ProviderError"
    assert otel.points("gen_ai.client.operation.time_to_first_chunk") == []


def test_nothing_is_imported_or_recorded_without_a_provider() -> None:
    script = """
import sys
from lmstream import FakeLLM
llm = FakeLLM(["hi"])
assert "".join(llm.stream("p")) == "hi"
assert "opentelemetry" not in sys.modules, "imported without being asked"
from opentelemetry import trace
from lmstream import _otel
assert "".join(llm.stream("p")) == "hi" and _otel.observer("llm") is None  # no provider yet
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)  # set late: honoured from the next run on
assert "".join(llm.stream("p")) == "hi"
print([s.name for s in exporter.get_finished_spans()])
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "['text_completion']"


def test_a_chat_model_call_is_a_chat_span(monkeypatch: pytest.MonkeyPatch, flavour: str) -> None:
    env = {
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
        "OTEL_SEMCONV_STABILITY_OPT_IN": "gen_ai_latest_experimental",
    }
    for otel in installed(monkeypatch, **env):
        chat = FakeChatModel(["Ahoy!"], model_name="fake-chat-1")
        stream = stream_of(chat, flavour, [("system", "Be brief."), ("human", "Hi")])
        assert "".join(c.content for c in collect(stream)) == "Ahoy!"
        span = otel.span()
        attrs = dict(span.attributes or {})
        assert span.name == "chat fake-chat-1" and span.kind is SpanKind.CLIENT
        assert attrs["gen_ai.operation.name"] == "chat"
        assert attrs["gen_ai.request.model"] == "fake-chat-1"
        assert attrs["lmstream.run.outcome"] == "finished"
        given = json.loads(str(attrs["gen_ai.input.messages"]))
        assert [m["parts"][0]["content"] for m in given] == ["Be brief.", "Hi"]
        [answer] = json.loads(str(attrs["gen_ai.output.messages"]))
        assert answer["parts"][0]["content"] == "Ahoy!"
        point = _one(otel, "gen_ai.client.operation.duration")
        assert dict(point.attributes)["gen_ai.operation.name"] == "chat"
