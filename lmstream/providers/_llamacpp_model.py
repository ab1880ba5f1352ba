"""What ``LlamaCpp`` and ``ChatLlamaCpp`` share: the engine's settings (declared once),
its loading and properties, and one generation run on it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import llama_cpp
from llama_cpp.llama_grammar import LlamaGrammar

from lmstream.chunks import GenerationChunk
from lmstream.errors import InvalidInputError
from lmstream.llm import BaseLLM
from lmstream.providers._llamacpp_engine import Engine, default_model_path, default_threads, load
from lmstream.providers._llamacpp_generate import Cut, Settings, generate
from lmstream.providers._llamacpp_grammar import RESPONSE_FORMAT
from lmstream.settings import STOP, Rule, number, setting

__all__ = ["LlamaCppModel", "handing_off", "run", "sampling"]

T = TypeVar("T")

_yield_cpu = getattr(os, "sched_yield", lambda: time.sleep(0))  # no sched_yield on Windows
_SAMPLING = ("temperature", "top_p", "top_k", "repeat_penalty", "max_tokens", "seed", "n_threads")
_MAX_SEED = 2**32 - 2  # 2**32 - 1 is llama.cpp's "random seed"
_PATH = Rule(
    lambda v: isinstance(v, (str, os.PathLike)),
    "a path",
    lambda v: os.path.abspath(os.path.expanduser(os.fspath(v))),
)


if TYPE_CHECKING:  # a mixin to the type checker; a model (for its settings) when run
    _Base = object
else:
    _Base = BaseLLM


class LlamaCppModel(_Base):
    """The settings and engine of a model run by llama.cpp, text or chat."""

    thread_safe = False
    supports_response_format = True

    model_path: str = setting(factory=default_model_path, rule=_PATH)
    n_ctx: int = setting(2048, number(1, integer=True))
    n_threads: int = setting(factory=default_threads, rule=number(1, 1024, integer=True),
                             per_call=True)  # fmt: skip
    temperature: float = setting(0.8, number(0), per_call=True)
    top_p: float = setting(0.95, number(0, 1), per_call=True)
    top_k: int = setting(40, number(0, integer=True), per_call=True)
    repeat_penalty: float = setting(1.1, number(above=0), per_call=True)
    max_tokens: int | None = setting(256, number(0, integer=True), per_call=True, nullable=True)
    seed: int | None = setting(None, number(0, _MAX_SEED, integer=True), per_call=True)
    stop: list[str] | None = setting(None, STOP)
    response_format: Any = setting(None, RESPONSE_FORMAT, per_call=True, nullable=True)

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._engine = self._load()
        self.model_path, self.n_ctx = self._engine.path, self._engine.n_ctx
        # ``astream``'s worker may run a whole generation ahead of its consumer: a stream
        # paused on a full buffer would hold the model's lock, so a consumer awaiting
        # another call of the same model inside its loop would wait forever.
        self.bridge_buffer = self._engine.n_ctx + 1

    def _load(self) -> Engine:
        return load(self.model_path, self.n_ctx, self.n_threads)

    @property
    def model_name(self) -> str:
        """The GGUF file's name."""
        return os.path.basename(self._engine.path)

    @property
    def client(self) -> llama_cpp.Llama:
        """The loaded ``llama_cpp.Llama``, shared with every instance on the same file."""
        return self._engine.llama

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text``, counted by the model's tokenizer."""
        if not isinstance(text, str):
            raise InvalidInputError(f"text must be a str, got {type(text).__name__}")
        return self._engine.count(text)


def sampling(values: dict[str, Any], grammar: LlamaGrammar | None, **more: Any) -> Settings:
    """A call's sampling settings, from its ``values`` (``for_call``'s)."""
    return Settings(**{name: values[name] for name in _SAMPLING}, grammar=grammar, **more)


def run(
    engine: Engine, tokens: list[int], settings: Settings, stop: list[str] | Cut | None
) -> Generator[GenerationChunk, None, None]:
    """Generate from ``tokens`` once they fit the context, holding the engine's lock."""
    engine.check_fits(len(tokens))
    with engine.lock:
        engine.use_threads(settings.n_threads)
        yield from generate(engine, tokens, settings, stop)


def handing_off(chunks: Generator[T, None, None]) -> Iterator[T]:
    """``chunks``, yielding the CPU once the first one is handed on.

    The async consumer sleeps until the worker wakes it; on a busy machine it then waits
    for the scheduler while the worker computes the next token on the CPU it needs
    (measured: 1.5 to 4 ms more time to first token without this).
    """
    with contextlib.closing(chunks):
        for chunk in chunks:
            yield chunk
            _yield_cpu()
            break
        yield from chunks
