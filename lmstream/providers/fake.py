"""FakeLLM: scripted responses for tests, demos and benchmarks.

It streams for real (sync and native async), so every streaming behaviour can be tested
without a model: chunking per character, per word or as given, a delay per token, an
error after k tokens, a switch that turns streaming off, and ``tokens_produced``, a count
of the tokens it has generated (cancellation tests read it).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from lmstream.chunks import Generation, GenerationChunk, Usage
from lmstream.errors import ProviderError
from lmstream.llm import LLM
from lmstream.settings import Rule, kind, number, positional, setting

__all__ = ["FakeLLM", "split_tokens"]

_WORD = re.compile(r"\s*\S+\s*|\s+")


def split_tokens(text: str, chunking: str) -> list[str]:
    """``text`` cut into the fakes' tokens: ``"char"``, ``"word"`` or one piece."""
    if chunking == "char":
        return list(text)
    if chunking == "word":
        return _WORD.findall(text)
    return [text] if text else []


_CHUNKINGS = ("char", "word", "none")


def _is_responses(value: Any) -> bool:
    return (
        isinstance(value, Sequence) and not isinstance(value, str) and len(value) > 0
        and all(isinstance(r, str) or (isinstance(r, Sequence) and
                all(isinstance(c, str) for c in r)) for r in value)
    )  # fmt: skip


_RESPONSES = Rule(_is_responses, "a non-empty list of str or of lists of str", list)
_ERROR = Rule(
    lambda v: (
        isinstance(v, BaseException) or (isinstance(v, type) and issubclass(v, BaseException))
    ),
    "an exception or an exception class",
)


async def _sleep(seconds: float) -> None:
    import asyncio  # only async callers get here, and they have asyncio already

    await asyncio.sleep(seconds)


class FakeLLM(LLM):
    """An LLM that answers with scripted responses, cycling through them.

    A response is a string (split by ``chunking``: "char", "word" or "none") or a list of
    strings (the chunks exactly). ``max_tokens`` (as a call kwarg) cuts the response
    and ends it with ``finish_reason="length"``.
    """

    responses: list[str | list[str]] = setting(factory=lambda: [""], rule=_RESPONSES)
    chunking: str = setting("char", Rule(lambda v: v in _CHUNKINGS, f"one of {_CHUNKINGS}"))
    delay: float = setting(0.0, number(0))
    error_after: int | None = setting(None, number(0, integer=True))
    error: BaseException | type[BaseException] | None = setting(None, _ERROR)
    streaming: bool = setting(True, kind(bool, text="True or False"))
    finish_reason: str = setting("stop", kind(str, text="a str"))

    def __init__(self, *args: Any, **settings: Any) -> None:
        super().__init__(**positional("FakeLLM", ("responses",), args, settings))
        self.can_stream = self.streaming
        self.tokens_produced = 0
        self.calls = 0
        self._lock = threading.Lock()

    @property
    def _llm_type(self) -> str:
        return "fake"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"responses": self.responses}

    def split(self, text: str) -> list[str]:
        """``text`` cut into tokens the way this fake chunks."""
        return split_tokens(text, self.chunking)

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text`` as this fake counts them."""
        return len(self.split(text))

    def _script(self, kwargs: dict[str, Any]) -> tuple[list[str], str]:
        with self._lock:
            response = self.responses[self.calls % len(self.responses)]
            self.calls += 1
        tokens = self.split(response) if isinstance(response, str) else list(response)
        limit = kwargs.get("max_tokens")
        if limit is not None and limit < len(tokens):
            return tokens[:limit], "length"
        return tokens, self.finish_reason

    def _produced(self) -> None:
        with self._lock:
            self.tokens_produced += 1

    def _fail(self, k: int) -> BaseException:
        error = self.error
        if error is None:
            return ProviderError(f"FakeLLM failed after {k} tokens")
        return error() if isinstance(error, type) else error

    def _info(self, prompt: str, produced: int, reason: str) -> dict[str, Any]:
        usage = Usage.of(self.get_num_tokens(prompt), produced)
        return {"finish_reason": reason, "usage": usage}

    def _chunk(self, tokens: list[str], i: int, prompt: str, reason: str) -> GenerationChunk:
        if self.error_after is not None and i == self.error_after:
            raise self._fail(i)
        self._produced()
        last = i == len(tokens) - 1
        return GenerationChunk(tokens[i], self._info(prompt, i + 1, reason) if last else None)

    def _stream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        tokens, reason = self._script(kwargs)
        if not tokens:
            yield GenerationChunk("", self._info(prompt, 0, reason))
        for i in range(len(tokens)):
            if self.delay:
                time.sleep(self.delay)
            yield self._chunk(tokens, i, prompt, reason)

    async def _astream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[GenerationChunk]:
        tokens, reason = self._script(kwargs)
        if not tokens:
            yield GenerationChunk("", self._info(prompt, 0, reason))
        for i in range(len(tokens)):
            if self.delay:
                await _sleep(self.delay)
            yield self._chunk(tokens, i, prompt, reason)

    def _whole(self, prompt: str, tokens: list[str], reason: str) -> Generation:
        for i in range(len(tokens)):
            self._chunk(tokens, i, prompt, reason)
        return Generation("".join(tokens), self._info(prompt, len(tokens), reason))

    def _call(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> Generation:
        tokens, reason = self._script(kwargs)
        if self.delay:
            time.sleep(self.delay * len(tokens))
        return self._whole(prompt, tokens, reason)

    async def _acall(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> Generation:
        tokens, reason = self._script(kwargs)
        if self.delay:
            await _sleep(self.delay * len(tokens))
        return self._whole(prompt, tokens, reason)
