"""Sampling settings and the token loop of ``LlamaCpp``.

The loop drives ``llama_cpp.Llama.generate`` directly rather than ``create_completion``:
it decodes each token's bytes once through an incremental UTF-8 decoder (text comes out
in whole characters only), cuts stop sequences with the core's hold-back, counts tokens,
and stops the engine the moment its consumer closes it.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import llama_cpp
from llama_cpp.llama_grammar import LlamaGrammar

from lmstream._accumulate import TextState
from lmstream.chunks import GenerationChunk, Usage
from lmstream.providers._llamacpp_engine import END, Engine

__all__ = ["Cut", "Settings", "generate"]

_MISSING: Any = object()


class Cut(Protocol):
    """What cuts a generation's text at its stop sequences, holding back what may be the
    start of one (``TextState``, or a rule for which part of the text they apply to)."""

    @property
    def stopped(self) -> bool: ...

    def feed(self, chunk: GenerationChunk) -> Any: ...

    def flush(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Settings:
    """One generation's sampling parameters (checked by ``LlamaCpp``'s declared settings)."""

    temperature: float
    top_p: float
    top_k: int
    repeat_penalty: float
    max_tokens: int | None
    seed: int | None
    n_threads: int
    grammar: LlamaGrammar | None = None
    """Holds the output to a grammar (JSON for tool calls and response formats)."""
    release: Callable[[bytes], bool] | None = None
    """Lets go of ``grammar`` once the output's first bytes pass this test: for a grammar
    that takes any continuation of such a start (plain text), which then samples freely."""


def _tokens(engine: Engine, prompt: list[int], settings: Settings) -> Iterator[int]:
    tokens = _sampled(engine, prompt, settings, settings.grammar)
    if settings.grammar is None or settings.release is None:
        return tokens
    return _released(engine, prompt, settings, tokens)


def _released(
    engine: Engine, prompt: list[int], settings: Settings, tokens: Iterator[int]
) -> Iterator[int]:
    """``tokens`` until what they wrote passes ``settings.release`` (looked at over its
    first 32 bytes), then the same generation without the grammar (llama.cpp keeps what it
    evaluated: nothing is evaluated twice)."""
    release, written, start = settings.release, [], b""
    try:
        for token in tokens:
            yield token
            written.append(token)
            start += engine.piece(token) or b""
            if release is not None and release(start):
                break
            if len(start) > 32:
                yield from tokens
                return
        else:
            return
    finally:
        getattr(tokens, "close", lambda: None)()
    yield from _sampled(engine, [*prompt, *written], settings, None)


def _sampled(
    engine: Engine, prompt: list[int], settings: Settings, grammar: LlamaGrammar | None
) -> Iterator[int]:
    llama = engine.llama
    llama.set_seed(llama_cpp.LLAMA_DEFAULT_SEED if settings.seed is None else settings.seed)
    # min_p and typical_p are create_completion's defaults, so both sample alike
    return llama.generate(
        prompt,
        top_k=settings.top_k,
        top_p=settings.top_p,
        min_p=0.05,
        typical_p=1.0,
        temp=settings.temperature,
        repeat_penalty=settings.repeat_penalty,
        grammar=grammar,
    )


def text_decoder() -> Callable[[bytes], str]:
    """Token bytes in, whole characters out: the bytes of a character split across tokens
    wait for the rest, so no piece of a character (and no U+FFFD) is ever handed on."""
    return codecs.getincrementaldecoder("utf-8")("replace").decode


def generate(
    engine: Engine, prompt: list[int], settings: Settings, stop: list[str] | Cut | None
) -> Iterator[GenerationChunk]:
    """Stream the completion of ``prompt`` (the caller holds ``engine.lock``).

    Text is handed on in whole characters: bytes of a character split across tokens wait
    for the rest (a character left unfinished by the token limit is dropped). The last
    chunk carries ``finish_reason`` and ``usage``. Closing the iterator stops the engine
    before it evaluates another token.
    """
    limit = engine.n_ctx - len(prompt)
    if settings.max_tokens is not None:
        limit = min(limit, settings.max_tokens)
    cut = (TextState(stop) if stop else None) if isinstance(stop, list) else stop
    decode = text_decoder()
    pieces, produced, reason, last = engine.pieces, 0, "length", ""
    tokens = _tokens(engine, prompt, settings) if limit > 0 else iter(())
    try:
        for token in tokens:
            piece = pieces.get(token, _MISSING)
            if piece is _MISSING:
                piece = engine.piece(token)
            if piece is END:
                reason = "stop"
                break
            produced += 1
            engine.tokens_generated += 1
            text = decode(piece)
            if cut is not None:
                out = cut.feed(GenerationChunk(text))
                text = "" if out is None else out.text
                if cut.stopped:
                    reason, last = "stop", text
                    break
            if produced >= limit:
                last = text
                break
            if text:
                yield GenerationChunk(text)
    finally:
        getattr(tokens, "close", lambda: None)()
    if cut is not None and not cut.stopped:
        last += cut.flush()
        reason = "stop" if cut.stopped else reason
    yield GenerationChunk(last, {"finish_reason": reason, "usage": Usage.of(len(prompt), produced)})
