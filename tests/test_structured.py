"""JSON, pydantic and reasoning parsers: streaming partials through chains, both flavours."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any, Literal

import pytest
from helpers import collect, invoke_of, stream_of
from pydantic import BaseModel

from lmstream import (
    FakeLLM,
    GenerationChunk,
    JsonOutputParser,
    OutputParserError,
    Partial,
    PromptTemplate,
    PydanticOutputParser,
    ReasoningParser,
)
from lmstream._jsonstream import is_json_prefix

DOC = {"name": "Ada", "langs": ["en", "fr"], "born": 1815, "meta": {"ok": True, "note": None}}
TEXT = json.dumps(DOC)


class Address(BaseModel):
    city: str
    zip: str


class Person(BaseModel):
    name: str
    age: int
    mood: Literal["calm", "cross"]
    addresses: list[Address]


PERSON = {
    "name": "Grace Hopper",
    "age": 85,
    "mood": "calm",
    "addresses": [{"city": "Arlington", "zip": "22201"}, {"city": "New York", "zip": "10001"}],
}


def chain(parser: Any, text: str = TEXT, **fake: Any) -> Any:
    return PromptTemplate.from_template("{q}") | FakeLLM([text], **fake) | parser


def apply_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    for op in ops:
        assert op["op"] in ("add", "replace")
        if op["path"] == "":
            doc = json.loads(json.dumps(op["value"]))
            continue
        *parents, last = [
            p.replace("~1", "/").replace("~0", "~") for p in op["path"][1:].split("/")
        ]
        target = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        value = json.loads(json.dumps(op["value"]))
        if isinstance(target, list) and op["op"] == "add":
            target.insert(int(last), value)
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return doc


def test_json_partials_fill_in_through_a_chain(flavour: str) -> None:
    parts = collect(stream_of(chain(JsonOutputParser()), flavour, {"q": "go"}))
    assert len(parts) > 10  # one per change: the object fills in, it does not arrive at once
    assert parts[-1] == DOC
    assert parts[0] == {}
    assert all(is_json_prefix(p, DOC) for p in parts)
    assert all(a != b for a, b in itertools.pairwise(parts))
    assert {"name": "A"} in parts  # an open string shows as far as it goes


def test_json_partials_are_snapshots_that_never_change_later(flavour: str) -> None:
    parts = collect(stream_of(chain(JsonOutputParser()), flavour, {"q": "go"}))
    frozen = [json.dumps(p) for p in parts]
    assert len(set(frozen)) == len(parts)
    assert [json.loads(f) for f in frozen] == parts


def test_json_invoke_matches_the_stream(flavour: str) -> None:
    assert invoke_of(chain(JsonOutputParser()), flavour, {"q": "go"}) == DOC
    whole = invoke_of(chain(JsonOutputParser(diff=True)), flavour, {"q": "go"})
    assert whole == [{"op": "replace", "path": "", "value": DOC}]


def test_json_diff_ops_rebuild_every_partial(flavour: str) -> None:
    patches = collect(stream_of(chain(JsonOutputParser(diff=True)), flavour, {"q": "go"}))
    partials = collect(stream_of(chain(JsonOutputParser()), flavour, {"q": "go"}))
    doc: Any = None
    rebuilt = []
    for ops in patches:
        doc = apply_patch(doc, ops)
        rebuilt.append(json.loads(json.dumps(doc)))
    assert rebuilt == partials
    assert patches[0] == [{"op": "replace", "path": "", "value": {}}]
    ops = [op for ops in patches for op in ops]
    assert {"op": "add", "path": "/langs/1", "value": ""} in ops
    assert {"op": "replace", "path": "/langs/1", "value": "f"} in ops


def test_json_parser_reads_a_code_fence_and_chunks_of_any_kind(flavour: str) -> None:
    fenced = "```json\n" + TEXT + "\n```"
    pieces = [GenerationChunk(fenced[i : i + 3]) for i in range(0, len(fenced), 3)]
    parser = JsonOutputParser()
    source = iter(pieces) if flavour == "sync" else _aiter(pieces)
    out = collect(parser.transform(source) if flavour == "sync" else parser.atransform(source))
    assert out[-1] == DOC
    assert parser.parse(fenced) == DOC


async def _aiter(items: list[Any]) -> Any:
    for item in items:
        yield item


@pytest.mark.parametrize(
    "text", ['{"a": 1,}', '{"a": [1, 2}', "Sure! {}", '{"a": "cut', "", '{"a": 1} and more']
)
def test_bad_json_is_a_typed_error_with_the_raw_text(flavour: str, text: str) -> None:
    with pytest.raises(OutputParserError) as info:
        collect(stream_of(chain(JsonOutputParser(), text), flavour, {"q": "go"}))
    assert text.startswith(info.value.llm_output)  # the text read when the error showed
    with pytest.raises(OutputParserError):
        invoke_of(JsonOutputParser(), flavour, text)


def test_cut_short_by_max_tokens_keeps_the_partials_then_fails(flavour: str) -> None:
    seen: list[Any] = []
    cut = PromptTemplate.from_template("{q}") | FakeLLM([TEXT]).bind(max_tokens=20)
    with pytest.raises(OutputParserError, match="cut short") as info:
        seen.extend(collect_lazily(cut | JsonOutputParser(), flavour, {"q": "go"}))
    assert seen and is_json_prefix(seen[-1], DOC)
    assert info.value.llm_output == TEXT[:20]


def collect_lazily(runnable: Any, flavour: str, *args: Any, **kwargs: Any) -> Any:
    if flavour == "sync":
        yield from runnable.stream(*args, **kwargs)
        return
    agen = runnable.astream(*args, **kwargs)
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.close()


def test_pydantic_partials_are_valid_partial_models(flavour: str) -> None:
    text = json.dumps(PERSON)
    parts = collect(stream_of(chain(PydanticOutputParser(Person), text), flavour, {"q": "go"}))
    final = parts[-1]
    assert type(final) is Person and final == Person.model_validate(PERSON)
    partial_cls = Partial[Person]
    assert all(type(p) is partial_cls for p in parts[:-1])
    assert len(parts) > 10
    assert any(p.addresses and p.addresses[0].zip is None for p in parts[:-1])
    assert all(p.mood in (None, "calm") for p in parts[:-1])  # never a half-typed enum value
    for part in parts[:-1]:
        assert is_json_prefix(part.model_dump(exclude_unset=True), PERSON)


def test_pydantic_invalid_output_is_a_typed_error(flavour: str) -> None:
    bad = json.dumps({**PERSON, "age": "old"})
    with pytest.raises(OutputParserError) as info:
        collect(stream_of(chain(PydanticOutputParser(Person), bad), flavour, {"q": "go"}))
    assert info.value.llm_output == bad
    assert info.value.errors[0]["loc"] == ("age",)
    with pytest.raises(OutputParserError):
        invoke_of(PydanticOutputParser(Person), flavour, bad)
    assert invoke_of(PydanticOutputParser(Person), flavour, json.dumps(PERSON)).age == 85


def test_format_instructions_carry_the_schema() -> None:
    text = PydanticOutputParser(Person).get_format_instructions()
    schema = json.loads(text.split("```\n")[1].split("\n```")[0])
    assert schema["required"] == ["name", "age", "mood", "addresses"]
    assert "title" not in schema
    assert JsonOutputParser().get_format_instructions() == "Return a JSON object."


def test_events_carry_partials_and_the_final_value(flavour: str) -> None:
    runnable = chain(JsonOutputParser())
    if flavour == "sync":
        events = collect(runnable.astream_events({"q": "go"}, version="v2"))
    else:
        events = asyncio.run(_events(runnable))
    streams = [e["data"]["chunk"] for e in events if e["event"] == "on_parser_stream"]
    ends = [e for e in events if e["event"] == "on_parser_end"]
    assert streams[-1] == DOC and len(streams) > 10
    assert ends[0]["data"]["output"] == DOC
    chain_end = [e for e in events if e["event"] == "on_chain_end"][-1]
    assert chain_end["data"]["output"] == DOC


async def _events(runnable: Any) -> list[Any]:
    return [e async for e in runnable.astream_events({"q": "go"}, version="v1")]


THINKING = "<think>The user wants JSON.\nKeep it short.</think>\n\n" + TEXT


def test_reasoning_goes_to_its_own_channel(flavour: str) -> None:
    parts = collect(stream_of(chain(ReasoningParser(), THINKING), flavour, {"q": "go"}))
    assert all(set(p) <= {"reasoning", "content"} for p in parts)
    assert "".join(p.get("reasoning", "") for p in parts) == "The user wants JSON.\nKeep it short."
    assert "".join(p.get("content", "") for p in parts) == TEXT
    whole = invoke_of(chain(ReasoningParser(), THINKING), flavour, {"q": "go"})
    assert whole == {"reasoning": "The user wants JSON.\nKeep it short.", "content": TEXT}


def test_reasoning_then_json(flavour: str) -> None:
    runnable = chain(ReasoningParser() | JsonOutputParser(), THINKING)
    parts = collect(stream_of(runnable, flavour, {"q": "go"}))
    assert parts[-1] == DOC and len(parts) > 10


def test_reasoning_tags_are_configurable(flavour: str) -> None:
    text = "[r]hmm[/r]answer <think>stays</think>"
    parser = ReasoningParser("[r]", "[/r]")
    assert invoke_of(chain(parser, text), flavour, {"q": "go"}) == {
        "reasoning": "hmm",
        "content": "answer <think>stays</think>",
    }
    lead = ReasoningParser(leading_only=True)
    assert invoke_of(lead, flavour, "a <think>b</think>") == {
        "reasoning": "",
        "content": "a <think>b</think>",
    }


def test_chat_message_chunks_stream_through_the_parsers(flavour: str) -> None:
    from lmstream import AIMessage, FakeChatModel

    reply = AIMessage(
        [{"type": "reasoning", "reasoning": "think {not json"}, {"type": "text", "text": TEXT}]
    )
    parts = collect(stream_of(FakeChatModel([reply]) | JsonOutputParser(), flavour, "go"))
    assert parts[-1] == DOC and len(parts) > 10  # the reasoning channel is not parsed
    person = json.dumps(PERSON)
    typed = collect(
        stream_of(FakeChatModel([person]) | PydanticOutputParser(Person), flavour, "go")
    )
    assert typed[-1] == Person.model_validate(PERSON)
    split = invoke_of(FakeChatModel([THINKING]) | ReasoningParser(), flavour, "go")
    assert split == {"reasoning": "The user wants JSON.\nKeep it short.", "content": TEXT}
