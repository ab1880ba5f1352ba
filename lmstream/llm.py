"""The LLM base class: provider hooks in, the whole Runnable interface out.

A provider implements the fewest hooks it can: ``_call`` (one string), ``_stream`` (sync
token stream), ``_acall``/``_astream`` (async native). The base class derives the rest:

* ``stream`` uses ``_stream``, else yields the one result of the non-streaming path;
* ``astream`` uses ``_astream``, else ``_stream`` through one worker thread per stream,
  else one chunk from the async non-streaming path;
* ``invoke``/``ainvoke`` use ``_call``/``_acall`` and fall back to the other hooks.

Every stream ends one way: finished (the last chunk carries ``finish_reason`` and
``usage``), failed (a typed error carrying the partial text and usage), or cancelled
(the consumer stopped: the provider's iterator is closed at once). Stop sequences are
enforced while streaming, even when a provider ignores them. The generation loop itself
is shared with every kind of model: ``lmstream._generation``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar

from lmstream import _generation as loops
from lmstream._accumulate import TEXT
from lmstream._generation import TextGenerating
from lmstream._llmcore import check_stop, init_fields
from lmstream._llmgenerate import agenerate, generate, generate_config
from lmstream._llmsources import acomplete, as_chunk, asource, complete, join_chunks, source
from lmstream._otel import observed
from lmstream._types import LanguageModelInput, RunnableConfig
from lmstream.chunks import Generation, GenerationChunk, LLMResult
from lmstream.config import ensure_config
from lmstream.errors import InvalidInputError
from lmstream.prompts import prompt_to_string
from lmstream.runnable import Runnable
from lmstream.runs import SILENT, Run
from lmstream.settings import settings_of

__all__ = ["LLM", "BaseLLM"]

_HOOKS = ("_call", "_acall", "_stream", "_astream", "_generate", "_agenerate")
_NUMERIC: dict[str, tuple[type | tuple[type, ...], int]] = {
    "max_tokens": (int, 0),
    "temperature": ((int, float), 0),
    "top_p": ((int, float), 0),
}


def _check_kwargs(kwargs: dict[str, Any]) -> None:
    for key, (kind, low) in _NUMERIC.items():
        value = kwargs.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kind) or value < low:  # type: ignore[operator]
            raise InvalidInputError(f"{key} must be a number >= {low}, got {value!r}")


_PROVIDERS: dict[type, str] = {}  # a model class -> its ls_provider
_LS_NUMBERS = (("temperature", "ls_temperature"), ("max_tokens", "ls_max_tokens"))


_HookArgs = tuple["BaseLLM", str, "list[str] | None", Run, "dict[str, Any]"]
"""What the hooks' fallback chain (``_llmsources``) is called with."""


