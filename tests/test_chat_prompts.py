"""Chat prompt templates, and the string parser over message chunks."""

from __future__ import annotations

import pytest
from helpers import collect, invoke_of, is_sync

from lmstream import (
    AIMessage,
    AIMessageChunk,
    ChatPromptTemplate,
    ChatPromptValue,
    HumanMessage,
    InvalidInputError,
    MessagesPlaceholder,
    RunnableGenerator,
    StrOutputParser,
    SystemMessage,
)


def _prompt() -> ChatPromptTemplate:
    return ChatPromptTemplate.from_messages(
        [
            ("system", "You are {persona}."),
            MessagesPlaceholder("history"),
            ("human", "Tell me about {topic}"),
        ]
    )


def test_variables_fill_any_message_and_placeholders_take_lists(flavour: str) -> None:
    value = invoke_of(
        _prompt(),
        flavour,
        {
            "persona": "a pirate",
            "topic": "otters",
            "history": [("human", "hi"), AIMessage("ahoy")],
        },
    )
    assert isinstance(value, ChatPromptValue)
    assert value.to_messages() == [
        SystemMessage("You are a pirate."),
        HumanMessage("hi"),
        AIMessage("ahoy"),
        HumanMessage("Tell me about otters"),
    ]
    assert value.to_string().splitlines()[-1] == "Human: Tell me about otters"


def test_input_variables_and_partial() -> None:
    prompt = _prompt()
    assert prompt.input_variables == ["persona", "history", "topic"]
    calls = []
    partial = prompt.partial(persona=lambda: calls.append(1) or "a poet")
    assert partial.input_variables == ["history", "topic"]
    messages = partial.format_messages(history=[], topic="tea")
    assert messages[0] == SystemMessage("You are a poet.")
    assert calls == [1]
    assert prompt.input_variables == ["persona", "history", "topic"]  # the original is unchanged


def test_optional_placeholder_and_placeholder_tuple() -> None:
    prompt = ChatPromptTemplate.from_messages([("placeholder", "{history}"), ("human", "{q}")])
    assert prompt.input_variables == ["q"]
    assert prompt.invoke("why?").to_messages() == [HumanMessage("why?")]


@pytest.mark.parametrize(
    ("messages", "values"),
    [
        ([("human", "{a}")], {}),
        ([MessagesPlaceholder("h")], {}),
        ([("wizard", "{a}")], {"a": 1}),
        ([42], {}),
    ],
)
def test_bad_templates_and_inputs_raise_typed_errors(messages: list, values: dict) -> None:
    with pytest.raises(InvalidInputError):
        ChatPromptTemplate.from_messages(messages).invoke(values)


def test_str_parser_streams_message_text_without_reasoning(flavour: str) -> None:
    def source(_: object):  # type: ignore[no-untyped-def]
        yield AIMessageChunk([{"type": "reasoning", "reasoning": "hmm"}])
        yield AIMessageChunk("Hel")
        yield AIMessageChunk("lo")

    async def asource(_: object):  # type: ignore[no-untyped-def]
        for chunk in source(None):
            yield chunk

    chain = RunnableGenerator(source, asource) | StrOutputParser()
    stream = chain.stream(None) if is_sync(flavour) else chain.astream(None)
    assert collect(stream) == ["", "Hel", "lo"]
    assert invoke_of(StrOutputParser(), flavour, AIMessage("Hi")) == "Hi"
