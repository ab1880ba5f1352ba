"""LlamaCpp streams, invokes and batches with the real embedded model, in both flavours."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from helpers import chunks_of, collect, invoke_of, is_sync, same_answers, stream_of

from lmstream.providers.llamacpp import LlamaCpp


def test_stream_yields_token_by_token(llm: LlamaCpp, flavour: str, long_prompt: str) -> None:
    chunks = collect(stream_of(llm, flavour, long_prompt, max_tokens=10))
    assert all(isinstance(c, str) and c for c in chunks)
    # one text chunk per token for plain English text: true streaming, not one blob
    assert len(chunks) == 10


def test_stream_equals_invoke_at_temperature_zero(
    llm: LlamaCpp, flavour: str, long_prompt: str
) -> None:
    streamed = "".join(collect(stream_of(llm, flavour, long_prompt, max_tokens=16)))
    assert streamed
    assert invoke_of(llm, flavour, long_prompt, max_tokens=16) == streamed


def test_a_fixed_seed_repeats_a_sampled_completion(flavour: str, long_prompt: str) -> None:
    llm = LlamaCpp(temperature=1.2, seed=1234, max_tokens=16)
    first = "".join(collect(stream_of(llm, flavour, long_prompt)))
    assert invoke_of(llm, flavour, long_prompt) == first
    assert "".join(collect(stream_of(llm, flavour, long_prompt, seed=99))) != first


def test_the_documented_prompt_gives_a_verse(llm: LlamaCpp, flavour: str, prompt: str) -> None:
    text = invoke_of(llm, flavour, prompt, max_tokens=60)
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) >= 2, text  # verse lines; their words vary with the CPU's kernels
    assert len(text.split()) >= 12, text


def test_a_plain_prompt_is_sent_as_one_chat_turn(
    llm: LlamaCpp,
    flavour: str,
    prompt: str,
    info_of: Callable[[list[Any]], dict[str, Any]],
    chat_tokens: Callable[[LlamaCpp, str], int],
) -> None:
    chat = info_of(chunks_of(llm, flavour, prompt, max_tokens=3))["usage"]
    assert chat.prompt_tokens == chat_tokens(llm, prompt)
    raw_llm = LlamaCpp(temperature=0, seed=7, max_tokens=3, chat=False)
    raw = info_of(chunks_of(raw_llm, flavour, prompt))["usage"]
    assert raw.prompt_tokens == llm.get_num_tokens(prompt)
    assert raw.prompt_tokens < chat.prompt_tokens


def test_raw_completion_continues_the_text(flavour: str) -> None:
    raw = LlamaCpp(temperature=0, seed=7, max_tokens=8, chat=False)
    chat = LlamaCpp(temperature=0, seed=7, max_tokens=8)
    prompt = "The capital of France is"
    assert invoke_of(raw, flavour, prompt) != invoke_of(chat, flavour, prompt)


@pytest.mark.parametrize("max_concurrency", [1, 3, None])
def test_batch_matches_invoke(llm: LlamaCpp, flavour: str, max_concurrency: int | None) -> None:
    prompts = ["Name a colour.", "Name a fruit.", "Name a city.", "Name an animal."]
    expected = [llm.invoke(p, max_tokens=6) for p in prompts]
    config = {"max_concurrency": max_concurrency}
    if is_sync(flavour):
        got = llm.batch(prompts, config, max_tokens=6)
    else:
        got = asyncio.run(llm.abatch(prompts, config, max_tokens=6))
    assert same_answers(got, expected), got


def test_batch_as_completed_gives_every_result(llm: LlamaCpp, flavour: str) -> None:
    prompts = ["Name a colour.", "Name a fruit.", "Name a city."]
    expected = [llm.invoke(p, max_tokens=5) for p in prompts]
    if is_sync(flavour):
        got = dict(llm.batch_as_completed(prompts, max_tokens=5))
    else:
        got = dict(collect(llm.abatch_as_completed(prompts, max_tokens=5)))
    assert same_answers([got[i] for i in range(3)], expected), got