class BaseLLM(Runnable[LanguageModelInput, str]):
    """Base of every text LLM. Subclass ``LLM`` and implement a hook or two."""

    can_stream: bool = False
    """Whether ``stream`` yields tokens as they come (else one chunk): set from the hooks."""
    native_async: bool = False
    """Whether the async path is native (``_acall``/``_astream``), not a thread."""
    thread_safe: bool = True
    """Whether one instance may generate in several threads at once."""
    supports_response_format: bool = False
    """Whether the model holds its output to a ``response_format`` (JSON, a JSON schema)."""
    bridge_buffer: int = 8
    """Chunks a sync ``_stream`` may run ahead of an async consumer. A provider that holds
    a shared lock while it yields should allow a whole generation, or an async consumer
    that calls the same model before finishing the stream would wait on itself."""
    _has: ClassVar[dict[str, bool]] = {}
    _ls_model_type: ClassVar[str] = "llm"

    @staticmethod
    def _ls_provider_of(name: str) -> str:
        """The ``ls_provider`` of a model class called ``name``: ``FakeLLM`` is ``fake``."""
        return (name[:-3] if name.endswith("LLM") else name).lower()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._has = {h: getattr(cls, h) is not getattr(BaseLLM, h) for h in _HOOKS}
        if "can_stream" not in cls.__dict__:
            cls.can_stream = cls._has["_stream"] or cls._has["_astream"]
        if "native_async" not in cls.__dict__:
            cls.native_async = cls._has["_acall"] or cls._has["_astream"] or cls._has["_agenerate"]

    def __init__(
        self,
        *,
        callbacks: Sequence[Any] | None = None,
        tags: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        **fields: Any,
    ) -> None:
        if not any(self._has.values()):
            raise TypeError(
                f"{type(self).__name__} must implement _call, _acall, _stream, _astream, "
                "_generate or _agenerate"
            )
        self.callbacks = list(callbacks) if callbacks else []
        self.tags = list(tags) if tags else []
        self.metadata = dict(metadata) if metadata else {}
        self.name = name
        init_fields(self, BaseLLM, fields)

    # -- what a provider may override ---------------------------------------------------

    @property
    def _llm_type(self) -> str:
        return type(self).__name__.lower()

    @property
    def _identifying_params(self) -> dict[str, Any]:
        params = {}
        for key in settings_of(type(self), BaseLLM):  # a loop: no comprehension's frame
            params[key] = getattr(self, key, None)
        return params

    def _call(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> str | Generation:
        raise NotImplementedError

    async def _acall(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> str | Generation:
        raise NotImplementedError

    def _stream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        raise NotImplementedError

    def _astream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[GenerationChunk]:
        raise NotImplementedError

    def _generate(
        self, prompts: list[str], stop: list[str] | None = None, **kwargs: Any
    ) -> LLMResult:
        """LangChain's batch hook: every prompt in one call (optional)."""
        raise NotImplementedError

    async def _agenerate(
        self, prompts: list[str], stop: list[str] | None = None, **kwargs: Any
    ) -> LLMResult:
        """The async ``_generate`` (optional)."""
        raise NotImplementedError

    def generate(
        self, prompts: list[str], stop: list[str] | None = None, callbacks: Any = None, *,
        tags: list[str] | None = None, metadata: dict[str, Any] | None = None,
        run_name: str | None = None, run_id: Any = None, **kwargs: Any,
    ) -> LLMResult:  # fmt: skip
        """Generate for several prompts: one list of generations per prompt, and
        ``llm_output`` (the provider's, or the usage added up). One run per prompt."""
        options = {"tags": tags, "metadata": metadata, "run_name": run_name, "run_id": run_id}
        prompts, config = generate_config(prompts, callbacks, options)
        return generate(self, prompts, config, stop, kwargs)

    async def agenerate(
        self, prompts: list[str], stop: list[str] | None = None, callbacks: Any = None, *,
        tags: list[str] | None = None, metadata: dict[str, Any] | None = None,
        run_name: str | None = None, run_id: Any = None, **kwargs: Any,
    ) -> LLMResult:  # fmt: skip
        """Async ``generate``."""
        options = {"tags": tags, "metadata": metadata, "run_name": run_name, "run_id": run_id}
        prompts, config = generate_config(prompts, callbacks, options)
        return await agenerate(self, prompts, config, stop, kwargs)

    # what a non-streaming hook returned as one chunk, and a streaming hook's chunks
    # joined into one (a chat model's chunks are messages)
    _to_chunk = staticmethod(as_chunk)
    _join_chunks = staticmethod(join_chunks)

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text``; a character-based estimate unless the provider knows better."""
        return (len(text) + 3) // 4

    def asdict(self) -> dict[str, Any]:
        """The identifying parameters plus ``_type``."""
        return {**self._identifying_params, "_type": self._llm_type}

    # -- runs -----------------------------------------------------------------------------

    def _ls_metadata(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        cls = type(self)
        provider = _PROVIDERS.get(cls)
        if provider is None:
            provider = _PROVIDERS[cls] = cls._ls_provider_of(cls.__name__)
        out: dict[str, Any] = {"ls_provider": provider, "ls_model_type": cls._ls_model_type}
        model = (
            kwargs.get("model") or getattr(self, "model", None) or getattr(self, "model_name", None)
        )
        if model:
            out["ls_model_name"] = str(model)
        for key, name in _LS_NUMBERS:
            value = kwargs[key] if key in kwargs else getattr(self, key, None)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[name] = value
        if stop:
            out["ls_stop"] = stop
        if self.metadata:
            out.update(self.metadata)
        return out

    def _new_run(
        self, prompt: str, config: RunnableConfig, stop: list[str] | None, kwargs: dict[str, Any]
    ) -> Run:
        inputs = {"prompts": [prompt]}
        callbacks = config.get("callbacks")
        if not self.callbacks and (not callbacks or callbacks is SILENT) and not observed():
            return Run(config, owner=self, name=self.get_name(), run_type="llm", inputs=inputs)
        extra = {
            "invocation_params": {**self.asdict(), "stop": stop, **kwargs},
            "options": {"stop": stop},
            "batch_size": 1,
        }
        return Run(
            config, owner=self, name=self.get_name(), run_type="llm", inputs=inputs,
            local_tags=self.tags, local_metadata=self._ls_metadata(stop, kwargs),
            local_callbacks=self.callbacks, extra=extra,
        )  # fmt: skip

    def count_usage(self, prompt: str, text: str) -> tuple[int, int]:
        """(prompt tokens, completion tokens) when the provider reported no usage (a run
        cut short, or a backend that sends none). Override to count as the model does."""
        return self.get_num_tokens(prompt), self.get_num_tokens(text)

    # -- the public interface -------------------------------------------------------------

    def _prepare(
        self, input: Any, config: RunnableConfig | None, stop: Any, kwargs: dict[str, Any]
    ) -> tuple[str, RunnableConfig, list[str] | None]:
        prompt = prompt_to_string(input)
        if kwargs:
            _check_kwargs(kwargs)
        if stop is None:  # the instance's stop sequences are enforced too
            own = getattr(self, "stop", None)
            stop = own if isinstance(own, (str, list, tuple)) else None
        return prompt, ensure_config(config), check_stop(stop)

    def validate(self, input: LanguageModelInput, *, stop: Any = None, **kwargs: Any) -> str:
        """Check an input and call parameters as ``invoke``/``stream`` would; the prompt."""
        return self._prepare(input, None, stop, kwargs)[0]

    def _generation(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None,
        stop: Any,
        kwargs: dict[str, Any],
        as_text: bool = False,
    ) -> tuple[TextGenerating, _HookArgs, RunnableConfig]:
        """A generation of ``input``; the arguments of the hooks' fallback chain
        (``_llmsources``) for it, and its config."""
        prompt, cfg, stop = self._prepare(input, config, stop, kwargs)
        run = self._new_run(prompt, cfg, stop, kwargs)
        gen = TextGenerating(TEXT, run, prompt, stop, as_text)
        return gen, (self, prompt, stop, run, kwargs), cfg

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> str:
        """The whole completion for ``input``."""
        gen, args, _ = self._generation(input, config, stop, kwargs, as_text=True)
        if gen.plain:
            return loops.invoke_lean(gen, complete, *args).text  # type: ignore[no-any-return]
        return loops.invoke(gen, complete, *args).generations[0][0].text  # type: ignore[no-any-return]

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> str:
        """Async ``invoke``: native when the provider is."""
        gen, args, _ = self._generation(input, config, stop, kwargs, as_text=True)
        if gen.plain:
            return (await loops.ainvoke_lean(gen, acomplete, *args)).text  # type: ignore[no-any-return]
        result = await loops.ainvoke(gen, acomplete, *args)
        return result.generations[0][0].text  # type: ignore[no-any-return]

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[str]:
        """Stream the completion as text chunks."""
        gen, args, cfg = self._generation(input, config, stop, kwargs, as_text=True)
        if gen.plain:
            return loops.lean(gen, source, *args, cfg)
        return loops.stream(gen, source, *args, cfg)

    def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[str]:
        """Stream the completion as text chunks, async."""
        gen, args, cfg = self._generation(input, config, stop, kwargs, as_text=True)
        if gen.plain:
            return loops.alean(gen, asource, *args, cfg)
        return loops.astream(gen, asource, *args, cfg)

    def stream_chunks(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        """Stream ``GenerationChunk``s; the last carries ``finish_reason`` and ``usage``."""
        gen, args, cfg = self._generation(input, config, stop, kwargs)
        return loops.stream(gen, source, *args, cfg)

    def astream_chunks(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        """Async ``stream_chunks``."""
        gen, args, cfg = self._generation(input, config, stop, kwargs)
        return loops.astream(gen, asource, *args, cfg)


class LLM(BaseLLM):
    """Subclass this to write a provider: implement ``_call`` and, to stream, ``_stream``
    (``_acall``/``_astream`` for a native async path)."""
