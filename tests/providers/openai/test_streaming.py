"""Streaming from the scripted server: chunks as sent, whatever the framing, with the
finish reason, usage and logprobs on the way; the request carries the settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import chunks_of, collect, invoke_of, stream_of
from servers.scripted import Reply, ScriptedServer, Send, completion, sse, stream

from lmstream import Usage
from lmstream.callbacks import BaseCallbackHandler
from lmstream.providers.openai import OpenAI

Make = Callable[..., OpenAI]
TEXTS = ["Hé", "llo", " wörld", " 🥂", "!"]


def test_streams_the_chunks_as_sent(scripted: ScriptedServer, make_llm: Make, flavour: str) -> None:
    scripted.script(stream(TEXTS, usage=(7, 5)))
    chunks = chunks_of(make_llm(), flavour, "hi")
    assert [c.text for c in chunks if c.text] == TEXTS
    named = {"id": "cmpl-scripted", "model_name": "scripted"}  # the server's answer names these
    assert chunks[-1].generation_info == {
        "finish_reason": "stop",
        "usage": Usage(7, 5, 12),
        **named,
    }


@pytest.mark.parametrize("split", [1, 2, 3, 7, 64])
def test_any_split_of_the_bytes_gives_the_same_text(
    scripted: ScriptedServer, make_llm: Make, flavour: str, split: int
) -> None:
    scripted.script(stream(TEXTS, split=split))
    assert "".join(collect(stream_of(make_llm(), flavour, "hi"))) == "".join(TEXTS)


def test_keep_alives_crlf_and_extra_fields_are_understood(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    body = sse({"choices": [{"text": "a", "index": 0, "finish_reason": None}]}, done=False)
    framed = (
        b": keep-alive\r\n\r\nid: 1\r\nretry: 10\r\n" + body.replace(b"\n", b"\r\n")
        + b"event: ping\ndata: {}\n\n"
        + b'data: {"choices": [{"text": "b", "index": 0,\ndata:  "finish_reason": "stop"}]}\r\r'
        + b"data: [DONE]\r\n\r\n"
    )  # fmt: skip
    scripted.script(Reply(steps=[Send(framed)]))
    chunks = chunks_of(make_llm(), flavour, "hi")
    assert "".join(c.text for c in chunks) == "ab"
    assert chunks[-1].generation_info["finish_reason"] == "stop"  # type: ignore[index]


def test_usage_is_estimated_and_flagged_when_the_server_sends_none(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(stream(TEXTS, usage=None, finish_reason="length"))
    info = chunks_of(make_llm(), flavour, "a prompt")[-1].generation_info
    assert info is not None and info["finish_reason"] == "length"
    assert info["usage"].estimated and info["usage"].completion_tokens > 0


def test_logprobs_are_kept(scripted: ScriptedServer, make_llm: Make, flavour: str) -> None:
    scripted.script(stream(["a", "b"], logprobs=True))
    chunks = chunks_of(make_llm(logprobs=1), flavour, "hi")
    total = sum(chunks[1:], chunks[0])
    assert total.generation_info is not None
    assert total.generation_info["logprobs"]["tokens"] == ["a", "b"]
    assert scripted.requests[-1].body["logprobs"] == 1


def test_an_empty_completion_is_a_success(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(stream([]))
    assert collect(stream_of(make_llm(), flavour, "hi")) == [""]


def test_the_request_carries_settings_and_call_overrides(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    llm = make_llm(model="m1", temperature=0.5, max_tokens=9, top_p=0.9, seed=3,
                   extra_body={"min_p": 0.1})  # fmt: skip
    collect(stream_of(llm, flavour, "one two", stop=["x"], temperature=0, extra_body={"k": 1}))
    request = scripted.requests[-1]
    assert request.path == "/v1/completions"
    assert request.headers["authorization"] == "Bearer sk-scripted"
    body = request.body
    assert body["model"] == "m1" and body["prompt"] == "one two" and body["stream"] is True
    assert body["temperature"] == 0 and body["max_tokens"] == 9 and body["top_p"] == 0.9
    assert body["seed"] == 3 and body["stop"] == ["x"] and body["k"] == 1
    assert "min_p" not in body  # a call's extra_body replaces the instance's
    assert body["stream_options"] == {"include_usage": True}


def test_stream_usage_off_asks_for_none(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    collect(stream_of(make_llm(stream_usage=False), flavour, "hi"))
    assert "stream_options" not in scripted.requests[-1].body


def test_invoke_is_one_non_streamed_request(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(completion("whole text", usage=(4, 2)))
    ends: list[Any] = []

    class Ends(BaseCallbackHandler):
        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            ends.append(response)

    llm = make_llm(callbacks=[Ends()])
    assert invoke_of(llm, flavour, "hi") == "whole text"
    assert scripted.requests[-1].body["stream"] is False
    info = ends[0].generations[0][0].generation_info
    named = {"id": "cmpl-scripted", "model_name": "scripted"}
    assert info == {"finish_reason": "stop", "usage": Usage(4, 2, 6), **named}


def test_the_instance_stop_is_enforced_even_when_the_server_ignores_it(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(stream(["Hello", " wo", "rld", " STOP", " after"]))
    llm = make_llm(stop=["STOP"])
    assert "".join(collect(stream_of(llm, flavour, "hi"))) == "Hello world "
    assert scripted.requests[-1].body["stop"] == ["STOP"]


def test_base_url_and_key_default_from_the_environment(
    scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch, flavour: str
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", scripted.url + "/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    with OpenAI() as llm:
        assert invoke_of(llm, flavour, "a b c") == "a b c "
    assert scripted.requests[-1].headers["authorization"] == "Bearer sk-env"
    assert scripted.requests[-1].body["model"] == "gpt-3.5-turbo-instruct"


def test_no_key_sends_no_authorization(
    scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with OpenAI(base_url=scripted.url) as llm:
        llm.invoke("x")
    assert "authorization" not in scripted.requests[-1].headers


async def test_async_context_manager_and_events(scripted: ScriptedServer) -> None:
    async with OpenAI(base_url=scripted.url) as llm:
        events = [e async for e in llm.astream_events("one two three", version="v2")]
    streamed = [e["data"]["chunk"] for e in events if e["event"] == "on_llm_stream"]
    assert "".join(streamed) == "one two three "
    assert events[-1]["event"] == "on_llm_end"


def test_batch_keeps_order(scripted: ScriptedServer, make_llm: Make) -> None:
    llm = make_llm()
    prompts = [f"p{i} x" for i in range(20)]
    assert llm.batch(prompts, config={"max_concurrency": 5}) == [p + " " for p in prompts]


async def test_abatch_keeps_order(scripted: ScriptedServer, make_llm: Make) -> None:
    llm = make_llm()
    prompts = [f"p{i} y" for i in range(50)]
    out = await llm.abatch(prompts, config={"max_concurrency": 16})
    assert out == [p + " " for p in prompts]


def test_settings_assigned_later_apply(scripted: ScriptedServer, make_llm: Make) -> None:
    llm = make_llm(temperature=0.1)
    llm.temperature = 0.7
    llm.max_tokens = 2
    assert llm.invoke("a b c d") == "a b "
    assert scripted.requests[-1].body["temperature"] == 0.7
