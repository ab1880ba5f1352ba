"""ChatLlamaCpp's tools: streamed call fragments, parallel calls, the mixed grammar of
tool_choice="auto", and forced calls, on the real embedded model."""

from __future__ import annotations

import ctypes
import json
import math
from typing import Any

import llama_cpp
import pytest
from helpers import chunks_of, invoke_of

from lmstream.chunks import GenerationChunk
from lmstream.errors import InvalidInputError
from lmstream.messages import add_chunks
from lmstream.providers._llamacpp_tools import CallReader, TextStops, mixed_gbnf
from lmstream.providers.llamacpp_chat import ChatLlamaCpp

WEATHER = {"name": "get_weather", "description": "The current weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}  # fmt: skip
ADD = {"name": "add", "description": "Add two numbers.",
       "parameters": {"type": "object", "properties": {"a": {"type": "number"},
                      "b": {"type": "number"}}, "required": ["a", "b"]}}  # fmt: skip
TOOLS = [{"type": "function", "function": WEATHER}, {"type": "function", "function": ADD}]


@pytest.fixture(scope="module")
def chat() -> ChatLlamaCpp:
    return ChatLlamaCpp(temperature=0, seed=0, max_tokens=60)


def _fits(args: dict[str, Any], function: dict[str, Any]) -> bool:
    """``args`` hold every required parameter, each of its declared type, and no other."""
    types = {"string": str, "number": (int, float)}
    properties = function["parameters"]["properties"]
    return set(function["parameters"]["required"]) <= set(args) <= set(properties) and all(
        isinstance(v, types[properties[k]["type"]]) and not isinstance(v, bool)
        for k, v in args.items()
    )


def test_call_arguments_stream_fragment_by_fragment(chat: ChatLlamaCpp, flavour: str) -> None:
    chunks = chunks_of(
        chat, flavour, "What is the weather in Paris?", tools=TOOLS, parallel_tool_calls=False
    )
    fragments = [f for c in chunks for f in c.tool_call_chunks]
    first, *rest = fragments
    assert first["name"] == "get_weather" and first["id"].startswith("call_")
    assert first["index"] == 0 and first["args"] == ""
    assert len(rest) > 1  # the arguments arrive as the model writes them
    assert all(f["name"] is None and f["id"] is None and f["index"] == 0 for f in rest)
    assert all(not c.text for c in chunks)
    whole = add_chunks(chunks)
    (call,) = whole.tool_calls
    assert call["args"] == json.loads("".join(f["args"] for f in rest))
    assert _fits(call["args"], WEATHER)
    assert whole.response_metadata["finish_reason"] == "tool_calls"
    assert whole.invalid_tool_calls == []


def test_auto_answers_in_text_when_no_tool_fits(chat: ChatLlamaCpp, flavour: str) -> None:
    chunks = chunks_of(chat, flavour, "Who wrote Hamlet?", tools=TOOLS, tool_choice="auto")
    whole = add_chunks(chunks)
    assert whole.tool_calls == [] and whole.tool_call_chunks == []
    assert "Shakespeare" in whole.text
    assert not whole.text.startswith(("message:", "\n"))  # the form's label is not shown
    assert len([c for c in chunks if c.text]) > 5  # token by token
    assert whole.response_metadata["finish_reason"] in ("stop", "length")


def test_auto_calls_a_tool_that_fits(chat: ChatLlamaCpp, flavour: str) -> None:
    message = invoke_of(
        chat, flavour, "Add 10 and 32.", tools=TOOLS, tool_choice="auto", parallel_tool_calls=False
    )
    (call,) = message.tool_calls
    assert call["name"] == "add" and _fits(call["args"], ADD)


def _calls_of(fragments: list[Any]) -> list[list[Any]]:
    """The fragments of each call in turn, checking that no call's fragments come after
    the next call has begun."""
    calls: list[list[Any]] = []
    for fragment in fragments:
        if fragment["index"] == len(calls):
            calls.append([])
        assert fragment["index"] == len(calls) - 1, "a fragment of an earlier call came late"
        calls[-1].append(fragment)
    return calls


TWO_SUMS = "Add 10 and 32, and add 5 and 7."


def test_parallel_calls_stream_each_with_its_own_index_and_id(
    chat: ChatLlamaCpp, flavour: str
) -> None:
    kwargs: dict[str, Any] = {"tools": TOOLS, "tool_choice": "required", "max_tokens": 120}
    kwargs["parallel_tool_calls"] = True
    chunks = chunks_of(chat, flavour, TWO_SUMS, **kwargs)
    calls = _calls_of([f for c in chunks for f in c.tool_call_chunks])
    assert len(calls) >= 2
    assert len({call[0]["id"] for call in calls}) == len(calls)
    whole = add_chunks(chunks)
    assert whole.invalid_tool_calls == [] and whole.text == ""
    assert whole.response_metadata["finish_reason"] == "tool_calls"
    functions = {"add": ADD, "get_weather": WEATHER}
    for (head, *args), merged in zip(calls, whole.tool_calls, strict=True):
        assert head["name"] in functions and head["id"].startswith("call_") and head["args"] == ""
        assert args and all(f["name"] is None and f["id"] is None for f in args)
        assert merged["args"] == json.loads("".join(f["args"] for f in args))
        assert (merged["name"], merged["id"]) == (head["name"], head["id"])
        assert _fits(merged["args"], functions[head["name"]])
    message = invoke_of(chat, flavour, TWO_SUMS, **kwargs)
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        (c["name"], c["args"]) for c in whole.tool_calls
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {},  # one call unless several are asked for: a small model lists tools it was not asked for
        {"tool_choice": "required"},
        {"parallel_tool_calls": False},
        {"tool_choice": "auto", "parallel_tool_calls": False},
        {"tool_choice": "required", "parallel_tool_calls": False},
        {"tool_choice": "add"},
        {"tool_choice": {"type": "function", "function": {"name": "add"}}},
    ],
)
def test_one_call_unless_parallel_calls_are_asked_for_and_no_tool_is_named(
    chat: ChatLlamaCpp, flavour: str, kwargs: dict[str, Any]
) -> None:
    chunks = chunks_of(chat, flavour, TWO_SUMS, tools=TOOLS, max_tokens=120, **kwargs)
    assert {f["index"] for c in chunks for f in c.tool_call_chunks} == {0}
    (call,) = add_chunks(chunks).tool_calls
    assert call["name"] == "add" and _fits(call["args"], ADD)


