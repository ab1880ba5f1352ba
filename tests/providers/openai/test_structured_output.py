"""ChatOpenAI's ``with_structured_output`` against the scripted server: what each method
puts on the wire (``response_format``, the forced ``tool_choice``), and the object
streaming in while the server streams its deltas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from helpers import collect, invoke_of, stream_of
from pydantic import BaseModel, Field
from servers.scripted import ScriptedServer
from servers.scripted_chat import chat_completion, chat_stream, tool_delta

from lmstream import OutputParserError, Partial
from lmstream.providers.openai_chat import ChatOpenAI

Make = Callable[..., ChatOpenAI]
ARGS = '{"title": "Fjords", "year": 1999, "tags": ["cold", "blue"]}'


class Film(BaseModel):
    """A film."""

    title: str = Field(description="its title")
    year: int
    tags: list[str]


FILM = Film(title="Fjords", year=1999, tags=["cold", "blue"])
FILM_SCHEMA = {
    "properties": {
        "title": {"description": "its title", "title": "Title", "type": "string"},
        "year": {"title": "Year", "type": "integer"},
        "tags": {"items": {"type": "string"}, "title": "Tags", "type": "array"},
    },
    "required": ["title", "year", "tags"],
    "type": "object",
}


def _pieces(text: str, size: int = 5) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def _tool_call_stream(name: str = "Film") -> Any:
    pieces = _pieces(ARGS)
    deltas = [{"tool_calls": [tool_delta(0, name, pieces[0], id="call_1")]}]
    deltas += [{"tool_calls": [tool_delta(0, None, p)]} for p in pieces[1:]]
    return chat_stream(deltas, finish_reason="tool_calls")


def test_json_schema_sends_the_response_format_and_streams_the_object(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    scripted.script(chat_stream(_pieces(ARGS)))
    structured = make_chat(model="m").with_structured_output(Film, strict=True)
    out = collect(stream_of(structured, flavour, "A film, please."))
    assert out[-1] == FILM
    assert len(out) > 5 and all(type(p) is Partial[Film] for p in out[:-1])
    body = scripted.requests[-1].body
    strict_schema = {**FILM_SCHEMA, "additionalProperties": False}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Film", "description": "A film.", "schema": strict_schema,
                        "strict": True},
    }  # fmt: skip
    assert "tools" not in body and "tool_choice" not in body and body["stream"] is True


def test_function_calling_forces_the_tool_and_streams_its_arguments(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    scripted.script(_tool_call_stream())
    structured = make_chat().with_structured_output(Film, method="function_calling")
    out = collect(stream_of(structured, flavour, "A film, please."))
    assert out[-1] == FILM
    assert len(out) > 5 and all(type(p) is Partial[Film] for p in out[:-1])
    assert out[1].title is not None and out[1].tags is None  # it fills in while streaming
    body = scripted.requests[-1].body
    assert body["tool_choice"] == {"type": "function", "function": {"name": "Film"}}
    (tool,) = body["tools"]
    assert tool == {"type": "function", "function": {
        "name": "Film", "description": "A film.", "parameters": FILM_SCHEMA}}  # fmt: skip
    assert "response_format" not in body


def test_json_mode_sends_json_object(
    scripted: ScriptedServer, make_chat: Make, flavour: str
) -> None:
    scripted.script(chat_completion(ARGS))  # invoke asks for the whole answer
    structured = make_chat().with_structured_output(method="json_mode")
    assert invoke_of(structured, flavour, "JSON with title, year and tags.") == FILM.model_dump()
    assert scripted.requests[-1].body["response_format"] == {"type": "json_object"}


def test_include_raw_over_the_wire(scripted: ScriptedServer, make_chat: Make, flavour: str) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "Film", "arguments": ARGS}}
    message = {"role": "assistant", "content": None, "tool_calls": [call]}
    scripted.script(chat_completion(message, finish_reason="tool_calls"))
    structured = make_chat().with_structured_output(
        Film, method="function_calling", include_raw=True
    )
    whole = invoke_of(structured, flavour, "A film, please.")
    assert whole["parsed"] == FILM and whole["parsing_error"] is None
    assert whole["raw"].response_metadata["finish_reason"] == "tool_calls"
    assert whole["raw"].usage_metadata["input_tokens"] == 3
    assert scripted.requests[-1].body["tool_choice"]["function"]["name"] == "Film"


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_a_server_s_invalid_object_is_a_typed_error(
    scripted: ScriptedServer, make_chat: Make, flavour: str, method: str
) -> None:
    bad = ARGS.replace("1999", '"late"')
    pieces = _pieces(bad)
    if method == "json_schema":
        scripted.script(chat_stream(pieces))
    else:
        deltas = [{"tool_calls": [tool_delta(0, "Film", pieces[0], id="call_1")]}]
        deltas += [{"tool_calls": [tool_delta(0, None, p)]} for p in pieces[1:]]
        scripted.script(chat_stream(deltas))
    structured = make_chat().with_structured_output(Film, method=method)  # type: ignore[arg-type]
    with pytest.raises(OutputParserError, match="year") as info:
        collect(stream_of(structured, flavour, "A film, please."))
    assert info.value.llm_output == bad
