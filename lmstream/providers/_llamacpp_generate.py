"""Sampling settings and the token loop of ``LlamaCpp``.

The loop drives ``llama_cpp.Llama.generate`` directly rather than ``create_completion``:
it decodes each token's bytes once through an incremental UTF-8 decoder (text comes out
in whole characters only), cuts stop sequences with the core's hold-back, counts tokens,
and stops the engine the moment its consumer closes it.
"""

from __future__ import annotations

import codecs
import dataclasses
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import llama_cpp

from lmstream._accumulate import TextState
from lmstream.chunks import GenerationChunk, Usage
from lmstream.errors import InvalidInputError
from lmstream.providers._llamacpp_engine import END, Engine

__all__ = ["Settings", "generate"]

_MISSING: Any = object()
_MAX_SEED = 2**32 - 2  # 2**32 - 1 is llama.cpp's "random seed"
# name: (integer?, lowest, highest, lowest excluded?, None allowed?)
_RULES: dict[str, tuple[bool, float, float, bool, bool]] = {
    "temperature": (False, 0, math.inf, False, False),
    "top_p": (False, 0, 1, False, False),
    "top_k": (True, 0, math.inf, False, False),
    "repeat_penalty": (False, 0, math.inf, True, False),
    "max_tokens": (True, 0, math.inf, False, True),
    "seed": (True, 0, _MAX_SEED, False, True),
    "n_threads": (True, 1, 1024, False, False),
}


def _describe(name: str) -> str:
    integer, low, high, open_low, nullable = _RULES[name]
    kind = "an int" if integer else "a number"
    bound = f"> {low}" if open_low else f">= {low}" if high == math.inf else f"from {low} to {high}"
    return f"{name} must be {kind} {bound}" + (" or None" if nullable else "")


def check(name: str, value: Any) -> Any:
    """``value`` if it is valid for the parameter ``name``, else ``InvalidInputError``."""
    integer, low, high, open_low, nullable = _RULES[name]
    if value is None and nullable:
        return None
    kind = int if integer else (int, float)
    if (
        isinstance(value, bool)
        or not isinstance(value, kind)
        or not math.isfinite(value)
        or not low <= value <= high
        or (open_low and value == low)
    ):
        raise InvalidInputError(f"{_describe(name)}, got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Per-generation parameters, validated."""

    temperature: float
    top_p: float
    top_k: int
    repeat_penalty: float
    max_tokens: int | None
    seed: int | None
    n_threads: int

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            check(field.name, getattr(self, field.name))

    def override(self, kwargs: dict[str, Any]) -> Settings:
        """These settings with a call's keyword arguments applied."""
        if not kwargs:
            return self
        unknown = set(kwargs) - set(_RULES)
        if unknown:
            raise InvalidInputError(
                f"LlamaCpp got unexpected arguments: {sorted(unknown)} "
                f"(per-call parameters: {sorted(_RULES)})"
            )
        return dataclasses.replace(self, **kwargs)


def _tokens(engine: Engine, prompt: list[int], settings: Settings) -> Iterator[int]:
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
    )


def text_decoder() -> Callable[[bytes], str]:
    """Token bytes in, whole characters out: the bytes of a character split across tokens
    wait for the rest, so no piece of a character (and no U+FFFD) is ever handed on."""
    return codecs.getincrementaldecoder("utf-8")("replace").decode


def generate(
    engine: Engine, prompt: list[int], settings: Settings, stop: list[str] | None
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
    cut = TextState(stop) if stop else None
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
