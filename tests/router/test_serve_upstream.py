"""``lmstream serve --upstream``: one endpoint in front of several backends, as a real
process; clients are lmstream's OpenAI and ChatOpenAI providers, in both flavours.
``/v1/completions`` goes to the backends' ``/v1/completions``, ``/v1/chat/completions``
to their ``/v1/chat/completions``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import collect, stream_of, take
from servers.scripted import Reset, ScriptedServer, error, stream
from servers.scripted_chat import chat_stream, tool_delta

from lmstream import APIError, BadRequestError, ChatOpenAI, OpenAI
from lmstream.messages import add_chunks


@pytest.fixture(scope="module")
def endpoint(scripted_backends: list[ScriptedServer], serve_process: Any) -> Iterator[str]:
    a, b, _ = scripted_backends
    upstreams = ("--upstream", a.url, "--upstream", b.url.removesuffix("/v1"))
    # no ejections: each test here scripts its backends' failures afresh
    with serve_process(*upstreams, "--option", "eject_after=1000") as (url, _):
        yield url


@pytest.fixture
def client(endpoint: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=endpoint + "/v1", max_retries=0) as llm:
        yield llm


def test_the_endpoint_serves_the_model_its_upstreams_list(endpoint: str) -> None:
    models = httpx.get(endpoint + "/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["scripted"]


def test_a_stream_through_the_endpoint_survives_failing_backends(
    backends: list[ScriptedServer], client: OpenAI, flavour: str
) -> None:
    a, b = backends[:2]
    a.script(error(503))
    b.script(error(502))
    assert "".join(collect(stream_of(client, flavour, "one two three"))) == "one two three "
    assert len(a.requests) + len(b.requests) == 3
    assert all(r.body["model"] == "scripted" for r in [*a.requests, *b.requests])


def test_a_cut_backend_stream_reaches_the_client_as_an_error_with_its_text(
    backends: list[ScriptedServer], client: OpenAI, flavour: str
) -> None:
    cut = stream(["one ", "two "], finish_reason=None, usage=None, done=False, then=[Reset()])
    for server in backends[:2]:
        server.script(cut)
    got: list[str] = []
    with pytest.raises(APIError) as caught:
        got.extend(collect(stream_of(client, flavour, "p")))
    assert caught.value.partial_text == "one two "


def test_a_request_the_backends_refuse_is_the_clients_bad_request_not_a_gateway_error(
    backends: list[ScriptedServer], client: OpenAI, flavour: str
) -> None:
    for server in backends[:2]:
        server.script(error(400, "response_format is not supported", type="invalid_request_error"))
    with pytest.raises(BadRequestError) as caught:
        collect(stream_of(client, flavour, "p"))
    assert caught.value.status_code == 400
    assert "response_format is not supported" in str(caught.value)


def test_a_client_that_stops_reading_stops_the_backend(
    backends: list[ScriptedServer], client: OpenAI, flavour: str
) -> None:
    slow = stream([f"w{i} " for i in range(200)], delay=0.02)
    for server in backends[:2]:
        server.script(slow)
    assert take(stream_of(client, flavour, "p"), 2) == ["w0 ", "w1 "]
    used = next(s for s in backends[:2] if s.requests)
    assert used.wait(lambda: used.requests[-1].disconnected is not None)


# -- chat -------------------------------------------------------------------------------


@pytest.fixture
def chat_client(endpoint: str) -> Iterator[ChatOpenAI]:
    with ChatOpenAI(base_url=endpoint + "/v1", max_retries=0) as chat:
        yield chat


def test_a_chat_stream_goes_to_the_backends_chat_endpoint_past_failures(
    backends: list[ScriptedServer], chat_client: ChatOpenAI, flavour: str
) -> None:
    a, b = backends[:2]
    a.script(error(503))
    b.script(error(502))
    message = add_chunks(collect(stream_of(chat_client, flavour, "one two three")))
    assert message.text == "one two three "
    assert message.usage_metadata is not None and message.usage_metadata["input_tokens"] == 3
    requests = [*a.requests, *b.requests]
    assert len(requests) == 3 and {r.path for r in requests} == {"/v1/chat/completions"}
    assert all(r.body["model"] == "scripted" for r in requests)


def test_reasoning_from_a_backend_reaches_the_client_under_both_names(
    backends: list[ScriptedServer], endpoint: str
) -> None:
    for server in backends[:2]:
        server.script(chat_stream([{"reasoning": "Hmm."}, "Yes."]))
    body = {"model": "scripted", "stream": True, "messages": [{"role": "user", "content": "?"}]}
    with httpx.stream("POST", endpoint + "/v1/chat/completions", json=body) as answer:
        lines = [line for line in answer.iter_lines() if line.startswith("data: {")]
    deltas = [json.loads(line[6:])["choices"] for line in lines]
    thought = [c[0]["delta"] for c in deltas if c and "reasoning" in c[0]["delta"]]
    assert thought == [{"reasoning_content": "Hmm.", "reasoning": "Hmm."}]


def test_a_cut_backend_chat_stream_reaches_the_client_as_an_error_with_its_text(
    backends: list[ScriptedServer], chat_client: ChatOpenAI, flavour: str
) -> None:
    cut = chat_stream(["one ", "two "], finish_reason=None, usage=None, done=False,
                      then=[Reset()])  # fmt: skip
    for server in backends[:2]:
        server.script(cut)
    with pytest.raises(APIError) as caught:
        collect(stream_of(chat_client, flavour, "p"))
    assert caught.value.partial_text == "one two "


def test_a_chat_client_that_stops_reading_stops_the_backend(
    backends: list[ScriptedServer], chat_client: ChatOpenAI, flavour: str
) -> None:
    slow = chat_stream([f"w{i} " for i in range(200)], delay=0.02)
    for server in backends[:2]:
        server.script(slow)
    assert [c.text for c in take(stream_of(chat_client, flavour, "p"), 2)] == ["w0 ", "w1 "]
    used = next(s for s in backends[:2] if s.requests)
    assert used.wait(lambda: used.requests[-1].disconnected is not None)


def test_with_chat_the_endpoint_serves_the_routers_chat_side_everywhere(
    backends: list[ScriptedServer], serve_process: Any
) -> None:
    a = backends[0]
    with serve_process("--chat", "--upstream", a.url) as (url, _):
        body = {"model": "scripted", "prompt": "one two", "max_tokens": 8}
        answer = httpx.post(url + "/v1/completions", json=body, timeout=30).json()
    assert answer["choices"][0]["text"] == "one two "
    assert [r.path for r in a.requests] == ["/v1/chat/completions"]
    assert a.requests[0].body["messages"] == [{"role": "user", "content": "one two"}]


def test_tools_reach_the_backend_and_its_tool_calls_reach_the_client(
    backends: list[ScriptedServer], chat_client: ChatOpenAI, flavour: str
) -> None:
    fragments = [tool_delta(0, "add", '{"a": ', id="c0"), tool_delta(1, "neg", '{"x"', id="c1"),
                 tool_delta(0, None, "1}"), tool_delta(1, None, ": 2}")]  # fmt: skip
    calls = chat_stream([{"tool_calls": [f]} for f in fragments], finish_reason="tool_calls")
    for server in backends[:2]:
        server.script(calls)
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    message = add_chunks(collect(stream_of(chat_client.bind_tools([tool]), flavour, "sum")))
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("add", {"a": 1}), ("neg", {"x": 2})]  # fmt: skip
    used = next(s for s in backends[:2] if s.requests)
    assert used.requests[-1].body["tools"] == [tool]
