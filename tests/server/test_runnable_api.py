"""The runnable endpoints: /invoke, /batch, /stream, /stream_events."""

from __future__ import annotations

import json
from typing import Any

import httpx

from lmstream import FakeLLM


def sse(response: httpx.Response) -> list[tuple[str, Any]]:
    frames = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        frames.append((fields.get("event", "message"), json.loads(fields["data"])))
    return frames


def test_invoke(serve: Any) -> None:
    with serve({"m": FakeLLM(["hello"])}) as server:
        body = {"input": "p", "kwargs": {"max_tokens": 3}}
        answer = httpx.post(f"{server.url}/invoke", json=body).json()
    assert answer["output"] == "hel" and answer["finish_reason"] == "length"
    assert answer["usage"]["completion_tokens"] == 3 and answer["run_id"]


def test_invoke_accepts_messages(serve: Any) -> None:
    with serve({"m": FakeLLM(["x"])}) as server:
        body = {"input": [["system", "s"], {"role": "user", "content": "u"}]}
        assert httpx.post(f"{server.url}/invoke", json=body).json()["output"] == "x"


def test_batch_gives_each_input_its_own_result(serve: Any) -> None:
    with serve({"m": FakeLLM(["ok", "abcdef"], error_after=3)}) as server:
        answer = httpx.post(f"{server.url}/batch", json={"inputs": ["a", "b", "c"]}).json()
    results = answer["results"]
    assert len(results) == 3
    assert sum("error" in r for r in results) >= 1
    for result in results:
        if "error" in result:
            assert result["error"]["type"] == "ProviderError"
            assert result["error"]["partial_text"] == "abc"
        else:
            assert result["output"] == "ok"


def test_stream_frames_end_explicitly(serve: Any) -> None:
    with serve({"m": FakeLLM(["abc"])}) as server:
        response = httpx.post(f"{server.url}/stream", json={"input": "p"})
    frames = sse(response)
    assert frames[0][0] == "metadata" and frames[0][1]["run_id"]
    data = [f[1] for f in frames if f[0] == "data"]
    assert "".join(d["text"] for d in data) == "abc"
    assert data[-1]["generation_info"]["finish_reason"] == "stop"
    event, outcome = frames[-1]
    assert event == "end"
    assert outcome["finish_reason"] == "stop"
    assert outcome["usage"]["completion_tokens"] == 3


def test_stream_errors_end_with_an_error_frame(serve: Any) -> None:
    with serve({"m": FakeLLM(["abcdef"], error_after=2)}) as server:
        frames = sse(httpx.post(f"{server.url}/stream", json={"input": "p"}))
    assert [f[1]["text"] for f in frames if f[0] == "data"] == ["a", "b"]
    event, error = frames[-1]
    assert event == "error"
    assert error["type"] == "ProviderError" and error["partial_text"] == "ab"


def test_stream_events_carry_config(serve: Any) -> None:
    with serve({"m": FakeLLM(["ab"])}) as server:
        body = {"input": "p", "config": {"tags": ["t1"], "run_name": "named", "metadata": {"k": 1}}}
        frames = sse(httpx.post(f"{server.url}/stream_events", json=body))
        v1 = sse(httpx.post(f"{server.url}/stream_events", json={"input": "p", "version": "v1"}))
    events = [f[1] for f in frames if f[0] == "data"]
    assert [e["event"] for e in events] == [
        "on_llm_start",
        "on_llm_stream",
        "on_llm_stream",
        "on_llm_end",
    ]
    # tags and metadata come with the first event and again only when they change
    assert all(e["name"] == "named" for e in events)
    assert events[0]["tags"] == ["t1"] and events[0]["metadata"]["k"] == 1
    assert not any("metadata" in e or "tags" in e for e in events[1:])
    assert events[1]["data"] == {"chunk": "a"}
    assert frames[-1] == ("end", {})
    assert [f[1]["data"] for f in v1 if f[0] == "data"][-1] == {"output": "ab"}


def test_clients_may_not_set_other_config(serve: Any) -> None:
    with serve({"m": FakeLLM(["x"])}) as server:
        empty = httpx.post(f"{server.url}/batch", json={"inputs": []})
        assert (empty.status_code, empty.json()) == (200, {"results": []})
        json_type = {"content-type": "application/json"}
        raw = b'{"input": "\\ud800"}'
        escaped = httpx.post(f"{server.url}/invoke", content=raw, headers=json_type)
        assert escaped.status_code == 400
        assert "not valid Unicode" in escaped.json()["error"]["message"]
        streamed = httpx.post(f"{server.url}/stream", content=raw, headers=json_type)
        assert streamed.status_code == 400  # refused before the stream, not in-band
        untyped = httpx.post(f"{server.url}/invoke", content=b'{"input": "p"}')
        assert untyped.status_code == 400
        assert "application/json" in untyped.json()["error"]["message"]
        for body in (
            {"input": [["human"]]},
            {"input": "p", "kwargs": {"top_k": 64}},
            {"input": 5},
        ):
            response = httpx.post(f"{server.url}/invoke", json=body)
            assert response.status_code == 400
            assert response.json()["error"]["type"] == "invalid_request_error"
