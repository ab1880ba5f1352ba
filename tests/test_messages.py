"""Messages and message chunks: fields, coercion, and ``chunk + chunk``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmstream import (
    AIMessage,
    AIMessageChunk,
    ChatPromptValue,
    HumanMessage,
    InvalidInputError,
    StringPromptValue,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from lmstream._message_merge import parse_partial_json
from lmstream.messages import HumanMessageChunk, add_chunks

# -- fields and coercion ------------------------------------------------------------------


def test_message_fields_default_as_in_the_reference() -> None:
    chunk = AIMessageChunk("hi")
    assert chunk.content == "hi"
    assert chunk.type == "ai"
    assert chunk.tool_calls == []
    assert chunk.invalid_tool_calls == []
    assert chunk.tool_call_chunks == []
    assert chunk.usage_metadata is None
    assert chunk.response_metadata == {}
    assert chunk.additional_kwargs == {}
    assert chunk.chunk_position is None
    assert chunk.id is None


def test_response_metadata_is_a_dict_one_can_fill() -> None:
    message = AIMessage("x")
    message.response_metadata["model_name"] = "m"
    assert message.response_metadata == {"model_name": "m"}


def test_convert_accepts_every_form_langchain_accepts() -> None:
    got = convert_to_messages(
        [
            ("system", "Be brief."),
            ("human", "hi"),
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"},
            "plain",
            HumanMessage("object"),
            {"role": "tool", "content": "42", "tool_call_id": "c1"},
        ]
    )
    assert got == [
        SystemMessage("Be brief."),
        HumanMessage("hi"),
        AIMessage("hello"),
        HumanMessage("again"),
        HumanMessage("plain"),
        HumanMessage("object"),
        ToolMessage("42", tool_call_id="c1"),
    ]


def test_convert_reads_strings_and_prompt_values() -> None:
    assert convert_to_messages("hi") == [HumanMessage("hi")]
    assert convert_to_messages(StringPromptValue("hi")) == [HumanMessage("hi")]
    value = ChatPromptValue([("system", "s"), ("human", "h")])
    assert convert_to_messages(value) == [SystemMessage("s"), HumanMessage("h")]


def test_convert_reads_openai_tool_calls() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    (message,) = convert_to_messages([{"role": "assistant", "content": None, "tool_calls": [call]}])
    assert isinstance(message, AIMessage)
    assert message.tool_calls == [{"name": "f", "args": {"a": 1}, "id": "c1", "type": "tool_call"}]


@pytest.mark.parametrize(
    "bad",
    [42, [("wizard", "hi")], [{"role": "tool", "content": "x"}], [("human", 3)], [object()]],
)
def test_convert_rejects_what_is_not_a_message(bad: Any) -> None:
    with pytest.raises(InvalidInputError):
        convert_to_messages(bad)


def _usage(prompt: int, completion: int) -> Any:
    return {
        "input_tokens": prompt,
        "output_tokens": completion,
        "total_tokens": prompt + completion,
    }


# -- merging ------------------------------------------------------------------------------


def test_text_concatenates_and_metadata_keeps_the_last_scalar() -> None:
    a = AIMessageChunk("Hel", id="run-1", response_metadata={"model_name": "m"})
    b = AIMessageChunk("lo", response_metadata={"finish_reason": "stop", "model_name": "m"})
    merged = a + b
    assert merged.content == "Hello"
    assert merged.id == "run-1"
    assert merged.response_metadata == {"model_name": "m", "finish_reason": "stop"}


def test_a_provider_id_wins_over_a_generated_one() -> None:
    assert (AIMessageChunk("a", id="lc_run--1") + AIMessageChunk("b", id="chatcmpl-9")).id == (
        "chatcmpl-9"
    )


def test_reasoning_is_its_own_channel_and_never_dropped() -> None:
    chunks = [
        AIMessageChunk([{"type": "reasoning", "reasoning": "Let me "}]),
        AIMessageChunk([{"type": "reasoning", "reasoning": "think."}]),
        AIMessageChunk("The answer"),
        AIMessageChunk(" is 4."),
    ]
    merged = add_chunks(chunks)
    assert merged.reasoning == "Let me think."
    assert merged.text == "The answer is 4."
    assert merged.content == [
        {"type": "reasoning", "reasoning": "Let me think."},
        {"type": "text", "text": "The answer is 4."},
    ]
    assert [b["type"] for b in merged.content_blocks] == ["reasoning", "text"]


def test_tool_call_chunks_merge_by_index_with_partial_json_visible() -> None:
    first = AIMessageChunk(
        "", tool_call_chunks=[{"name": "weather", "args": '{"ci', "id": "c1", "index": 0}]
    )
    assert first.tool_calls == [{"name": "weather", "args": {}, "id": "c1", "type": "tool_call"}]
    second = first + AIMessageChunk("", tool_call_chunks=[{"args": 'ty": "Par', "index": 0}])
    assert second.tool_calls[0]["args"] == {"city": "Par"}
    third = second + AIMessageChunk("", tool_call_chunks=[{"args": 'is"}', "index": 0}])
    assert third.tool_calls == [
        {"name": "weather", "args": {"city": "Paris"}, "id": "c1", "type": "tool_call"}
    ]
    assert third.invalid_tool_calls == []
    assert len(third.tool_call_chunks) == 1


def test_fragments_without_an_index_still_give_one_call() -> None:
    chunks = [
        AIMessageChunk("", tool_call_chunks=[{"name": "f", "args": "", "id": "c1", "index": None}]),
        AIMessageChunk("", tool_call_chunks=[{"args": '{"x": ', "index": None}]),
        AIMessageChunk("", tool_call_chunks=[{"args": "1}", "index": None}]),
        AIMessageChunk("", tool_call_chunks=[{"name": "g", "args": "{}", "id": "c2"}]),
    ]
    merged = add_chunks(chunks)
    assert merged.tool_calls == [
        {"name": "f", "args": {"x": 1}, "id": "c1", "type": "tool_call"},
        {"name": "g", "args": {}, "id": "c2", "type": "tool_call"},
    ]
    assert merged.invalid_tool_calls == []


def test_two_fragments_with_one_index_in_one_delta_are_one_call() -> None:
    chunk = AIMessageChunk(
        "",
        tool_call_chunks=[
            {"name": "f", "args": "", "id": "c1", "index": 0},
            {"args": '{"a": true}', "index": 0},
        ],
    )
    assert chunk.tool_calls == [{"name": "f", "args": {"a": True}, "id": "c1", "type": "tool_call"}]
    assert (AIMessageChunk("") + chunk).tool_call_chunks == [
        {"name": "f", "args": '{"a": true}', "id": "c1", "index": 0, "type": "tool_call_chunk"}
    ]


def test_arguments_that_are_no_object_are_invalid_calls() -> None:
    chunk = AIMessageChunk("", tool_call_chunks=[{"name": "f", "args": "[1, 2]", "index": 0}])
    assert chunk.tool_calls == []
    assert chunk.invalid_tool_calls[0]["args"] == "[1, 2]"


def test_delta_usage_adds_up_with_details() -> None:
    a = AIMessageChunk("a", usage_metadata={"input_tokens": 5, "output_tokens": 1,
                                            "total_tokens": 6})  # fmt: skip
    b = AIMessageChunk(
        "b",
        usage_metadata={"input_tokens": 0, "output_tokens": 7, "total_tokens": 7,
                        "output_token_details": {"reasoning": 3}},
    )  # fmt: skip
    assert (a + b).usage_metadata == {
        "input_tokens": 5, "output_tokens": 8, "total_tokens": 13,
        "output_token_details": {"reasoning": 3},
    }  # fmt: skip


def test_running_totals_are_not_counted_twice() -> None:
    totals = [
        AIMessageChunk(t, usage_running_total=True, usage_metadata=_usage(4, n))
        for n, t in enumerate(["a", "b", "c"], start=1)
    ]
    merged = add_chunks(totals)
    assert merged.usage_metadata == {"input_tokens": 4, "output_tokens": 3, "total_tokens": 7}
    assert merged.content == "abc"


def test_chunks_of_different_kinds_do_not_add() -> None:
    with pytest.raises(TypeError):
        AIMessageChunk("a") + HumanMessageChunk("b")
    assert (HumanMessageChunk("a") + HumanMessageChunk("b")).content == "ab"


def test_to_message_keeps_everything() -> None:
    merged = AIMessageChunk(
        "hi", id="x", tool_call_chunks=[{"name": "f", "args": "{}", "id": "c", "index": 0}],
        usage_metadata={"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
    )  # fmt: skip
    message = merged.to_message()
    assert type(message) is AIMessage
    assert (message.content, message.id, message.usage_metadata) == (
        "hi", "x", merged.usage_metadata,
    )  # fmt: skip
    assert message.tool_calls == [{"name": "f", "args": {}, "id": "c", "type": "tool_call"}]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": "Par', {"a": "Par"}),
        ('{"a": 1, "b', {"a": 1}),
        ('{"a": [1, {"b": "x\\', {"a": [1, {"b": "x"}]}),
        ("{", {}),
        ('{"a": 1}', {"a": 1}),
        ("", None),
    ],
)
def test_partial_json_parses_as_far_as_it_goes(text: str, expected: Any) -> None:
    assert parse_partial_json(text) == expected


# -- any split of a recorded stream merges to the same message -----------------------------

_text = st.text(alphabet='ab {}"\\é😀', max_size=12)


@st.composite
def _stream(draw: st.DrawFn) -> list[AIMessageChunk]:
    chunks = []
    indexes = draw(st.sampled_from([[0, 1], [None]]))  # servers index every fragment, or none
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["text", "reasoning", "tool", "usage", "meta"]))
        if kind == "text":
            chunks.append(AIMessageChunk(draw(_text)))
        elif kind == "reasoning":
            chunks.append(AIMessageChunk([{"type": "reasoning", "reasoning": draw(_text)}]))
        elif kind == "tool":
            index = draw(st.sampled_from(indexes))
            name = draw(st.sampled_from([None, "f", "g"]))
            chunks.append(AIMessageChunk("", tool_call_chunks=[
                {"name": name, "args": draw(_text), "id": None, "index": index}]))  # fmt: skip
        elif kind == "usage":
            n = draw(st.integers(0, 9))
            total = draw(st.booleans())
            chunks.append(
                AIMessageChunk("", usage_running_total=total, usage_metadata=_usage(2, n))
            )
        else:
            ident = draw(st.sampled_from([None, "a", "lc_b"]))
            reason = draw(st.sampled_from(["stop", "length"]))
            chunks.append(AIMessageChunk("", id=ident, response_metadata={"finish_reason": reason}))
    return chunks


def _fold(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


@settings(max_examples=300, deadline=None)
@given(_stream(), st.data())
def test_any_grouping_of_a_stream_merges_to_the_same_message(
    chunks: list[AIMessageChunk], data: st.DataObject
) -> None:
    whole = _fold(chunks)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(chunks) - 1)))))
    groups = [
        chunks[a:b] for a, b in zip([0, *cuts], [*cuts, len(chunks)], strict=True) if chunks[a:b]
    ]
    regrouped = _fold([_fold(g) for g in groups])
    assert regrouped == whole
    assert add_chunks(chunks) == whole
    assert regrouped.tool_calls == whole.tool_calls


def _cut(text: str, points: list[int]) -> list[str]:
    points = sorted({p for p in points if 0 < p < len(text)})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=30),
    st.text(max_size=30),
    st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=8), max_size=4),
    st.lists(st.integers(0, 60), max_size=10),
    st.booleans(),
)
def test_any_split_of_text_reasoning_and_arguments_merges_to_the_recorded_message(
    text: str, reasoning: str, args: dict[str, Any], points: list[int], indexed: bool
) -> None:
    raw = json.dumps(args)
    chunks = [
        AIMessageChunk([{"type": "reasoning", "reasoning": p}]) for p in _cut(reasoning, points)
    ]
    chunks += [AIMessageChunk(p) for p in _cut(text, points)]
    pieces = _cut(raw, points)
    index = 0 if indexed else None
    first = {"name": "f", "args": pieces[0], "id": "c1", "index": index}
    chunks.append(AIMessageChunk("", tool_call_chunks=[first]))  # type: ignore[list-item]
    chunks += [
        AIMessageChunk("", tool_call_chunks=[{"args": p, "index": index}]) for p in pieces[1:]
    ]
    merged = add_chunks(chunks)
    assert merged.text == text
    assert merged.reasoning == reasoning
    assert merged.tool_calls == [{"name": "f", "args": args, "id": "c1", "type": "tool_call"}]


@settings(max_examples=200, deadline=None)
@given(_stream())
def test_a_chat_generation_adds_up_to_the_same_message(chunks: list[AIMessageChunk]) -> None:
    from lmstream._chat_kind import ChatGenerating
    from lmstream.config import ensure_config
    from lmstream.runs import Run

    run = Run(ensure_config(None), owner=object(), name="chat", run_type="chat_model",
              inputs={"messages": [[]]})  # fmt: skip
    gen = ChatGenerating(run, [], None)
    handed = [gen.feed(c) for c in chunks]
    assert all(a is b for a, b in zip(handed, chunks, strict=True))  # none held back
    whole = add_chunks(chunks)
    message = gen.kind.result(gen.text, gen.info, gen.kept).generations[0][0].message
    assert (message.content, message.tool_calls, message.usage_metadata) == (
        whole.content, whole.tool_calls, whole.usage_metadata,
    )  # fmt: skip
    assert all(c.id is not None for c in chunks)
