"""``with_structured_output`` on chat models: the three methods, every schema form, partial
objects streaming while the model streams, ``include_raw``, and typed errors."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from helpers import collect, events_of, invoke_of, stream_of, take
from pydantic import BaseModel, Field
from test_tool_parsers import until_error
from typing_extensions import TypedDict

from lmstream import (
    AIMessage,
    AIMessageChunk,
    FakeChatModel,
    OutputParserError,
    Partial,
    UnsupportedMethodError,
)
from lmstream._accumulate import aggregate
from lmstream._jsonstream import is_json_prefix


class Sailor(BaseModel):
    """A sailor."""

    name: str = Field(description="full name")
    rank: Literal["captain", "mate", "cook"]
    ships: list[str]


class SailorDict(TypedDict):
    """A sailor."""

    name: str
    ships: list[str]


SAILOR = {"name": "Anne Bonny", "rank": "mate", "ships": ["Revenge", "Ranger"]}
TEXT = '{"name": "Anne Bonny", "rank": "mate", "ships": ["Revenge", "Ranger"]}'
JSON_SCHEMA = {
    "title": "sailor",
    "description": "A sailor.",
    "type": "object",
    "properties": {"name": {"type": "string"}, "ships": {"type": "array", "items": {}}},
    "required": ["name", "ships"],
}
TOOL = {"type": "function", "function": {"name": "sailor", "parameters": JSON_SCHEMA}}


def _call(name: str, args: dict[str, Any]) -> AIMessage:
    return AIMessage("", tool_calls=[{"name": name, "args": args, "id": "call_1"}])


def _caller(name: str = "Sailor", args: Any = SAILOR, **kwargs: Any) -> FakeChatModel:
    return FakeChatModel([_call(name, args)], **kwargs)


def _writer(text: str = TEXT, **kwargs: Any) -> FakeChatModel:
    return FakeChatModel([text], supports_response_format=True, **kwargs)


# -- the three methods ------------------------------------------------------------------------


def test_function_calling_streams_partial_models_then_the_validated_one(flavour: str) -> None:
    model = _caller(chunking="word")
    out = collect(stream_of(model.with_structured_output(Sailor, method="function_calling"),
                            flavour, "Invent a sailor."))  # fmt: skip
    assert out[-1] == Sailor(**SAILOR) and type(out[-1]) is Sailor
    partials = out[:-1]
    assert len(partials) > 3 and all(type(p) is Partial[Sailor] for p in partials)
    for partial in partials:  # each a prefix of the answer, enum values only when complete
        assert is_json_prefix(partial.model_dump(exclude_none=True), SAILOR)
    assert partials[0] == Partial[Sailor]()
    # the schema went out as the one tool, and the model was made to call it
    sent = model.last_kwargs
    assert [t["function"]["name"] for t in sent["tools"]] == ["Sailor"]
    assert sent["tools"][0]["function"]["description"] == "A sailor."
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "Sailor"}}


def test_function_calling_invokes_to_the_validated_model(flavour: str) -> None:
    structured = _caller().with_structured_output(Sailor, method="function_calling")
    assert invoke_of(structured, flavour, "Invent a sailor.") == Sailor(**SAILOR)


def test_json_schema_uses_the_response_format_and_streams_the_text(flavour: str) -> None:
    model = _writer()
    structured = model.with_structured_output(Sailor, method="json_schema")
    out = collect(stream_of(structured, flavour, "Invent a sailor."))
    assert out[-1] == Sailor(**SAILOR)
    assert len(out) > 20 and all(type(p) is Partial[Sailor] for p in out[:-1])
    fmt = model.last_kwargs["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Sailor"
    assert fmt["json_schema"]["schema"]["required"] == ["name", "rank", "ships"]
    assert "strict" not in fmt["json_schema"] and "tools" not in model.last_kwargs
    assert invoke_of(structured, flavour, "Invent a sailor.") == Sailor(**SAILOR)


def test_strict_closes_every_object_of_the_schema(flavour: str) -> None:
    class Crew(BaseModel):
        captain: Sailor
        size: int

    model = _writer('{"captain": ' + TEXT + ', "size": 3}')
    crew = invoke_of(model.with_structured_output(Crew, strict=True), flavour, "A crew.")
    assert crew.captain.rank == "mate"
    spec = model.last_kwargs["response_format"]["json_schema"]
    assert spec["strict"] is True
    assert spec["schema"]["additionalProperties"] is False
    assert spec["schema"]["$defs"]["Sailor"]["additionalProperties"] is False
    caller = FakeChatModel([_call("Crew", {"captain": SAILOR, "size": 3})])
    invoke_of(caller.with_structured_output(Crew, method="function_calling", strict=True),
              flavour, "A crew.")  # fmt: skip
    function = caller.last_kwargs["tools"][0]["function"]
    assert function["strict"] is True and function["parameters"]["additionalProperties"] is False


def test_json_mode_asks_for_a_json_object(flavour: str) -> None:
    model = _writer()
    out = collect(stream_of(model.with_structured_output(method="json_mode"), flavour, "JSON!"))
    assert out[-1] == SAILOR
    assert all(is_json_prefix(p, SAILOR) for p in out)
    assert model.last_kwargs["response_format"] == {"type": "json_object"}
    as_model = model.with_structured_output(Sailor, method="json_mode")
    assert invoke_of(as_model, flavour, "JSON!") == Sailor(**SAILOR)


def test_the_default_method_is_the_model_s_best(flavour: str) -> None:
    writer = _writer()
    invoke_of(writer.with_structured_output(Sailor), flavour, "hi")
    assert "response_format" in writer.last_kwargs
    caller = _caller()
    invoke_of(caller.with_structured_output(Sailor), flavour, "hi")
    assert caller.last_kwargs["tool_choice"]["function"]["name"] == "Sailor"


# -- schema forms -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "name"),
    [(SailorDict, "SailorDict"), (JSON_SCHEMA, "sailor"), (TOOL, "sailor")],
    ids=["typeddict", "json-schema", "openai-tool"],
)
def test_dict_schemas_stream_partial_dicts_then_the_dict(
    flavour: str, schema: Any, name: str
) -> None:
    answer = {"name": "Anne Bonny", "ships": ["Revenge", "Ranger"]}
    caller = _caller(name, answer, chunking="word")
    out = collect(stream_of(caller.with_structured_output(schema, method="function_calling"),
                            flavour, "hi"))  # fmt: skip
    assert out[-1] == answer and len(out) > 3
    assert all(type(p) is not list and is_json_prefix(p, answer) for p in out)
    assert caller.last_kwargs["tools"][0]["function"]["name"] == name
    assert caller.last_kwargs["tools"][0]["function"]["parameters"]["required"] == [
        "name", "ships"]  # fmt: skip
    writer = _writer('{"name": "Anne Bonny", "ships": ["Revenge", "Ranger"]}')
    structured = writer.with_structured_output(schema, method="json_schema")
    assert collect(stream_of(structured, flavour, "hi"))[-1] == answer
    assert writer.last_kwargs["response_format"]["json_schema"]["name"] == name


def test_a_response_format_dict_is_passed_as_it_is(flavour: str) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "s", "schema": JSON_SCHEMA}}
    writer = _writer('{"name": "A", "ships": []}')
    assert invoke_of(writer.with_structured_output(fmt), flavour, "hi") == {
        "name": "A",
        "ships": [],
    }
    assert writer.last_kwargs["response_format"] == fmt


# -- include_raw ------------------------------------------------------------------------------


def test_include_raw_gives_raw_parsed_and_parsing_error(flavour: str) -> None:
    structured = _caller().with_structured_output(
        Sailor, method="function_calling", include_raw=True
    )
    whole = invoke_of(structured, flavour, "hi")
    assert set(whole) == {"raw", "parsed", "parsing_error"}
    assert type(whole["raw"]) is AIMessage and whole["raw"].tool_calls[0]["args"] == SAILOR
    assert whole["parsed"] == Sailor(**SAILOR) and whole["parsing_error"] is None


def test_include_raw_streams_the_raw_chunks_next_to_each_partial(flavour: str) -> None:
    structured = _writer(chunking="word").with_structured_output(Sailor, include_raw=True)
    out = collect(stream_of(structured, flavour, "hi"))
    raws = [c["raw"] for c in out if "raw" in c]
    assert all(type(r) is AIMessageChunk for r in raws)
    assert "".join(r.text for r in raws) == TEXT
    parsed = [c["parsed"] for c in out if "parsed" in c]
    assert [type(p) for p in parsed[:-1]] == [Partial[Sailor]] * (len(parsed) - 1)
    assert len(parsed) > 3 and parsed[-1] == Sailor(**SAILOR)
    assert all("parsed" in c for c in out[:3])  # partials arrive with the chunks they came from
    total = aggregate(out)  # the pieces add up to what invoke gives
    assert set(total) == {"raw", "parsed", "parsing_error"}
    assert total["raw"].text == TEXT and total["parsed"] == Sailor(**SAILOR)
    assert total["parsing_error"] is None


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_include_raw_keeps_a_parsing_failure(flavour: str, method: str) -> None:
    bad = {**SAILOR, "rank": "admiral"}
    model = _writer(str(bad).replace("'", '"')) if method == "json_schema" else _caller(args=bad)
    structured = model.with_structured_output(Sailor, method=method, include_raw=True)
    whole = invoke_of(structured, flavour, "hi")
    assert whole["parsed"] is None
    error = whole["parsing_error"]
    assert isinstance(error, OutputParserError) and '"admiral"' in error.llm_output
    out = collect(stream_of(structured, flavour, "hi"))
    assert out[-1]["parsed"] is None and isinstance(out[-1]["parsing_error"], OutputParserError)
    total = aggregate(out)
    assert total["parsed"] is None and total["raw"] is not None


def test_leaving_the_stream_early_stops_the_model(flavour: str) -> None:
    for include_raw in (False, True):
        model = _caller()
        structured = model.with_structured_output(Sailor, include_raw=include_raw)
        total = len(collect(stream_of(structured, flavour, "hi")))
        produced = model.chunks_produced
        assert len(take(stream_of(structured, flavour, "hi"), 3)) == 3
        assert model.chunks_produced - produced < produced / 2 and total > 10


# -- failures ---------------------------------------------------------------------------------


def test_invalid_output_is_a_typed_error_carrying_the_raw_text(flavour: str) -> None:
    text = '{"name": "Anne Bonny", "rank": "admiral", "ships": []}'
    stream = stream_of(_writer(text).with_structured_output(Sailor), flavour, "hi")
    got, error = until_error(stream)
    assert isinstance(error, OutputParserError)
    assert error.llm_output == text and error.errors[0]["loc"] == ("rank",)
    assert got and got[-1] == Partial[Sailor](name="Anne Bonny")  # what came before it stays
    with pytest.raises(OutputParserError, match="Sailor") as info:
        invoke_of(_caller(args={"name": 3}).with_structured_output(Sailor), flavour, "hi")
    assert info.value.llm_output == '{"name": 3}'


def test_a_model_that_calls_no_tool_is_a_typed_error(flavour: str) -> None:
    model = FakeChatModel(["I would rather not."])
    structured = model.with_structured_output(Sailor, method="function_calling")
    with pytest.raises(OutputParserError, match="called no tool") as info:
        invoke_of(structured, flavour, "hi")
    assert info.value.llm_output == "I would rather not."
    _, error = until_error(stream_of(structured, flavour, "hi"))
    assert isinstance(error, OutputParserError)
    assert error.llm_output == "I would rather not."


def test_a_model_without_the_capability_names_the_method_to_use() -> None:
    with pytest.raises(UnsupportedMethodError, match="method='function_calling'") as info:
        FakeChatModel(["x"]).with_structured_output(Sailor, method="json_schema")
    assert info.value.method == "json_schema" and info.value.instead == "function_calling"
    assert isinstance(info.value, NotImplementedError)

    class NoTools(FakeChatModel):
        supports_tool_calling = False

    with pytest.raises(UnsupportedMethodError, match="method='json_schema'"):
        NoTools(["x"], supports_response_format=True).with_structured_output(
            Sailor, method="function_calling"
        )
    with pytest.raises(UnsupportedMethodError, match="json_mode"):
        NoTools(["x"]).with_structured_output(Sailor, method="json_mode")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"schema": Sailor, "method": "xml"}, "method must be one of"),
        ({"method": "function_calling"}, "needs a schema"),
        ({"schema": Sailor, "tools": []}, "takes no"),
        ({"schema": {"type": "object"}, "method": "function_calling"}, "title"),
    ],
)
def test_bad_arguments_are_typed_errors(kwargs: dict[str, Any], match: str) -> None:
    from lmstream import InvalidInputError

    with pytest.raises(InvalidInputError, match=match):
        _caller().with_structured_output(**kwargs)


# -- events -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_events_show_the_model_s_and_the_parser_s_streams(method: str) -> None:
    model = _writer(chunking="word") if method == "json_schema" else _caller(chunking="word")
    structured = model.with_structured_output(Sailor, method=method)
    events = events_of(structured, "hi", version="v2")
    kinds = [e["event"] for e in events]
    assert kinds[0] == "on_chain_start" and kinds[-1] == "on_chain_end"
    assert "on_chat_model_stream" in kinds
    streamed = [e["data"]["chunk"] for e in events if e["event"] == "on_parser_stream"]
    assert len(streamed) > 3 and streamed[-1] == Sailor(**SAILOR)
    assert all(type(p) is Partial[Sailor] for p in streamed[:-1])
    # a partial is handed on while the model is still streaming
    first_partial = kinds.index("on_parser_stream")
    assert first_partial < kinds.index("on_chat_model_end")
    assert events[-1]["data"]["output"] == Sailor(**SAILOR)


def test_events_of_include_raw_end_with_the_whole_dict() -> None:
    structured = _caller(chunking="word").with_structured_output(Sailor, include_raw=True)
    events = events_of(structured, "hi", version="v2")
    output = events[-1]["data"]["output"]
    assert output["parsed"] == Sailor(**SAILOR) and output["parsing_error"] is None
    assert output["raw"].tool_calls[0]["args"] == SAILOR


@pytest.mark.parametrize("schema", [Sailor, SailorDict], ids=["pydantic", "typeddict"])
def test_results_match_langchain_core_s_with_structured_output(flavour: str, schema: Any) -> None:
    from langchain_core.language_models import BaseChatModel as LCChat
    from langchain_core.messages import AIMessage as LCAIMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    name = schema.__name__
    args = SAILOR if schema is Sailor else {"name": "Anne Bonny", "ships": ["Revenge"]}

    class Theirs(LCChat):
        @property
        def _llm_type(self) -> str:
            return "scripted"

        def bind_tools(self, tools: Any, tool_choice: Any = None, **kwargs: Any) -> Any:
            return self.bind(tools=tools, tool_choice=tool_choice, **kwargs)

        def _generate(self, messages: Any, stop: Any = None, run_manager: Any = None,
                      **kwargs: Any) -> ChatResult:  # fmt: skip
            message = LCAIMessage("", tool_calls=[{"name": name, "args": args, "id": "call_1"}])
            return ChatResult(generations=[ChatGeneration(message=message)])

    expected = Theirs().with_structured_output(schema, include_raw=True).invoke("hi")
    structured = _caller(name, args).with_structured_output(schema, include_raw=True)
    got = invoke_of(structured, flavour, "hi")
    assert set(got) == set(expected)
    assert got["parsed"] == expected["parsed"] and type(got["parsed"]) is type(expected["parsed"])
    assert got["parsing_error"] is expected["parsing_error"] is None
    assert got["raw"].tool_calls == expected["raw"].tool_calls
