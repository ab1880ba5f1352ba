"""The server's metrics (a real Prometheus text parse), its spans joining the caller's
trace, the trace id in the log line, and the remote client's spans against it."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import collect, free_port, invoke_of, stream_of, take, wait_until
from opentelemetry.trace import SpanKind, StatusCode
from otel_support import Telemetry, installed
from prometheus_client.parser import text_string_to_metric_families

from lmstream import FakeLLM, ProviderError, RemoteLLM
from lmstream.server.telemetry import JsonFormatter

STREAM = {"model": "m", "prompt": "two words", "stream": True, "max_tokens": 400}
TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    yield from installed(monkeypatch)


def scrape(url: str, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``GET /metrics``: (name, sorted labels) -> value."""
    answer = httpx.get(url + "/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_metrics_count_a_chat_answer_s_usage(serve: Any) -> None:
    from lmstream import FakeChatModel

    chat = FakeChatModel(["hello brave new world"], chunking="word")
    body = {"model": "c", "messages": [{"role": "user", "content": "two words"}]}
    with serve({"c": chat}) as server:
        with httpx.stream(
            "POST", server.url + "/v1/chat/completions", json={**body, "stream": True}
        ) as answer:
            assert answer.status_code == 200
            answer.read()
        plain = httpx.post(server.url + "/v1/chat/completions", json=body)
        assert plain.status_code == 200
        usage = plain.json()["usage"]
        metrics = scrape(server.url)
    model = (("model", "c"),)
    assert metrics["lmstream_prompt_tokens_total", model] == 2 * usage["prompt_tokens"] > 0
    assert metrics["lmstream_generation_tokens_total", model] == 2 * usage["completion_tokens"]


def test_metrics_count_what_the_server_did(serve: Any) -> None:
    llm = FakeLLM(["hello brave new world"], chunking="word")
    with serve({"m": llm}) as server:
        with httpx.stream("POST", server.url + "/v1/completions", json=STREAM) as answer:
            frames = [line for line in answer.iter_lines() if line.startswith("data: {")]
        plain = httpx.post(server.url + "/v1/completions", json={**STREAM, "stream": False})
        assert plain.status_code == 200 and len(frames) == 4
        httpx.post(server.url + "/invoke", json={"input": "p", "kwargs": {"max_tokens": 2}})
        httpx.post(server.url + "/v1/completions", json={"prompt": "p", "n": 2})  # a 400
        metrics = scrape(server.url)
    route, model = ("route", "/v1/completions"), ("model", "m")
    assert metrics["lmstream_requests_total", (model, ("outcome", "finished"), route)] == 2
    rejected = (("model", ""), ("outcome", "rejected"), route)  # refused before a model
    assert metrics["lmstream_requests_total", rejected] == 1
    invoke = (model, ("outcome", "finished"), ("route", "/invoke"))
    assert metrics["lmstream_requests_total", invoke] == 1
    assert metrics["lmstream_generation_tokens_total", (model,)] == 4 + 4 + 2
    assert metrics["lmstream_prompt_tokens_total", (model,)] == 2 + 2 + 1
    assert metrics["lmstream_time_to_first_token_seconds_count", (model,)] == 3
    buckets = sorted(
        float(dict(labels)["le"])
        for name, labels in metrics
        if name == "lmstream_time_to_first_token_seconds_bucket"
    )
    assert buckets[:3] == [0.001, 0.005, 0.01] and buckets[-1] == float("inf")
    assert metrics["lmstream_time_per_output_token_seconds_count", (model,)] == 3
    duration = metrics["lmstream_request_duration_seconds_count", (model, route)]
    assert duration == 2
    assert metrics["lmstream_requests_running", (model,)] == 0
    assert metrics["lmstream_requests_waiting", (model,)] == 0
    assert metrics.get(("lmstream_rate_limited_requests_total", (model, route)), 0) == 0


def test_running_waiting_and_429s(serve: Any) -> None:
    llm = FakeLLM(["x" * 200], delay=0.01)
    with serve({"m": llm}, max_concurrency=1, max_waiting=0) as server:
        started = threading.Event()

        def long_stream() -> None:
            with httpx.stream("POST", server.url + "/v1/completions", json=STREAM) as answer:
                for _ in answer.iter_lines():
                    started.set()

        thread = threading.Thread(target=long_stream)
        thread.start()
        assert started.wait(10)
        busy = scrape(server.url)
        turned_away = httpx.post(server.url + "/v1/completions", json=STREAM)
        thread.join(30)
        after = scrape(server.url)
    assert turned_away.status_code == 429
    assert busy["lmstream_requests_running", (("model", "m"),)] == 1
    route = ("route", "/v1/completions")
    assert after["lmstream_rate_limited_requests_total", (("model", "m"), route)] == 1
    rejected = (("model", "m"), ("outcome", "rejected"), route)
    assert after["lmstream_requests_total", rejected] == 1
    assert after["lmstream_requests_running", (("model", "m"),)] == 0


def test_metrics_need_the_key_unless_public(serve: Any) -> None:
    with serve({"m": FakeLLM(["x"])}, api_keys=["sk-m"]) as server:
        assert httpx.get(server.url + "/metrics").status_code == 401
        scrape(server.url, Authorization="Bearer sk-m")
    with serve({"m": FakeLLM(["x"])}, api_keys=["sk-m"], metrics_public=True) as server:
        metrics = scrape(server.url)
        assert httpx.post(server.url + "/invoke", json={"input": "p"}).status_code == 401
    assert ("lmstream_requests_running", (("model", "m"),)) in metrics


def test_the_server_joins_the_callers_trace(
    otel: Telemetry, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"traceparent": f"00-{TRACE}-{PARENT}-01"}
    with caplog.at_level(logging.INFO, "lmstream.server"), serve({"m": FakeLLM(["hi"])}) as s:
        answer = httpx.post(s.url + "/v1/completions", json=STREAM, headers=headers)
        assert answer.status_code == 200
    spans = {span.name: span for span in otel.spans()}
    server, model = spans["POST /v1/completions"], spans["text_completion"]
    assert server.kind is SpanKind.SERVER
    assert f"{server.context.trace_id:032x}" == TRACE
    assert server.parent is not None and f"{server.parent.span_id:016x}" == PARENT
    assert model.parent is not None and model.parent.span_id == server.context.span_id
    attrs = dict(server.attributes or {})
    assert attrs["http.response.status_code"] == 200 and attrs["gen_ai.request.model"] == "m"
    assert attrs["lmstream.request.outcome"] == "finished"
    [line] = [r for r in caplog.records if "/v1/completions" in r.getMessage()]
    assert f"trace={TRACE}" in line.getMessage()


def test_the_log_has_the_callers_trace_id_without_tracing(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"traceparent": f"00-{TRACE}-{PARENT}-01"}
    with caplog.at_level(logging.INFO, "lmstream.server"), serve({"m": FakeLLM(["hi"])}) as s:
        httpx.post(s.url + "/invoke", json={"input": "p"}, headers=headers)
        httpx.post(s.url + "/invoke", json={"input": "p"})
    lines = [r for r in caplog.records if "/invoke" in r.getMessage()]
    assert [f"trace={TRACE}" in r.getMessage() for r in lines] == [True, False]
    record = json.loads(JsonFormatter().format(lines[0]))
    assert record["trace_id"] == TRACE and record["path"] == "/invoke"
    assert record["status"] == 200 and record["outcome"] == "finished"
    assert record["model"] == "m" and record["level"] == "info"


def test_a_client_disconnect_ends_the_spans_once(otel: Telemetry, serve: Any, flavour: str) -> None:
    llm = FakeLLM(["x" * 400], delay=0.01)
    with serve({"m": llm}) as server:
        take(stream_of(RemoteLLM(server.url, max_retries=0), flavour, "p"), 1)
        assert wait_until(lambda: len(otel.spans()) >= 3)  # client call, request, model call
    models = otel.spans("model")
    systems = sorted(dict(s.attributes or {})["gen_ai.system"] for s in models)
    assert systems == ["fake", "remote"]
    for span in models:
        assert dict(span.attributes or {})["lmstream.run.outcome"] == "cancelled"
        assert span.status.status_code is StatusCode.UNSET
    [request] = [s for s in otel.spans() if s.kind is SpanKind.SERVER]
    assert dict(request.attributes or {})["lmstream.request.outcome"] == "cancelled"


def test_remote_spans_against_a_real_server(otel: Telemetry, serve: Any, flavour: str) -> None:
    with serve({"m": FakeLLM(["hello there"], chunking="word")}) as server:
        remote = RemoteLLM(server.url, model="m", temperature=0.2)
        assert collect(stream_of(remote, flavour, "p")) == ["hello ", "there"]
    port = int(server.url.rsplit(":", 1)[1])
    [client] = [s for s in otel.spans("model") if s.name == "text_completion m"]
    attrs = dict(client.attributes or {})
    assert client.kind is SpanKind.CLIENT
    assert attrs["gen_ai.system"] == "remote" and attrs["gen_ai.request.temperature"] == 0.2
    assert (attrs["server.address"], attrs["server.port"]) == ("127.0.0.1", port)
    assert attrs["gen_ai.usage.output_tokens"] == 2 and not attrs["lmstream.usage.estimated"]
    assert attrs["lmstream.run.outcome"] == "finished"
    served = [s for s in otel.spans("model") if s.name == "text_completion"]
    assert len(served) == 1  # the server's own model call


def test_serve_with_json_logs_and_public_metrics() -> None:
    port = free_port()
    command = [sys.executable, "-m", "lmstream", "serve", "--port", str(port), "-m", "fake:hi",
               "--api-key", "sk-j", "--log-format", "json", "--metrics-public"]  # fmt: skip
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: _up(url), timeout=30)
        headers = {"Authorization": "Bearer sk-j", "traceparent": f"00-{TRACE}-{PARENT}-01"}
        assert httpx.post(url + "/invoke", json={"input": "p"}, headers=headers).is_success
        metrics = scrape(url)  # no key needed
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    invoke = ("lmstream_requests_total", (("model", "fake:hi"), ("outcome", "finished"),
                                          ("route", "/invoke")))  # fmt: skip
    assert metrics[invoke] == 1
    banner, *rest = err.splitlines()
    assert banner.startswith("lmstream: serving")
    lines = [json.loads(line) for line in rest]  # uvicorn's own lines too
    assert {r["logger"] for r in lines} >= {"uvicorn.error", "lmstream.server"}
    [record] = [r for r in lines if r.get("path") == "/invoke"]
    assert record["trace_id"] == TRACE and record["status"] == 200
    assert record["logger"] == "lmstream.server" and record["time"].endswith("Z")


