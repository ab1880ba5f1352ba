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
enforced here while streaming, even when a provider ignores them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, ClassVar

from lmstream._accumulate import TextState
from lmstream._execution import aclose, close, is_cancel
from lmstream._llmcore import (
    check_stop,
    declared_fields,
    final_info,
    init_fields,
    outcome_info,
    typed_error,
)
from lmstream._llmsources import acomplete, asource, complete, source
from lmstream._otel import observed
from lmstream._types import LanguageModelInput, RunnableConfig
from lmstream.callbacks import drain_async
from lmstream.chunks import Generation, GenerationChunk, LLMResult, Usage, merge_info
from lmstream.config import ensure_config
from lmstream.errors import InvalidInputError
from lmstream.prompts import prompt_to_string
from lmstream.runnable import Runnable
from lmstream.runs import SILENT, Run, llm_result

__all__ = ["LLM", "BaseLLM"]

_HOOKS = ("_call", "_acall", "_stream", "_astream")
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


class BaseLLM(Runnable[LanguageModelInput, str]):
    """Base of every text LLM. Subclass ``LLM`` and implement a hook or two."""

    can_stream: bool = False
    """Whether ``stream`` yields tokens as they come (else one chunk): set from the hooks."""
    native_async: bool = False
    """Whether the async path is native (``_acall``/``_astream``), not a thread."""
    thread_safe: bool = True
    """Whether one instance may generate in several threads at once."""
    bridge_buffer: int = 8
    """Chunks a sync ``_stream`` may run ahead of an async consumer. A provider that holds
    a shared lock while it yields should allow a whole generation, or an async consumer
    that calls the same model before finishing the stream would wait on itself."""
    _has: ClassVar[dict[str, bool]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._has = {h: getattr(cls, h) is not getattr(BaseLLM, h) for h in _HOOKS}
        if "can_stream" not in cls.__dict__:
            cls.can_stream = cls._has["_stream"] or cls._has["_astream"]
        if "native_async" not in cls.__dict__:
            cls.native_async = cls._has["_acall"] or cls._has["_astream"]

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
                f"{type(self).__name__} must implement _call, _acall, _stream or _astream"
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
        return {k: getattr(self, k, None) for k in declared_fields(type(self), BaseLLM)}

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

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text``; a character-based estimate unless the provider knows better."""
        return (len(text) + 3) // 4

    def asdict(self) -> dict[str, Any]:
        """The identifying parameters plus ``_type``."""
        return {**self._identifying_params, "_type": self._llm_type}

    # -- runs -----------------------------------------------------------------------------

    def _ls_metadata(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        provider = type(self).__name__
        provider = provider[:-3] if provider.endswith("LLM") else provider
        out: dict[str, Any] = {"ls_provider": provider.lower(), "ls_model_type": "llm"}
        model = (
            kwargs.get("model") or getattr(self, "model", None) or getattr(self, "model_name", None)
        )
        if model:
            out["ls_model_name"] = str(model)
        for key in ("temperature", "max_tokens"):
            value = kwargs.get(key, getattr(self, key, None))
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"ls_{key}"] = value
        if stop:
            out["ls_stop"] = stop
        return {**out, **self.metadata}

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

    def _outcome(
        self, state: TextState, prompt: str, exc: BaseException
    ) -> tuple[bool, LLMResult, BaseException]:
        """(cancelled?, partial result, error to raise) for a run cut short by ``exc``."""
        text = state.text
        reason = "cancelled" if is_cancel(exc) else "error"
        info = state.info
        if info is None or not isinstance(info.get("usage"), Usage):
            info = outcome_info(info, reason, *self.count_usage(prompt, text))
        else:
            info = outcome_info(info, reason, 0, 0)
        error = exc if reason == "cancelled" else typed_error(exc, text, info["usage"])
        return reason == "cancelled", llm_result(text, info), error

    def _final(
        self, state: TextState, prompt: str, full: bool = True
    ) -> tuple[str, dict[str, Any], LLMResult | None]:
        """(held-back tail text, metadata the final chunk adds, the run's result);
        without ``full`` (nobody will see them) only the tail."""
        tail = state.flush()
        if not full:
            return tail, {}, None
        info = state.info
        has_usage = info is not None and isinstance(info.get("usage"), Usage)
        counts = (0, 0) if has_usage else self.count_usage(prompt, state.text)
        added = final_info(info, *counts)
        if added and "finish_reason" not in added and info is not None:
            # the final chunk repeats the reason (last wins when chunks add up), not usage
            added["finish_reason"] = info["finish_reason"]
        return tail, added, llm_result(state.text, merge_info(info, added))

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

    def _finish_invoke(
        self, prompt: str, stop: Any, chunk: GenerationChunk
    ) -> tuple[str, LLMResult]:
        state = TextState(stop)
        state.feed(chunk)
        _, _, result = self._final(state, prompt)
        assert result is not None
        return result.generations[0][0].text, result

    def invoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> str:
        """The whole completion for ``input``."""
        prompt, cfg, stop = self._prepare(input, config, stop, kwargs)
        run = self._new_run(prompt, cfg, stop, kwargs)
        run.start()
        try:
            chunk = complete(self, prompt, stop, run, kwargs)
        except BaseException as exc:
            cancelled, partial, error = self._outcome(TextState(), prompt, exc)
            run.cancel(partial) if cancelled else run.fail(error, partial)
            if error is exc:
                raise
            raise error from exc
        text, result = self._finish_invoke(prompt, stop, chunk)
        run.end(result)
        return text

    async def ainvoke(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> str:
        """Async ``invoke``: native when the provider is."""
        prompt, cfg, stop = self._prepare(input, config, stop, kwargs)
        run = self._new_run(prompt, cfg, stop, kwargs)
        await run.astart()
        try:
            chunk = await acomplete(self, prompt, stop, run, kwargs)
        except BaseException as exc:
            cancelled, partial, error = self._outcome(TextState(), prompt, exc)
            await (run.acancel(partial) if cancelled else run.afail(error, partial))
            if error is exc:
                raise
            raise error from exc
        text, result = self._finish_invoke(prompt, stop, chunk)
        await run.aend(result)
        return text

    def stream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[str]:
        """Stream the completion as text chunks."""
        prompt, cfg, stop = self._prepare(input, config, stop, kwargs)
        return self._drive(prompt, cfg, stop, kwargs, True)

    def astream(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[str]:
        """Stream the completion as text chunks, async."""
        prompt, cfg, stop = self._prepare(input, config, stop, kwargs)
        return self._adrive(prompt, cfg, stop, kwargs, True)

    def stream_chunks(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        """Stream ``GenerationChunk``s; the last carries ``finish_reason`` and ``usage``."""
        prompt, cfg, stop = self._prepare(input, config, stop, kwargs)
        return self._drive(prompt, cfg, stop, kwargs, False)

    def astream_chunks(
        self,
        input: LanguageModelInput,
        config: RunnableConfig | None = None,
        *,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        """Async ``stream_chunks``."""
        prompt, cfg, stop = self._prepare(input, config, stop, kwargs)
        return self._adrive(prompt, cfg, stop, kwargs, False)

    def _settle(self, run: Run, state: TextState, prompt: str, exc: BaseException) -> BaseException:
        cancelled, partial, error = self._outcome(state, prompt, exc)
        run.cancel(partial) if cancelled else run.fail(error, partial)
        return error

    async def _asettle(
        self, run: Run, state: TextState, prompt: str, exc: BaseException
    ) -> BaseException:
        cancelled, partial, error = self._outcome(state, prompt, exc)
        await (run.acancel(partial) if cancelled else run.afail(error, partial))
        return error

    def _drive(
        self, prompt: str, config: RunnableConfig, stop: Any, kwargs: dict[str, Any], as_text: bool
    ) -> Iterator[Any]:
        run = self._new_run(prompt, config, stop, kwargs)
        run.start()
        state, chunks = TextState(stop), None
        try:
            chunks = source(self, prompt, stop, run, kwargs, config)
            if as_text and not run.listening and not state.stops:
                append = state.parts.append  # the plain path: text out, nothing else to do
                for chunk in chunks:
                    text = chunk.text
                    append(text)
                    if chunk.generation_info is not None:
                        state.info = merge_info(state.info, chunk.generation_info)
                    if text:
                        yield text
            else:
                for chunk in chunks:
                    out = state.feed(chunk)
                    if out is not None:
                        if run.listening:
                            run.chunk(out)
                        if not as_text:
                            yield out
                        elif out.text:
                            yield out.text
                    if state.stopped:
                        break
        except BaseException as exc:
            close(chunks)
            if (error := self._settle(run, state, prompt, exc)) is exc:
                raise
            raise error from exc
        close(chunks)
        if as_text and not run.listening:  # nobody sees the outcome data: just the tail
            run.end(None)
            if (tail := state.flush()) or not state.text:
                yield tail
            return
        yield from self._finish(run, state, prompt, as_text)

    def _finish(self, run: Run, state: TextState, prompt: str, as_text: bool) -> Iterator[Any]:
        tail, added, result = self._final(state, prompt, full=run.listening or not as_text)
        try:
            if tail or added:
                chunk = GenerationChunk(tail, added or None)
                if run.listening and tail:
                    run.chunk(chunk)
                if not as_text:
                    yield chunk
            if as_text and (tail or not state.text):
                yield tail
        finally:
            run.end(result)

    async def _adrive(
        self, prompt: str, config: RunnableConfig, stop: Any, kwargs: dict[str, Any], as_text: bool
    ) -> AsyncIterator[Any]:
        run = self._new_run(prompt, config, stop, kwargs)
        if run.listening:
            await run.astart()
        state, chunks = TextState(stop), None
        try:
            chunks = asource(self, prompt, stop, run, kwargs, config)
            if as_text and not run.listening and not state.stops:
                append = state.parts.append  # the plain path: text out, nothing else to do
                async for chunk in chunks:
                    text = chunk.text
                    append(text)
                    if chunk.generation_info is not None:
                        state.info = merge_info(state.info, chunk.generation_info)
                    if text:
                        yield text
            else:
                async for chunk in chunks:
                    out = state.feed(chunk)
                    if out is not None:
                        if run.listening and (pending := run.report_chunk(out)):
                            await drain_async(pending, "chunk")
                        if not as_text:
                            yield out
                        elif out.text:
                            yield out.text
                    if state.stopped:
                        break
        except BaseException as exc:
            await aclose(chunks)
            if (error := await self._asettle(run, state, prompt, exc)) is exc:
                raise
            raise error from exc
        await aclose(chunks)
        if as_text and not run.listening:  # nobody sees the outcome data: just the tail
            run.end(None)
            if (tail := state.flush()) or not state.text:
                yield tail
            return
        async for item in self._afinish(run, state, prompt, as_text):
            yield item

    async def _afinish(
        self, run: Run, state: TextState, prompt: str, as_text: bool
    ) -> AsyncIterator[Any]:
        tail, added, result = self._final(state, prompt, full=run.listening or not as_text)
        try:
            if tail or added:
                chunk = GenerationChunk(tail, added or None)
                if run.listening and tail:
                    await run.achunk(chunk)
                if not as_text:
                    yield chunk
            if as_text and (tail or not state.text):
                yield tail
        finally:
            await run.aend(result)


class LLM(BaseLLM):
    """Subclass this to write a provider: implement ``_call`` and, to stream, ``_stream``
    (``_acall``/``_astream`` for a native async path)."""