def test_parallel_tool_calls_must_be_a_bool(chat: ChatLlamaCpp, flavour: str) -> None:
    with pytest.raises(InvalidInputError, match="parallel_tool_calls"):
        invoke_of(chat, flavour, "Hi", tools=TOOLS, parallel_tool_calls="yes")


@pytest.mark.parametrize("choice", ["get_weather", "required", "any"])
def test_a_forced_tool_is_always_called(chat: ChatLlamaCpp, flavour: str, choice: str) -> None:
    bound = chat.bind_tools([TOOLS[0]], tool_choice=choice)
    for question in ("Who wrote Hamlet?", "Hi!"):
        message = invoke_of(bound, flavour, question, max_tokens=120)
        assert message.tool_calls and message.invalid_tool_calls == []
        for call in message.tool_calls:
            assert call["name"] == "get_weather" and _fits(call["args"], WEATHER)
        assert message.text == ""


def _accepts(chat: ChatLlamaCpp, grammar: str, text: str) -> bool:
    """Whether llama.cpp's grammar sampler lets the model write ``text`` and then end."""
    vocab = chat.client._model.vocab
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    tokens = chat.client.tokenize(text.encode(), add_bos=False, special=False)
    try:
        for token in [*tokens, llama_cpp.llama_vocab_eos(vocab)]:
            data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
            candidates = llama_cpp.llama_token_data_array(data, 1, -1, False)
            llama_cpp.llama_sampler_apply(sampler, ctypes.byref(candidates))
            if math.isinf(data[0].logit):
                return False
            llama_cpp.llama_sampler_accept(sampler, token)
        return True
    finally:
        llama_cpp.llama_sampler_free(sampler)


def test_the_mixed_grammar_takes_text_or_one_call_and_nothing_else(chat: ChatLlamaCpp) -> None:
    mixed, forced = mixed_gbnf([WEATHER, ADD], True), mixed_gbnf([WEATHER, ADD], False)
    text = "message:\nHamlet was written by Shakespeare <b>himself</b>."
    call = 'functions.add: {"a": 2, "b": 3.5}'
    assert _accepts(chat, mixed, text) and _accepts(chat, mixed, call)
    assert _accepts(chat, forced, call) and not _accepts(chat, forced, text)
    for wrong in (
        "Hamlet was written by Shakespeare.",  # text without its label
        'functions.add: {"a": 2}',  # a required argument missing
        'functions.add: {"a": "2", "b": 3}',  # an argument of the wrong type
        'functions.divide: {"a": 2, "b": 3}',  # no such tool
        'functions.add: {"a": 2, "b": 3} and more',  # text after the call
        f"{call}\n{call}",  # a second call
    ):
        assert not _accepts(chat, mixed, wrong), wrong


def test_the_parallel_grammar_takes_calls_a_line_each(chat: ChatLlamaCpp) -> None:
    mixed, forced = mixed_gbnf([WEATHER, ADD], True, True), mixed_gbnf([WEATHER, ADD], False, True)
    calls = 'functions.add: {"a": 2, "b": 3.5}\nfunctions.get_weather: {"city": "Oslo"}'
    text = "message:\nIt is sunny."
    assert _accepts(chat, mixed, calls) and _accepts(chat, forced, calls)
    assert _accepts(chat, mixed, text) and not _accepts(chat, forced, text)
    for wrong in (
        calls.replace("\n", " "),  # two calls on one line
        f"{calls}\n",  # a line with no call
        f"{calls}\n{text}",  # text after the calls
        calls.replace('"Oslo"', "3"),  # the second call's arguments off its schema
    ):
        assert not _accepts(chat, mixed, wrong), wrong


