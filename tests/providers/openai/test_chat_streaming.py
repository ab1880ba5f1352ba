"""ChatOpenAI streaming from the scripted server: text, reasoning under both names,
tool-call fragments (parallel, without index), usage (at the end or on every chunk),
the request's messages, tools and settings, and the stream_options fallback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import chunks_of, collect, invoke_of, stream_of
from servers.scripted import Reply, ScriptedServer, Send, error, sse
from servers.scripted_chat import chat_completion, chat_echo, chat_stream, tool_delta

from lmstream import AIMessage, HumanMessage, SystemMessage, ToolMessage, load_chat_model
from lmstream.messages import add_chunks
from lmstream.providers.openai_chat import ChatOpenAI

Make = Callable[..., ChatOpenAI]
TEXTS = ["Hé", "llo", " wörld", " 🥂", "!"]


def _message(chat: ChatOpenAI, flavour: str, *args: Any, **kwargs: Any) -> Any:
    return add_chunks(chunks_of(chat, flavour, *args, **kwargs))


def test_streams_text_with_finish_reason_and_usage(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    scripted.script(chat_stream(TEXTS, usage=(7, 5)))
    chunks = chunks_of(make_chat(), flavour, "hi")
    assert [c.text for c in chunks if c.text] == TEXTS
    assert chunks[-1].chunk_position == "last"
    total = add_chunks(chunks)
    assert total.response_metadata["finish_reason"] == "stop"
    assert total.response_metadata["model_name"] == "scripted-chat"
    assert total.usage_metadata == {"input_tokens": 7, "output_tokens": 5, "total_tokens": 12}


def test_every_chunk_and_the_answer_carry_the_servers_id(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    scripted.script(chat_stream(TEXTS))
    chunks = chunks_of(make_chat(), flavour, "hi")
    assert {c.id for c in chunks} == {"chatcmpl-scripted"}  # as LangChain's ChatOpenAI does
    scripted.script(chat_completion("whole"))
    assert invoke_of(make_chat(), flavour, "hi").id == "chatcmpl-scripted"


@pytest.mark.parametrize("split", [1, 3, 64])
def test_any_split_of_the_bytes_gives_the_same_message(
    scripted: ScriptedServer, make_chat: Make, flavour: str, split: int
) -> None:
    scripted.script(chat_stream(TEXTS, split=split))
    assert _message(make_chat(), flavour, "hi").text == "".join(TEXTS)


def test_usage_on_every_chunk_is_not_counted_twice(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    scripted.script(chat_stream(TEXTS, usage=(4, 5), usage_every=True))
    message = _message(make_chat(), flavour, "hi")
    assert message.usage_metadata == {"input_tokens": 4, "output_tokens": 5, "total_tokens": 9}
    assert not message.response_metadata.get("usage_estimated")


def test_usage_is_estimated_when_the_server_sends_none(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    scripted.script(chat_stream(TEXTS, usage=None))
    message = _message(make_chat(), flavour, "a prompt")
    assert message.response_metadata.get("usage_estimated") is True
    assert message.usage_metadata["output_tokens"] > 0


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_is_read_under_either_name(
    scripted: ScriptedServer, make_chat: Make, flavour: str, field: str
) -> None:
    scripted.script(chat_stream([{field: "Think"}, {field: "ing."}, "Yes"]))
    message = _message(make_chat(), flavour, "hi")
    assert (message.reasoning, message.text) == ("Thinking.", "Yes")


def test_reasoning_sent_under_both_names_is_read_once(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    scripted.script(chat_stream([{"reasoning_content": "Hm.", "reasoning": "Hm."}, "Yes"]))
    assert _message(make_chat(), flavour, "hi").reasoning == "Hm."


def _call(index: int | None, *pieces: str, name: str = "", id: str = "") -> list[Any]:
    first = [tool_delta(index, name, pieces[0], id=id)]
    return [first] + [[tool_delta(index, None, p)] for p in pieces[1:]]


def test_parallel_tool_calls_assemble_by_index(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    a = _call(0, '{"city"', ': "Paris"}', name="weather", id="call_a")
    b = _call(1, '{"x": ', "2}", name="double", id="call_b")
    interleaved = [a[0], b[0], b[1], a[1]]
    scripted.script(chat_stream([{"tool_calls": f} for f in interleaved],
                                finish_reason="tool_calls"))  # fmt: skip
    message = _message(make_chat(), flavour, "hi")
    assert message.tool_calls == [
        {"name": "weather", "args": {"city": "Paris"}, "id": "call_a", "type": "tool_call"},
        {"name": "double", "args": {"x": 2}, "id": "call_b", "type": "tool_call"},
    ]
    assert message.response_metadata["finish_reason"] == "tool_calls"


def test_tool_call_fragments_without_index_follow_their_id(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    a = _call(None, '{"q":', ' "a"}', name="search", id="call_1")
    b = _call(None, "{}", name="now", id="call_2")
    scripted.script(chat_stream([{"tool_calls": f} for f in [*a, *b]]))
    calls = _message(make_chat(), flavour, "hi").tool_calls
    assert [(c["name"], c["args"], c["id"]) for c in calls] == [
        ("search", {"q": "a"}, "call_1"), ("now", {}, "call_2"),
    ]  # fmt: skip


def test_messages_tools_and_settings_go_out(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    def weather(city: str) -> str:
        """The weather in a city."""
        return city

    scripted.script(chat_stream(["ok"]))
    history = [
        SystemMessage("Be brief."), HumanMessage("Weather?"),
        AIMessage("", tool_calls=[{"name": "weather", "args": {"city": "Oslo"}, "id": "c1"}]),
        ToolMessage("sunny", tool_call_id="c1"),
    ]  # fmt: skip
    chat = make_chat(model="m", seed=3, max_completion_tokens=9, logprobs=True, top_logprobs=2)
    bound = chat.bind_tools([weather], tool_choice="weather", parallel_tool_calls=False)
    collect(stream_of(bound, flavour, history, stop=["END"], response_format={"type": "text"}))
    body = scripted.requests[-1].body
    assert scripted.requests[-1].path == "/v1/chat/completions"
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "tool"]
    assert body["messages"][2]["tool_calls"] == [{"id": "c1", "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]  # fmt: skip
    assert body["messages"][3] == {"role": "tool", "content": "sunny", "tool_call_id": "c1"}
    assert body["tools"][0]["function"]["name"] == "weather"
    assert body["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    expected = {"model": "m", "seed": 3, "max_completion_tokens": 9, "logprobs": True,
                "top_logprobs": 2, "parallel_tool_calls": False, "stop": ["END"],
                "response_format": {"type": "text"}, "stream": True,
                "stream_options": {"include_usage": True}}  # fmt: skip
    assert {k: body[k] for k in expected} == expected


def test_a_server_refusing_stream_options_is_asked_again_without(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    refusal = error(400, "Unrecognized request argument supplied: stream_options",
                    type="invalid_request_error")  # fmt: skip
    scripted.script(refusal, chat_stream(["a"], usage=None), chat_stream(["b"], usage=None))
    chat = make_chat()
    assert _message(chat, flavour, "hi").text == "a"
    assert _message(chat, flavour, "hi").text == "b"
    sent = [r.body.get("stream_options") for r in scripted.requests]
    assert sent == [{"include_usage": True}, None, None]


def test_stream_usage_false_sends_no_stream_options(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    scripted.script(chat_stream(["a"]))
    collect(stream_of(make_chat(stream_usage=False), flavour, "hi"))
    assert "stream_options" not in scripted.requests[-1].body


def test_invoke_reads_a_whole_answer(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    call = {"id": "c9", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    reply = {"role": "assistant", "content": "Done", "reasoning_content": "Why",
             "tool_calls": [call]}  # fmt: skip
    scripted.script(chat_completion(reply, finish_reason="tool_calls", usage=(5, 3)))
    message = invoke_of(make_chat(disable_streaming=True), flavour, "hi")
    assert (message.text, message.reasoning) == ("Done", "Why")
    assert message.tool_calls == [{"name": "f", "args": {"a": 1}, "id": "c9", "type": "tool_call"}]
    assert message.usage_metadata == {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8}
    assert scripted.requests[-1].body["stream"] is False


def test_load_chat_model_builds_it(scripted: ScriptedServer, flavour: str) -> None:
    scripted.script(chat_stream(["x"]))
    chat = load_chat_model("openai:gpt-4o-mini", base_url=scripted.url, api_key="k")
    assert isinstance(chat, ChatOpenAI) and chat.model == "gpt-4o-mini"
    assert _message(chat, flavour, "hi").text == "x"
    assert scripted.requests[-1].body["model"] == "gpt-4o-mini"
    chat.close()


def test_the_echo_server_answers_streamed_and_whole_alike(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    scripted.handler = chat_echo
    chat = make_chat(max_tokens=3)
    streamed = _message(chat, flavour, "one two three four five")
    whole = invoke_of(chat, flavour, "one two three four")
    assert streamed.text == whole.text == "one two three "
    assert streamed.response_metadata["finish_reason"] == "length"
    assert streamed.usage_metadata == {"input_tokens": 5, "output_tokens": 3, "total_tokens": 8}


def test_logprobs_add_up_across_chunks(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    def frame(text: str) -> dict[str, Any]:
        logprobs = {"content": [{"token": text, "logprob": -0.5, "top_logprobs": []}]}
        return {"choices": [{"index": 0, "delta": {"content": text}, "logprobs": logprobs}]}

    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    scripted.script(Reply(steps=[Send(sse(frame("Hi"), frame(" there"), end))]))
    message = _message(make_chat(logprobs=True), flavour, "hi")
    tokens = [t["token"] for t in message.response_metadata["logprobs"]["content"]]
    assert tokens == ["Hi", " there"] and "".join(tokens) == message.text
