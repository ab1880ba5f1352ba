"""Chunks add up sensibly: text concatenates, finish_reason keeps the last value, usage adds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmstream import Generation, GenerationChunk, LLMResult, Usage
from lmstream.chunks import merge_info


def test_text_and_metadata_merge_without_stopstop() -> None:
    a = GenerationChunk("he", {"finish_reason": "stop", "id": "x", "index": 3})
    b = GenerationChunk("y", {"finish_reason": "stop", "id": "x", "index": 5})
    total = a + b
    assert total.text == "hey"
    assert total.generation_info == {"finish_reason": "stop", "id": "x", "index": 5}


def test_usage_adds_and_none_never_overwrites() -> None:
    a = GenerationChunk("", {"usage": Usage.of(3, 0)})
    b = GenerationChunk("", {"usage": Usage.of(0, 7, estimated=True), "finish_reason": None})
    c = GenerationChunk("", {"finish_reason": "length"})
    info = (a + b + c).generation_info
    assert info is not None
    assert info["usage"] == Usage(3, 7, 10, True)
    assert info["finish_reason"] == "length"


def test_nested_dicts_merge_and_lists_concatenate() -> None:
    left = {"logprobs": {"tokens": ["a"], "top": [1.0]}, "model": "m"}
    right = {"logprobs": {"tokens": ["b"], "top": [0.5]}, "model": "m2"}
    assert merge_info(left, right) == {
        "logprobs": {"tokens": ["a", "b"], "top": [1.0, 0.5]},
        "model": "m2",
    }
    assert merge_info(None, None) is None and merge_info({"a": 1}, None) == {"a": 1}


def test_adding_something_else_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        GenerationChunk("a") + Generation("b")  # type: ignore[operator]


def test_reference_dump_shapes() -> None:
    result = LLMResult(generations=[[Generation("t", {"finish_reason": "stop"})]])
    assert result.to_dict() == {
        "generations": [
            [{"text": "t", "generation_info": {"finish_reason": "stop"}, "type": "Generation"}]
        ],
        "llm_output": None,
    }
    assert result.to_dict(full=True)["type"] == "LLMResult"
    assert Usage.of(2, 3).to_dict() == {
        "prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5, "estimated": False,
    }  # fmt: skip


texts = st.lists(st.text(max_size=5), min_size=1, max_size=6)


@given(texts)
def test_addition_is_associative_on_text(parts: list[str]) -> None:
    chunks = [GenerationChunk(p) for p in parts]
    left = chunks[0]
    for chunk in chunks[1:]:
        left = left + chunk
    right = chunks[-1]
    for chunk in reversed(chunks[:-1]):
        right = chunk + right
    assert left.text == right.text == "".join(parts)
