"""Correct text while streaming: whole UTF-8 characters only, stop sequences cut exactly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import chunks_of, collect, invoke_of, stream_of

from lmstream.providers.llamacpp import LlamaCpp

CHINESE = "请用中文写一首关于春天的短诗。"
EMOJI = "Reply with three emoji about the sea 🌊"


def _splits_characters(llm: LlamaCpp, text: str) -> bool:
    """Whether the tokenizer cuts some character of ``text`` across two tokens."""
    tokens = llm.client.tokenize(text.encode(), add_bos=False, special=False)
    pieces = [llm.client.detokenize([t]) for t in tokens]
    try:
        [p.decode("utf-8") for p in pieces]
    except UnicodeDecodeError:
        return True
    return False


@pytest.mark.parametrize("prompt", [CHINESE, EMOJI])
def test_multibyte_output_streams_whole_characters(
    llm: LlamaCpp, flavour: str, prompt: str
) -> None:
    chunks = collect(stream_of(llm, flavour, prompt, max_tokens=24))
    text = "".join(chunks)
    assert any(ord(ch) > 0x2E80 for ch in text), text  # the model did answer in CJK/emoji
    assert _splits_characters(llm, text)  # so some characters came in pieces
    assert "\ufffd" not in text
    assert invoke_of(llm, flavour, prompt, max_tokens=24) == text
    # llama-cpp-python's non-streaming chat completion decodes all bytes at once; where the
    # token budget ends inside a character it generates past the budget to finish it,
    # while lmstream keeps to the budget and leaves the unfinished character out
    whole = llm.client.create_chat_completion(
        [{"role": "user", "content": prompt}], max_tokens=24, temperature=0.0,
        top_p=llm.top_p, top_k=llm.top_k, repeat_penalty=llm.repeat_penalty,
    )  # fmt: skip
    reference = whole["choices"][0]["message"]["content"]
    assert reference == text or (
        reference.startswith(text) and whole["usage"]["completion_tokens"] > 24
    ), (reference, text)


def _scripted(llm: LlamaCpp, monkeypatch: pytest.MonkeyPatch, text: str) -> list[int]:
    """Make the engine 'generate' exactly the tokens of ``text``."""
    tokens = llm.client.tokenize(text.encode(), add_bos=False, special=False)

    def generate(prompt: list[int], **kwargs: Any) -> Iterator[int]:
        yield from tokens
        yield llm.client.token_eos()

    monkeypatch.setattr(llm.client, "generate", generate)
    return tokens


def test_characters_split_across_tokens_are_joined(
    llm: LlamaCpp, flavour: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "🎉 你好, 世界! café 😀"
    tokens = _scripted(llm, monkeypatch, text)
    chunks = collect(stream_of(llm, flavour, "p", max_tokens=100))
    assert "".join(chunks) == text
    assert len(chunks) < len(tokens)  # pieces of characters were held, not handed on
    assert all("\ufffd" not in c for c in chunks)


def test_a_character_cut_by_the_token_limit_is_dropped(
    llm: LlamaCpp, flavour: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    tokens = _scripted(llm, monkeypatch, "ok 🎉🎉")
    cut = next(i for i in range(1, len(tokens)) if not _whole(llm, tokens[:i]))
    chunks = chunks_of(llm, flavour, "p", max_tokens=cut)
    text = "".join(c.text for c in chunks)
    assert "\ufffd" not in text
    assert "ok 🎉🎉".startswith(text)
    assert chunks[-1].generation_info["finish_reason"] == "length"


def _whole(llm: LlamaCpp, tokens: list[int]) -> bool:
    try:
        llm.client.detokenize(tokens).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _unconstrained(llm: LlamaCpp, prompt: str) -> list[str]:
    return list(llm.stream(prompt, max_tokens=30))


def _straddling(chunks: list[str]) -> str:
    """A stop sequence that starts in one chunk and ends in the next."""
    i = next(i for i in range(len(chunks) - 1) if len(chunks[i]) > 2 and len(chunks[i + 1]) > 2)
    return chunks[i][-2:] + chunks[i + 1][:2]


def test_a_stop_sequence_is_cut_exactly(
    llm: LlamaCpp,
    flavour: str,
    long_prompt: str,
    info_of: Callable[[list[Any]], dict[str, Any]],
) -> None:
    full = _unconstrained(llm, long_prompt)
    stop = _straddling(full)
    expected = "".join(full)[: "".join(full).index(stop)]
    chunks = chunks_of(llm, flavour, long_prompt, stop=[stop], max_tokens=30)
    assert "".join(c.text for c in chunks) == expected  # nothing of the stop leaked
    info = info_of(chunks)
    assert info["finish_reason"] == "stop"
    assert info["usage"].completion_tokens < 30  # the engine stopped at the stop sequence
    assert invoke_of(llm, flavour, long_prompt, stop=[stop], max_tokens=30) == expected


def test_a_default_stop_sequence_is_cut_by_the_provider(flavour: str, long_prompt: str) -> None:
    llm = LlamaCpp(temperature=0, seed=7, max_tokens=30)
    full = _unconstrained(llm, long_prompt)
    stop = _straddling(full)
    with_stop = LlamaCpp(temperature=0, seed=7, max_tokens=30, stop=stop)
    streamed = "".join(collect(stream_of(with_stop, flavour, long_prompt)))
    assert streamed == "".join(full)[: "".join(full).index(stop)]


def test_the_stop_sequence_that_starts_first_wins(
    llm: LlamaCpp, flavour: str, long_prompt: str
) -> None:
    full = "".join(_unconstrained(llm, long_prompt))
    start = len(full) // 3
    early, late = full[start : start + 8], full[start + 3 : start + 5]
    got = "".join(collect(stream_of(llm, flavour, long_prompt, stop=[early, late], max_tokens=30)))
    assert got == full[: full.index(early)]
