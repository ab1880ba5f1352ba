"""FakeLLM: the scripted model the rest of the suite relies on."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import chunks_of, collect, invoke_of, stream_of

from lmstream import FakeLLM, InvalidInputError, ProviderError


@pytest.mark.parametrize(
    ("chunking", "expected"),
    [("char", ["a", " ", "b", "c"]), ("word", ["a ", "bc"]), ("none", ["a bc"])],
)
def test_chunking(chunking: str, expected: list[str], flavour: str) -> None:
    assert collect(stream_of(FakeLLM(["a bc"], chunking=chunking), flavour, "p")) == expected


def test_explicit_chunks_and_cycling(flavour: str) -> None:
    llm = FakeLLM([["he", "llo"], "x"])
    assert collect(stream_of(llm, flavour, "p")) == ["he", "llo"]
    assert invoke_of(llm, flavour, "p") == "x"
    assert invoke_of(llm, flavour, "p") == "hello"
    assert llm.calls == 3


def test_counts_tokens_produced(flavour: str) -> None:
    llm = FakeLLM(["abc"])
    collect(stream_of(llm, flavour, "p"))
    invoke_of(llm, flavour, "p")
    assert llm.tokens_produced == 6


def test_error_after_k_tokens(flavour: str) -> None:
    llm = FakeLLM(["abcdef"], error_after=4)
    with pytest.raises(ProviderError) as info:
        collect(stream_of(llm, flavour, "p"))
    assert info.value.partial_text == "abcd"
    assert llm.tokens_produced == 4
    custom = FakeLLM(["abc"], error_after=0, error=TimeoutError)
    with pytest.raises(ProviderError) as info:
        invoke_of(custom, flavour, "p")
    assert isinstance(info.value.__cause__, TimeoutError)


def test_streaming_can_be_switched_off(flavour: str) -> None:
    llm = FakeLLM(["abc"], streaming=False)
    assert not llm.can_stream
    assert collect(stream_of(llm, flavour, "p")) == ["abc"]


def test_delay_uses_the_right_sleep(flavour: str) -> None:
    chunks = chunks_of(FakeLLM(["ab"], delay=0.001), flavour, "p")
    assert [c.text for c in chunks] == ["a", "b"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"responses": []},
        {"responses": "abc"},
        {"chunking": "bytes"},
        {"delay": -1},
        {"error_after": -2},
    ],
)
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        FakeLLM(**kwargs)
