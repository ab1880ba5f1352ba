"""Grammar-constrained JSON from the embedded model: well-formed and valid every time."""

from __future__ import annotations

import json
from typing import Any

import pytest
from helpers import chunks_of, collect, invoke_of, is_sync, stream_of
from pydantic import BaseModel, Field

from lmstream import InvalidInputError, OutputParserError, PydanticOutputParser
from lmstream.providers.llamacpp import LlamaCpp
from lmstream.providers.llamacpp_chat import ChatLlamaCpp


class Pet(BaseModel):
    name: str = Field(max_length=20)
    kind: str = Field(max_length=12)
    age: int = Field(ge=0, le=30)
    tricks: list[str] = Field(max_length=3)


SCHEMA = Pet.model_json_schema()
# bounded strings and lists keep every answer well inside max_tokens
SCHEMA["properties"]["tricks"]["items"]["maxLength"] = 16
FORMAT = {"type": "json_schema", "json_schema": {"name": "pet", "schema": SCHEMA}}
PROMPTS = [
    "Invent a pet.",
    "Describe a dog that can skate.",
    "Tell me about the sea.",
    "Write a poem about rain.",
    "What is 2 + 2?",
    "Give me a JSON object for a cat called Tom.",
]


@pytest.fixture(scope="module")
def json_llm() -> LlamaCpp:
    return LlamaCpp(temperature=0.8, max_tokens=120, response_format=FORMAT)


def test_json_schema_output_matches_the_schema_for_every_prompt_and_seed(
    json_llm: LlamaCpp, flavour: str
) -> None:
    seeds = range(3) if is_sync(flavour) else range(3, 6)
    for seed in seeds:
        for prompt in PROMPTS[seed % 2 :: 2]:
            chunks = chunks_of(json_llm, flavour, prompt, seed=seed)
            text = "".join(c.text for c in chunks)
            assert chunks[-1].generation_info["finish_reason"] == "stop", text
            pet = Pet.model_validate_json(text)  # strict: the schema, every constraint
            assert list(json.loads(text)) == ["name", "kind", "age", "tricks"]
            assert pet.age <= 30


def test_json_object_mode_gives_an_object(json_llm: LlamaCpp, flavour: str) -> None:
    for seed in (0, 1):
        chunks = chunks_of(
            json_llm,
            flavour,
            "Name three colours.",
            response_format={"type": "json_object"},
            seed=seed,
        )
        assert chunks[-1].generation_info["finish_reason"] == "stop"
        assert isinstance(json.loads("".join(c.text for c in chunks)), dict)


def test_a_pydantic_class_is_a_response_format(json_llm: LlamaCpp, flavour: str) -> None:
    text = invoke_of(json_llm, flavour, "Invent a pet.", response_format=Pet, seed=4)
    Pet.model_validate_json(text)


def test_partial_objects_stream_from_the_local_model(json_llm: LlamaCpp, flavour: str) -> None:
    parts = collect(stream_of(json_llm | PydanticOutputParser(Pet), flavour, "A pet?", seed=9))
    assert isinstance(parts[-1], Pet)
    assert len(parts) > 3 and all(not isinstance(p, Pet) for p in parts[:-1])
    assert parts[-2].name is not None  # it filled in on the way


def test_a_cut_short_answer_says_length_and_fails_to_parse(
    json_llm: LlamaCpp, flavour: str
) -> None:
    chunks = chunks_of(json_llm, flavour, "Invent a pet.", seed=1, max_tokens=6)
    assert chunks[-1].generation_info["finish_reason"] == "length"
    with pytest.raises(OutputParserError, match="cut short"):
        collect(stream_of(json_llm.bind(max_tokens=6) | PydanticOutputParser(Pet), flavour, "x"))


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "xml"},
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": {"schema": "nope"}},
        "json",
    ],
)
def test_a_bad_response_format_is_a_typed_error(json_llm: LlamaCpp, flavour: str, bad: Any) -> None:
    # the text and the chat model share the setting: both refuse it per call and when made
    for model in (json_llm, ChatLlamaCpp(max_tokens=8)):
        with pytest.raises(InvalidInputError, match="response_format"):
            invoke_of(model, flavour, "hi", response_format=bad)
        with pytest.raises(InvalidInputError, match="response_format"):
            type(model)(response_format=bad)


def test_text_format_leaves_output_free(json_llm: LlamaCpp) -> None:
    text = json_llm.invoke("Say hello.", response_format={"type": "text"}, seed=3, max_tokens=8)
    assert text and not text.lstrip().startswith("{")
