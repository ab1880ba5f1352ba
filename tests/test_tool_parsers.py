"""The tool-call parsers: partial arguments per call while a chat model streams its calls,
the same final result as LangChain's parsers, and typed errors with the raw arguments."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

import pytest
from helpers import collect, events_of, invoke_of, stream_of
from pydantic import BaseModel, ConfigDict

from lmstream import (
    AIMessage,
    AIMessageChunk,
    FakeChatModel,
    JsonOutputKeyToolsParser,
    JsonOutputToolsParser,
    OutputParserError,
    Partial,
    PydanticToolsParser,
)
from lmstream._accumulate import aggregate
from lmstream._jsonstream import is_json_prefix


class Weather(BaseModel):
    city: str
    unit: Literal["celsius", "fahrenheit"] = "celsius"


class Search(BaseModel):
    model_config = ConfigDict(title="web_search")
    query: str
    limit: int


CALLS = [
    {"name": "Weather", "args": {"city": "Oslo", "unit": "fahrenheit"}, "id": "c1"},
    {"name": "web_search", "args": {"query": "fjords", "limit": 3}, "id": "c2"},
    {"name": "Weather", "args": {"city": "Bergen"}, "id": "c3"},
]
MESSAGE = AIMessage("", tool_calls=CALLS)  # type: ignore[arg-type]


def calls_prefix(partial: list[dict[str, Any]], final: list[dict[str, Any]]) -> bool:
    """Whether ``partial`` is what a stream of ``final``'s calls can show on its way: the
    calls so far, all but the last complete, the last one's arguments a JSON prefix."""
    if len(partial) > len(final) or partial[:-1] != final[: len(partial) - 1]:
        return False
    if not partial:
        return True
    last, whole = partial[-1], final[len(partial) - 1]
    same = {k: v for k, v in last.items() if k != "args"} == {
        k: v for k, v in whole.items() if k != "args"
    }
    return same and is_json_prefix(last["args"], whole["args"])


def _model(**kwargs: Any) -> FakeChatModel:
    return FakeChatModel([MESSAGE], **kwargs)


def _lc_message() -> Any:
    from langchain_core.messages import AIMessage as LCAIMessage

    return LCAIMessage("", tool_calls=CALLS)


def test_json_tools_parser_streams_each_call_as_it_fills_in(flavour: str) -> None:
    out = collect(stream_of(_model() | JsonOutputToolsParser(), flavour, "go"))
    final = [{"args": c["args"], "type": c["name"]} for c in CALLS]
    assert out[-1] == final
    assert len(out) > 20  # char by char, many snapshots
    for partial in out:
        assert calls_prefix(partial, final)
    # the calls open in order, each arguments start empty
    assert out[0] == [{"args": {}, "type": "Weather"}]


def test_results_match_langchain_core_s_parsers(flavour: str) -> None:
    from langchain_core.output_parsers import openai_tools as lc

    cases = [
        (JsonOutputToolsParser(), lc.JsonOutputToolsParser()),
        (JsonOutputToolsParser(return_id=True), lc.JsonOutputToolsParser(return_id=True)),
        (JsonOutputToolsParser(first_tool_only=True),
         lc.JsonOutputToolsParser(first_tool_only=True)),
        (JsonOutputKeyToolsParser("Weather"), lc.JsonOutputKeyToolsParser(key_name="Weather")),
        (JsonOutputKeyToolsParser("web_search", first_tool_only=True),
         lc.JsonOutputKeyToolsParser(key_name="web_search", first_tool_only=True)),
        (JsonOutputKeyToolsParser("Weather", return_id=True, first_tool_only=True),
         lc.JsonOutputKeyToolsParser(key_name="Weather", return_id=True, first_tool_only=True)),
        (PydanticToolsParser([Weather, Search]), lc.PydanticToolsParser(tools=[Weather, Search])),
        (PydanticToolsParser([Weather], first_tool_only=True),
         lc.PydanticToolsParser(tools=[Weather], first_tool_only=True)),
    ]  # fmt: skip
    for ours, theirs in cases:
        expected = theirs.invoke(_lc_message())
        assert invoke_of(_model() | ours, flavour, "go") == expected, ours
        assert aggregate(collect(stream_of(_model() | ours, flavour, "go"))) == expected, ours


def test_pydantic_tools_parser_streams_partial_models(flavour: str) -> None:
    parser = PydanticToolsParser([Weather, Search])
    out = collect(stream_of(_model(chunking="word") | parser, flavour, "go"))
    assert out[-1] == [Weather(city="Oslo", unit="fahrenheit"), Search(query="fjords", limit=3),
                       Weather(city="Bergen")]  # fmt: skip
    partial_weather, partial_search = Partial[Weather], Partial[Search]
    for snapshot in out[:-1]:
        kinds = [type(item) for item in snapshot]
        assert kinds == [partial_weather, partial_search, partial_weather][: len(kinds)]
    # an enum value still being typed never shows: the last valid partial stays
    units = [s[0].unit for s in out[:-1]]
    assert set(units) <= {None, "fahrenheit"} and "fahrenheit" in units


