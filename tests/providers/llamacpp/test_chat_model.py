"""ChatLlamaCpp: the embedded chat model on the same engine as LlamaCpp, real llama.cpp."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import chunks_of, collect, invoke_of, stream_of, take

from lmstream import AIMessage, ToolMessage, load_chat_model
from lmstream.errors import InvalidInputError
from lmstream.messages import AIMessageChunk, add_chunks
from lmstream.providers.llamacpp import LlamaCpp
from lmstream.providers.llamacpp_chat import ChatLlamaCpp

TURNS = [
    {"role": "system", "content": "You are a pirate. Always answer like a pirate."},
    {"role": "user", "content": "What is your name?"},
]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def chat() -> ChatLlamaCpp:
    return ChatLlamaCpp(temperature=0, seed=7, max_tokens=16)


def _reference(chat: ChatLlamaCpp, max_tokens: int) -> dict[str, Any]:
    return chat.client.create_chat_completion(  # type: ignore[return-value]
        TURNS, max_tokens=max_tokens, temperature=0.0, top_p=chat.top_p, top_k=chat.top_k,
        repeat_penalty=chat.repeat_penalty,
    )  # fmt: skip


def test_streams_what_llama_cpp_python_answers_through_the_template(
    chat: ChatLlamaCpp, flavour: str
) -> None:
    reference = _reference(chat, 16)
    chunks = chunks_of(chat, flavour, TURNS)
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert len([c for c in chunks if c.text]) > 5  # token by token
    whole = add_chunks(chunks)
    assert whole.text == reference["choices"][0]["message"]["content"]
    assert chunks[-1].chunk_position == "last"
    usage = whole.usage_metadata
    assert usage is not None
    assert usage["input_tokens"] == reference["usage"]["prompt_tokens"]
    assert usage["output_tokens"] == reference["usage"]["completion_tokens"]
    assert whole.response_metadata["finish_reason"] == "length"
    message = invoke_of(chat, flavour, TURNS)
    assert isinstance(message, AIMessage) and message.text == whole.text


def test_shares_the_loaded_model_with_llamacpp(chat: ChatLlamaCpp) -> None:
    assert chat.client is LlamaCpp().client
    assert type(load_chat_model("llamacpp")) is ChatLlamaCpp


def test_stop_sequences_are_cut_exactly(chat: ChatLlamaCpp, flavour: str) -> None:
    full = add_chunks(chunks_of(chat, flavour, TURNS)).text
    stop = full[4:7]
    assert stop and stop not in full[:6]
    chunks = chunks_of(chat, flavour, TURNS, stop=[stop])
    whole = add_chunks(chunks)
    assert whole.text == full[: full.index(stop)]
    assert whole.response_metadata["finish_reason"] == "stop"


def test_text_is_whole_characters(flavour: str) -> None:
    chat = ChatLlamaCpp(temperature=0, seed=7, max_tokens=40)
    chunks = chunks_of(chat, flavour, "Write the word 'café' and an emoji, three times.")
    assert chunks and all("\ufffd" not in c.text for c in chunks)
    assert all(c.text.encode("utf-8").decode("utf-8") == c.text for c in chunks)


def test_closing_the_stream_stops_the_engine(chat: ChatLlamaCpp, flavour: str) -> None:
    engine = chat._engine
    start = engine.tokens_generated
    got = take(stream_of(chat, flavour, TURNS, max_tokens=200), 3)
    assert len(got) == 3
    assert engine.tokens_generated - start < 20
    # the model is free again: the next call gets it
    assert add_chunks(chunks_of(chat, flavour, TURNS, max_tokens=2)).text


def test_tool_calls_are_well_formed_through_the_grammar(chat: ChatLlamaCpp, flavour: str) -> None:
    bound = chat.bind_tools([WEATHER])
    chunks = collect(stream_of(bound, flavour, "What is the weather in Paris?", max_tokens=60))
    whole = add_chunks(chunks)
    assert whole.response_metadata["finish_reason"] == "tool_calls"
    (call,) = whole.tool_calls
    assert call["name"] == "get_weather"
    assert isinstance(call["args"]["city"], str)
    assert call["id"].startswith("call_")
    assert whole.invalid_tool_calls == []
    # the call and its result go back to the model as turns
    history = ["What is the weather in Paris?", whole.to_message(),
               ToolMessage(json.dumps({"sky": "sunny"}), tool_call_id=call["id"])]  # fmt: skip
    answer = invoke_of(chat, flavour, history, max_tokens=8)
    assert isinstance(answer, AIMessage) and answer.text


def test_tool_choice_none_answers_in_text(chat: ChatLlamaCpp, flavour: str) -> None:
    message = invoke_of(chat, flavour, "Hi!", tools=[WEATHER], tool_choice="none")
    assert message.tool_calls == [] and message.text


def test_response_format_holds_the_text_to_the_schema(chat: ChatLlamaCpp, flavour: str) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "pirate", "schema": schema}}
    message = invoke_of(chat, flavour, TURNS, response_format=fmt, max_tokens=40)
    assert isinstance(json.loads(message.text)["name"], str)


NAMED = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


@pytest.mark.parametrize(
    "fmt",
    [{"type": "json_object"}, {"type": "json_schema", "json_schema": {"schema": NAMED}}],
)
def test_response_format_holds_the_answer_as_llamacpp_does(
    chat: ChatLlamaCpp, flavour: str, fmt: dict[str, Any]
) -> None:
    # one grammar for both models: the same turns at temperature 0 give the same JSON
    text = LlamaCpp(temperature=0, seed=7).invoke(TURNS, response_format=fmt, max_tokens=40)
    message = invoke_of(chat, flavour, TURNS, response_format=fmt, max_tokens=40)
    assert message.text == text
    assert isinstance(json.loads(message.text), dict)


def test_bad_tools_and_formats_are_typed_errors(chat: ChatLlamaCpp, flavour: str) -> None:
    with pytest.raises(InvalidInputError, match="tool schema"):
        invoke_of(chat, flavour, "Hi", tools=["nope"])
    with pytest.raises(InvalidInputError, match="response_format"):
        invoke_of(chat, flavour, "Hi", response_format={"type": "xml"})
    with pytest.raises(InvalidInputError, match="unknown argument"):
        invoke_of(chat, flavour, "Hi", frobnicate=1)
