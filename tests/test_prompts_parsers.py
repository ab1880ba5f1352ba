"""PromptTemplate and StrOutputParser."""

from __future__ import annotations

import pytest
from helpers import collect, invoke_of, stream_of

from lmstream import (
    GenerationChunk,
    InvalidInputError,
    PromptTemplate,
    StringPromptValue,
    StrOutputParser,
)


def test_template_formats(flavour: str) -> None:
    prompt = PromptTemplate.from_template("Tell me about {topic} in {n} words, {{literally}}")
    assert prompt.input_variables == ["n", "topic"]  # sorted, as in the reference
    value = invoke_of(prompt, flavour, {"topic": "otters", "n": 5})
    assert value == StringPromptValue("Tell me about otters in 5 words, {literally}")


def test_a_single_variable_takes_a_bare_value(flavour: str) -> None:
    assert invoke_of(PromptTemplate.from_template("Q: {q}"), flavour, "hi").to_string() == "Q: hi"


@pytest.mark.parametrize("bad", ["{}", "{0}", "{unclosed", 3])
def test_bad_templates_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        PromptTemplate.from_template(bad)  # type: ignore[arg-type]


def test_missing_variables_are_named(flavour: str) -> None:
    with pytest.raises(InvalidInputError, match="missing variables \\['n'\\]"):
        invoke_of(PromptTemplate.from_template("{topic} {n}"), flavour, {"topic": "x"})


def test_parser_streams_text_of_any_chunk(flavour: str) -> None:
    parser = StrOutputParser()
    assert collect(stream_of(parser, flavour, GenerationChunk("g"))) == ["g"]
    assert invoke_of(parser, flavour, "s") == "s"

    class Message:
        content = "m"

    assert invoke_of(parser, flavour, Message()) == "m"
    with pytest.raises(InvalidInputError):
        invoke_of(parser, flavour, 42)
