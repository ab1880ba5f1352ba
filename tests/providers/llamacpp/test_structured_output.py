"""``with_structured_output`` on the embedded chat model: the schema becomes a llama.cpp
grammar (through ``response_format`` or the forced tool), so even SmolLM2-135M gives an
object that validates, streamed as it fills in."""

from __future__ import annotations

import pytest
from helpers import collect, invoke_of, stream_of
from pydantic import BaseModel, Field

from lmstream import Partial
from lmstream.providers.llamacpp_chat import ChatLlamaCpp


class Pet(BaseModel):
    """A pet."""

    name: str = Field(max_length=16)
    age: int = Field(ge=0, le=30)


@pytest.fixture(scope="module")
def chat() -> ChatLlamaCpp:
    return ChatLlamaCpp(temperature=0.8, seed=3, max_tokens=80)


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_the_embedded_model_streams_a_valid_object(
    chat: ChatLlamaCpp, flavour: str, method: str
) -> None:
    structured = chat.with_structured_output(Pet, method=method)  # type: ignore[arg-type]
    out = collect(stream_of(structured, flavour, "Invent a pet. Answer in JSON."))
    assert type(out[-1]) is Pet
    assert len(out[-1].name) <= 16 and 0 <= out[-1].age <= 30
    assert all(type(p) is Partial[Pet] for p in out[:-1])
    for partial in out[:-1]:  # each snapshot a prefix of the answer
        if partial.name is not None:
            assert out[-1].name.startswith(partial.name)
        assert partial.age in (None, out[-1].age)
    if method == "json_schema":  # the text streams token by token
        assert len(out) > 3


@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_the_embedded_model_invokes_to_a_valid_object_over_seeds(flavour: str, method: str) -> None:
    for seed in (1, 2):
        chat = ChatLlamaCpp(temperature=0.8, seed=seed, max_tokens=80)
        structured = chat.with_structured_output(Pet, method=method, include_raw=True)  # type: ignore[arg-type]
        whole = invoke_of(structured, flavour, "Name a pet and its age.")
        assert whole["parsing_error"] is None, whole["raw"]
        assert type(whole["parsed"]) is Pet
