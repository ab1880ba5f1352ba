"""A message list given to the local model is rendered through the GGUF's chat template as
real turns, the way llama-cpp-python's own chat completion renders it."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import chunks_of, invoke_of

from lmstream import ChatPromptValue
from lmstream.prompts import chat_messages, messages_to_string
from lmstream.providers.llamacpp import LlamaCpp

MESSAGES = [
    ("system", "You are a pirate. Always answer like a pirate."),
    ("human", "What is your name?"),
    ("ai", "Captain Flint, matey."),
    ("human", "And your ship?"),
]
TURNS = [
    {"role": "system", "content": MESSAGES[0][1]},
    {"role": "user", "content": MESSAGES[1][1]},
    {"role": "assistant", "content": MESSAGES[2][1]},
    {"role": "user", "content": MESSAGES[3][1]},
]


def _reference(llm: LlamaCpp, max_tokens: int) -> dict[str, Any]:
    return llm.client.create_chat_completion(  # type: ignore[return-value]
        TURNS, max_tokens=max_tokens, temperature=0.0, top_p=llm.top_p, top_k=llm.top_k,
        repeat_penalty=llm.repeat_penalty,
    )  # fmt: skip


@pytest.mark.parametrize("given", [MESSAGES, ChatPromptValue(MESSAGES), TURNS])
def test_messages_are_sent_as_turns(llm: LlamaCpp, flavour: str, given: Any) -> None:
    reference = _reference(llm, 16)
    chunks = chunks_of(llm, flavour, given, max_tokens=16)
    assert "".join(c.text for c in chunks) == reference["choices"][0]["message"]["content"]
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens == reference["usage"]["prompt_tokens"]
    assert invoke_of(llm, flavour, given, max_tokens=16) == "".join(c.text for c in chunks)


def test_without_chat_the_flattened_text_is_sent_raw(flavour: str) -> None:
    raw = LlamaCpp(temperature=0, seed=7, max_tokens=8, chat=False)
    flat = messages_to_string(MESSAGES)
    assert invoke_of(raw, flavour, MESSAGES) == invoke_of(raw, flavour, flat)


def test_message_roles_are_the_ones_templates_know() -> None:
    assert chat_messages(MESSAGES) == TURNS
    assert chat_messages(ChatPromptValue([("developer", "x")])) == [
        {"role": "system", "content": "x"}
    ]
    assert chat_messages("a string") is None