def test_key_parser_streams_the_arguments_of_one_tool(flavour: str) -> None:
    parser = JsonOutputKeyToolsParser("web_search", first_tool_only=True)
    out = collect(stream_of(_model() | parser, flavour, "go"))
    assert out[0] == {}
    assert out[-1] == {"query": "fjords", "limit": 3}
    assert all(is_json_prefix(p, out[-1]) for p in out)
    assert len(out) == len({repr(p) for p in out})  # a snapshot only when it changed


def until_error(stream: Any) -> tuple[list[Any], BaseException | None]:
    """The items a sync or async stream handed on, and the error it ended with."""
    got: list[Any] = []

    async def run() -> None:
        async for item in stream:
            got.append(item)

    try:
        if hasattr(stream, "__anext__"):
            asyncio.run(run())
        else:
            got.extend(stream)
    except Exception as exc:
        return got, exc
    return got, None


def _seen(stream: Any) -> list[tuple[Any, str]]:
    """Each item of a sync or async stream with its repr taken as it arrived."""
    if hasattr(stream, "__anext__"):

        async def run() -> list[tuple[Any, str]]:
            return [(item, repr(item)) async for item in stream]

        return asyncio.run(run())
    return [(item, repr(item)) for item in stream]


def test_every_partial_is_a_snapshot_that_never_changes(flavour: str) -> None:
    for parser in (JsonOutputToolsParser(), PydanticToolsParser([Weather, Search])):
        seen = _seen(stream_of(_model() | parser, flavour, "go"))
        assert len(seen) > 20
        assert [repr(item) for item, _ in seen] == [then for _, then in seen]


def test_invoke_on_a_whole_message(flavour: str) -> None:
    parser = PydanticToolsParser([Weather, Search], first_tool_only=True)
    assert invoke_of(parser, flavour, MESSAGE) == Weather(city="Oslo", unit="fahrenheit")
    assert invoke_of(JsonOutputToolsParser(), flavour, AIMessage("no calls")) == []
    assert invoke_of(JsonOutputToolsParser(first_tool_only=True), flavour, AIMessage("x")) is None


def test_calls_without_an_index_follow_their_id(flavour: str) -> None:
    fragments = [
        AIMessageChunk("", tool_call_chunks=[{"name": "Weather", "id": "a", "args": '{"ci'}]),
        AIMessageChunk("", tool_call_chunks=[{"args": 'ty": "Oslo"}'}]),
        AIMessageChunk("", tool_call_chunks=[{"name": "Weather", "id": "b", "args": "{}"}]),
        AIMessageChunk("", tool_call_chunks=[{"id": "a", "args": ""}]),
    ]  # type: ignore[list-item]
    model = FakeChatModel([fragments])
    out = collect(stream_of(model | JsonOutputToolsParser(return_id=True), flavour, "go"))
    assert out[-1] == [{"args": {"city": "Oslo"}, "id": "a", "type": "Weather"},
                       {"args": {}, "id": "b", "type": "Weather"}]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "what", "partial"),
    [
        ('{"city": "Os', "cut short", {"city": "Os"}),
        ('{"city": Oslo}', "Invalid JSON", None),
        ("[1, 2]", "not a JSON", {}),
    ],
)
def test_arguments_that_are_not_json_raise_with_the_raw_text(
    flavour: str, args: str, what: str, partial: Any
) -> None:
    chunks = [AIMessageChunk("", tool_call_chunks=[
        {"name": "Weather", "id": "c", "args": args, "index": 0}])]  # type: ignore[list-item]  # fmt: skip
    stream = stream_of(FakeChatModel([chunks]) | JsonOutputToolsParser(), flavour, "go")
    got, error = until_error(stream)
    assert isinstance(error, OutputParserError) and what in str(error)
    assert error.llm_output == args
    # what streamed before the failure reached the consumer
    assert got == ([] if partial is None else [[{"args": partial, "type": "Weather"}]])


def test_pydantic_validation_failure_raises_with_the_raw_arguments(flavour: str) -> None:
    bad = AIMessage("", tool_calls=[{"name": "Weather", "args": {"city": 3}, "id": "c"}])
    parser = PydanticToolsParser([Weather])
    with pytest.raises(OutputParserError, match="Weather") as info:
        collect(stream_of(FakeChatModel([bad]) | parser, flavour, "go"))
    assert info.value.llm_output == '{"city": 3}'
    assert info.value.errors[0]["loc"] == ("city",)


def test_an_unknown_tool_is_a_typed_error(flavour: str) -> None:
    with pytest.raises(OutputParserError, match="'Weather', which is not among"):
        invoke_of(_model() | PydanticToolsParser([Search]), flavour, "go")


def test_a_parser_reads_chat_messages_only(flavour: str) -> None:
    with pytest.raises(OutputParserError, match="chat messages"):
        invoke_of(JsonOutputToolsParser(), flavour, "plain text")


def test_events_show_the_parser_s_stream() -> None:
    chain = _model(chunking="word") | JsonOutputKeyToolsParser("Weather")
    events = events_of(chain, "go", version="v2")
    streamed = [e["data"]["chunk"] for e in events if e["event"] == "on_parser_stream"]
    assert len(streamed) > 3
    assert streamed[-1] == [{"city": "Oslo", "unit": "fahrenheit"}, {"city": "Bergen"}]
    (end,) = [e for e in events if e["event"] == "on_parser_end"]
    assert end["data"]["output"] == streamed[-1]
    names = [e["event"] for e in events]
    assert names.index("on_chat_model_stream") < names.index("on_parser_stream")