def _up(url: str) -> bool:
    try:
        return httpx.get(url + "/health").status_code == 200
    except httpx.TransportError:
        return False


def test_remote_failure_marks_both_sides(otel: Telemetry, serve: Any, flavour: str) -> None:
    with serve({"m": FakeLLM(["abcdef"], error_after=2)}) as server:
        with pytest.raises(ProviderError):
            collect(stream_of(RemoteLLM(server.url, max_retries=0), flavour, "p"))
        assert wait_until(lambda: len(otel.spans("model")) == 2)
    for span in otel.spans("model"):
        attrs = dict(span.attributes or {})
        assert span.status.status_code is StatusCode.ERROR, attrs["gen_ai.system"]
        assert attrs["lmstream.run.outcome"] == "failed"
        assert str(attrs["error.type"]).startswith("lmstream.errors.")


def _client_and_server_spans(otel: Telemetry) -> tuple[Any, Any]:
    assert wait_until(lambda: any(s.kind is SpanKind.SERVER for s in otel.spans()))
    [client] = [s for s in otel.spans("model") if s.kind is SpanKind.CLIENT and s.parent is None]
    [server] = [s for s in otel.spans() if s.kind is SpanKind.SERVER]
    return client, server


@pytest.mark.parametrize("streamed", [True, False], ids=["stream", "invoke"])
@pytest.mark.parametrize("kind", ["remote", "completions", "chat"])
def test_a_served_call_joins_the_client_s_trace(
    otel: Telemetry, serve: Any, flavour: str, kind: str, streamed: bool
) -> None:
    from lmstream import FakeChatModel
    from lmstream.providers.openai import OpenAI
    from lmstream.providers.openai_chat import ChatOpenAI

    served = FakeChatModel(["hi there"]) if kind == "chat" else FakeLLM(["hi there"])
    with serve({"m": served}) as server:
        client: Any = {
            "remote": lambda: RemoteLLM(server.url, model="m", max_retries=0),
            "completions": lambda: OpenAI("m", base_url=server.url + "/v1", max_retries=0),
            "chat": lambda: ChatOpenAI("m", base_url=server.url + "/v1", max_retries=0),
        }[kind]()
        with client:  # the sync client's connections (async ones close with their loop)
            if streamed:
                chunks = collect(stream_of(client, flavour, "p"))
                assert "".join(getattr(c, "text", c) for c in chunks)
            else:
                assert getattr(answer := invoke_of(client, flavour, "p"), "text", answer)
        calling, request = _client_and_server_spans(otel)
    assert calling.context.trace_id == request.context.trace_id
    assert request.parent is not None and request.parent.span_id == calling.context.span_id
    attrs = dict(calling.attributes or {})
    assert attrs["gen_ai.response.model"] == "m"  # the server's answer names its model
    ident = attrs["gen_ai.response.id"]
    assert isinstance(ident, str)
    if kind == "remote":  # the server's run id
        assert str(uuid.UUID(ident)) == ident
    else:
        assert ident.startswith("chatcmpl-" if kind == "chat" else "cmpl-")