def test_the_reader_hands_on_a_cut_short_answer_as_text() -> None:
    reader = CallReader()
    assert reader.feed("funct") == ("", [])
    assert reader.flush() == "funct" and not reader.called
    reader = CallReader()
    assert reader.feed("message:") == ("", []) and reader.feed("\n Hi") == ("Hi", [])
    assert reader.feed(" there") == (" there", []) and reader.flush() == ""
    reader = CallReader()
    _, (head, *args) = reader.feed('functions.add: {"a": "}{", "b"')
    assert head["name"] == "add" and [a["args"] for a in args] == ['{"a": "}{", "b"']
    _, rest = reader.feed(": [1]} trailing")
    assert [a["args"] for a in rest] == [": [1]}"] and reader.called


def test_the_reader_numbers_each_call_and_hands_on_its_fragments() -> None:
    reader = CallReader()
    text, (head, args) = reader.feed('functions.add: {"a": 1}\nfunctions.get')
    assert text == "" and head["name"] == "add" and head["index"] == 0
    assert args == {"name": None, "args": '{"a": 1}', "id": None, "index": 0,
                    "type": "tool_call_chunk"}  # fmt: skip
    assert not reader.called  # a second call has begun
    _, (second, *rest) = reader.feed('_weather: {"city": "Oslo"')
    assert second["name"] == "get_weather" and second["index"] == 1
    assert second["id"].startswith("call_") and second["id"] != head["id"]
    assert [f["args"] for f in rest] == ['{"city": "Oslo"'] and not reader.called
    _, last = reader.feed("}")
    assert [(f["index"], f["args"]) for f in last] == [(1, "}")] and reader.called
    assert reader.flush() == ""


def test_stop_sequences_cut_a_text_answer(chat: ChatLlamaCpp, flavour: str) -> None:
    kwargs: dict[str, Any] = {"tools": TOOLS, "tool_choice": "auto"}
    full = add_chunks(chunks_of(chat, flavour, "Who wrote Hamlet?", **kwargs))
    stop = full.text[6:10]
    assert len(stop) == 4 and stop not in full.text[:9]
    # "message" would cut the label the text comes after, were it not skipped
    chunks = chunks_of(chat, flavour, "Who wrote Hamlet?", stop=["message", stop], **kwargs)
    whole = add_chunks(chunks)
    assert whole.text == full.text[: full.text.index(stop)] and whole.tool_calls == []
    assert len([c for c in chunks if c.text]) > 1  # still streamed as it comes
    # the model stopped there: its own count of what it wrote, not an estimate
    assert whole.response_metadata == {**full.response_metadata, "finish_reason": "stop"}
    usage, whole_usage = full.usage_metadata, whole.usage_metadata
    assert usage is not None and whole_usage is not None
    assert whole_usage["input_tokens"] == usage["input_tokens"]
    assert 0 < whole_usage["output_tokens"] < usage["output_tokens"]
    message = invoke_of(chat, flavour, "Who wrote Hamlet?", stop=[stop], **kwargs)
    assert message.text == whole.text and message.usage_metadata == whole_usage


@pytest.mark.parametrize("choice", ["auto", "required", "get_weather"])
def test_stop_sequences_never_cut_a_call(chat: ChatLlamaCpp, flavour: str, choice: str) -> None:
    question, kwargs = "What is the weather in Paris?", {"tools": TOOLS, "tool_choice": choice}
    free = invoke_of(chat, flavour, question, **kwargs)
    assert free.tool_calls  # every stop below is in the calls' JSON
    whole = add_chunks(
        chunks_of(chat, flavour, question, stop=['"', "city", "{", ":", "\n"], **kwargs)
    )
    assert [(c["name"], c["args"]) for c in whole.tool_calls] == [
        (c["name"], c["args"]) for c in free.tool_calls
    ]
    assert whole.invalid_tool_calls == [] and whole.text == ""
    assert whole.response_metadata["finish_reason"] == "tool_calls"


def test_text_stops_skip_the_label_and_hold_back_a_possible_stop() -> None:
    stops = TextStops(["message", "or"])
    assert stops.feed(GenerationChunk("mess")) is None
    assert stops.feed(GenerationChunk("age:")) is None
    out = stops.feed(GenerationChunk("\n Hello w"))
    assert out is not None and out.text == "message:\n Hello w" and not stops.stopped
    assert stops.feed(GenerationChunk("o")) is None  # "o" may begin "or"
    out = stops.feed(GenerationChunk("rld"))
    assert out is not None and out.text == "" and stops.stopped and stops.flush() == ""
    calls = TextStops(["or", "{"])
    out = calls.feed(GenerationChunk('functions.get_weather: {"city": "Oslo, Norway"}'))
    assert out is not None and out.text == 'functions.get_weather: {"city": "Oslo, Norway"}'
    assert not calls.stopped and calls.flush() == ""
