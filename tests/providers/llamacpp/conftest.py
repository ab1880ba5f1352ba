"""Fixtures for the LlamaCpp tests: the real embedded model, deterministic settings.

Test modules here cannot import this file by name, so its helpers are fixtures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lmstream.chunks import GenerationChunk
from lmstream.providers.llamacpp import LlamaCpp


@pytest.fixture(scope="session")
def llm() -> LlamaCpp:
    """The embedded model at temperature 0 with a fixed seed and a short default length."""
    return LlamaCpp(temperature=0, seed=7, max_tokens=12)


@pytest.fixture
def prompt() -> str:
    """The documented prompt."""
    return "Write me a 1 verse song about sparkling water."


@pytest.fixture
def long_prompt() -> str:
    """A prompt whose answer runs far past any max_tokens the tests use."""
    return "Write a long story about a lighthouse keeper who finds a message in a bottle."


def _info_of(chunks: list[GenerationChunk]) -> dict[str, Any]:
    assert chunks, "the stream was empty"
    assert all(c.generation_info is None for c in chunks[:-1])
    info = chunks[-1].generation_info
    assert info is not None
    return info


@pytest.fixture
def info_of() -> Callable[[list[GenerationChunk]], dict[str, Any]]:
    """The metadata of a stream's last chunk, checking that no earlier chunk has any."""
    return _info_of


def _chat_tokens(llm: LlamaCpp, prompt: str) -> int:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    client = llm.client
    text_of = client._model.token_get_text
    template = Jinja2ChatFormatter(
        client.metadata["tokenizer.chat_template"],
        eos_token=text_of(client.token_eos()),
        bos_token=text_of(client.token_bos()),
    )
    text = template(messages=[{"role": "user", "content": prompt}]).prompt
    return len(client.tokenize(text.encode(), add_bos=False, special=True))


@pytest.fixture
def chat_tokens() -> Callable[[LlamaCpp, str], int]:
    """Tokens of a prompt sent as one user turn of the GGUF's chat template, counted with
    llama-cpp-python's own template formatter rather than the provider's code."""
    return _chat_tokens
