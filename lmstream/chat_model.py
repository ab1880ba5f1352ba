"""Chat models: messages in, ``AIMessageChunk``s out, with every guarantee of text models.

A provider implements the same few hooks as a text model, over messages: ``_call``
(returns a string or an ``AIMessage``; LangChain's ``_generate`` works too), ``_stream``
(yields ``AIMessageChunk``s), ``_acall``/``_astream`` for a native async path. The
generation loop is the text models' own; only the chunk type differs: a ``ChatState``
instead of a ``TextState``, and a final chunk (``chunk_position="last"``) that carries the
finish reason and usage (estimated and flagged when the provider sent none).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from lmstream._chat_state import ChatState, usage_of
from lmstream._execution import is_cancel
from lmstream._llmcore import check_stop, typed_error
from lmstream._types import LanguageModelInput, RunnableConfig
from lmstream.callbacks import CallbackManager
from lmstream.chunks import LLMResult
from lmstream.config import ensure_config
from lmstream.errors import GenerationError
from lmstream.llm import _HOOKS, BaseLLM, _check_kwargs
from lmstream.message_input import (
    ChatGeneration,
    as_message_chunk,
    convert_to_messages,
    get_buffer_string,
)
from lmstream.messages import AIMessage, AIMessageChunk, BaseMessage, UsageMetadata, add_chunks
from lmstream.runnable import Runnable
from lmstream.runs import SILENT, Run
from lmstream.tools import convert_to_openai_tool, tool_choice_of

__all__ = ["BaseChatModel", "SimpleChatModel"]

_Messages = list[BaseMessage]


def _result(message: BaseMessage) -> LLMResult:
    return LLMResult(generations=[[ChatGeneration(message)]])


def _join(chunks: Iterator[Any]) -> AIMessageChunk:
    return add_chunks([as_message_chunk(c) for c in chunks])


def _event_sinks(config: RunnableConfig) -> bool:
    """Whether an event stream listens to a call with ``config`` (then invoke streams)."""
    callbacks = config.get("callbacks")
    if isinstance(callbacks, CallbackManager):
        callbacks = callbacks.handlers
    return any(getattr(h, "is_event_sink", False) for h in callbacks or ())


if TYPE_CHECKING:  # typed as what it is to its users: messages in, an AIMessage out
    _Loop = Runnable[LanguageModelInput, AIMessage]
else:  # the text models' generation loop, with the chunk-type hooks below swapped in
    _Loop = BaseLLM


class BaseChatModel(_Loop):
    """Base of every chat model. Subclass and implement a hook or two (see the module)."""

    if TYPE_CHECKING:  # what the shared loop provides
        can_stream: bool
        native_async: bool
        thread_safe: bool
        bridge_buffer: int
        callbacks: list[Any]
        tags: list[str]
        metadata: dict[str, Any]
        name: str | None
        _has: ClassVar[dict[str, bool]]

        def __init__(
            self, *, callbacks: Sequence[Any] | None = None, tags: Sequence[str] | None = None,
            metadata: dict[str, Any] | None = None, name: str | None = None, **fields: Any,
        ) -> None: ...  # fmt: skip

        def get_num_tokens(self, text: str) -> int: ...
        def asdict(self) -> dict[str, Any]: ...
        def _drive(self, prompt: Any, config: RunnableConfig, stop: Any,
                   kwargs: dict[str, Any], as_text: bool) -> Iterator[Any]: ...  # fmt: skip
        def _adrive(self, prompt: Any, config: RunnableConfig, stop: Any,
                    kwargs: dict[str, Any], as_text: bool) -> AsyncIterator[Any]: ...  # fmt: skip

    disable_streaming: bool | Literal["tool_calling"] = False
    """Never stream (``True``), or not when tools are passed (``"tool_calling"``)."""
    _report_final_chunk: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if "_generate" in cls.__dict__ and "_call" not in cls.__dict__:
            cls._call = cls.__dict__["_generate"]  # type: ignore[method-assign]
        if "_agenerate" in cls.__dict__ and "_acall" not in cls.__dict__:
            cls._acall = cls.__dict__["_agenerate"]  # type: ignore[method-assign]
        declared = {k for k in ("can_stream", "native_async") if k in cls.__dict__}
        super().__init_subclass__(**kwargs)
        cls._has = {h: getattr(cls, h) is not getattr(BaseChatModel, h) for h in _HOOKS}
        if "can_stream" not in declared:
            cls.can_stream = cls._has["_stream"] or cls._has["_astream"]
        if "native_async" not in declared:
            cls.native_async = cls._has["_acall"] or cls._has["_astream"]

    # -- what a provider may override ---------------------------------------------------

    def _call(
        self, messages: _Messages, stop: list[str] | None = None, **kwargs: Any
    ) -> str | BaseMessage:
        raise NotImplementedError

    async def _acall(
        self, messages: _Messages, stop: list[str] | None = None, **kwargs: Any
    ) -> str | BaseMessage:
        raise NotImplementedError

    def _stream(
        self, messages: _Messages, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        raise NotImplementedError

    def _astream(
        self, messages: _Messages, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        raise NotImplementedError

    def get_num_tokens_from_messages(self, messages: Sequence[BaseMessage]) -> int:
        """Tokens in ``messages``; an estimate unless the provider knows better."""
        return self.get_num_tokens(get_buffer_string(messages))

    def count_usage(self, prompt: Any, text: str) -> tuple[int, int]:
        """(input tokens, output tokens) when the provider reported no usage."""
        return self.get_num_tokens_from_messages(prompt), self.get_num_tokens(text)

    # -- the chunk type in the shared loop ------------------------------------------------

    def _new_state(self, stop: Any) -> ChatState:
        return ChatState(stop)

    def _tail_chunk(self, tail: str, added: dict[str, Any]) -> Any:
        return added["chunk"]

    _to_chunk = staticmethod(as_message_chunk)
    _join_chunks = staticmethod(_join)

    def _ls_metadata(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = BaseLLM._ls_metadata(self, stop, kwargs)  # type: ignore[arg-type]
        out["ls_model_type"] = "chat"
        provider = type(self).__name__.lower()
        out["ls_provider"] = provider.replace("chatmodel", "").replace("chat", "") or provider
        return {**out, **self.metadata}

    def _new_run(
        self, prompt: _Messages, config: RunnableConfig, stop: Any, kwargs: dict[str, Any]
    ) -> Run:
        inputs = {"messages": [prompt]}
        callbacks = config.get("callbacks")
        if not self.callbacks and (not callbacks or callbacks is SILENT):
            return Run(
                config, owner=self, name=self.get_name(), run_type="chat_model", inputs=inputs
            )
        extra = {
            "invocation_params": {**self.asdict(), "stop": stop, **kwargs},
            "options": {"stop": stop},
            "batch_size": 1,
        }
        return Run(
            config, owner=self, name=self.get_name(), run_type="chat_model", inputs=inputs,
            local_tags=self.tags, local_metadata=self._ls_metadata(stop, kwargs),
            local_callbacks=self.callbacks, extra=extra,
        )  # fmt: skip

    def _usage(self, prompt: _Messages, text: str) -> UsageMetadata:
        counts = self.count_usage(prompt, text)
        return {"input_tokens": counts[0], "output_tokens": counts[1],
                "total_tokens": counts[0] + counts[1]}  # fmt: skip

    def _outcome(
        self, state: ChatState, prompt: _Messages, exc: BaseException
    ) -> tuple[bool, LLMResult, BaseException]:
        """(cancelled?, partial result, error to raise) for a run cut short by ``exc``;
        a failed run's error carries the partial message."""
        reason = "cancelled" if is_cancel(exc) else "error"
        partial = state.message()
        meta: dict[str, Any] = {"finish_reason": reason}
        usage = partial.usage_metadata
        if usage is None:
            usage = self._usage(prompt, partial.text + partial.reasoning)
            meta["usage_estimated"] = True
        partial = partial + AIMessageChunk(
            "", id=state.id, usage_metadata=usage, response_metadata=meta, chunk_position="last"
        )
        if reason == "cancelled":
            return True, _result(partial), exc
        error = typed_error(exc, partial.text, usage_of(usage, "usage_estimated" in meta))
        if isinstance(error, GenerationError):
            error.partial_message = partial
        return False, _result(partial), error

    def _final(
        self, state: ChatState, prompt: _Messages, full: bool = True
    ) -> tuple[str, dict[str, Any], LLMResult | None]:
        """(held-back tail text, {"chunk": the final chunk}, the run's result)."""
        tail = state.flush()
        message = state.message()
        meta: dict[str, Any] = {}
        if state.stop_hit or message.response_metadata.get("finish_reason") is None:
            meta["finish_reason"] = "stop"
        model = getattr(self, "model", None) or getattr(self, "model_name", None)
        if model and "model_name" not in message.response_metadata:
            meta["model_name"] = str(model)
        usage = None
        if message.usage_metadata is None:
            usage = self._usage(prompt, message.text + tail + message.reasoning)
            meta["usage_estimated"] = True
        last = AIMessageChunk(
            tail, id=state.id, usage_metadata=usage, response_metadata=meta or None,
            chunk_position="last",
        )  # fmt: skip
        if state.id is None:
            state.feed(last)
        return tail, {"chunk": last}, _result(message + last)

    def _finish_invoke(
        self, prompt: _Messages, stop: Any, chunk: AIMessageChunk
    ) -> tuple[AIMessage, LLMResult]:
        state = ChatState(stop)
        state.feed(chunk)
        _, _, result = self._final(state, prompt)
        assert result is not None
        generation = result.generations[0][0]
        message = generation.message.to_message()  # type: ignore[attr-defined]
        generation.message = message  # type: ignore[attr-defined]
        return message, result

    # -- the public interface -------------------------------------------------------------

    def _prepare(
        self, input: Any, config: RunnableConfig | None, stop: Any, kwargs: dict[str, Any]
    ) -> tuple[_Messages, RunnableConfig, list[str] | None]:
        messages = convert_to_messages(input)
        if kwargs:
            _check_kwargs(kwargs)
        if stop is None:
            own = getattr(self, "stop", None)
            stop = own if isinstance(own, (str, list, tuple)) else None
        return messages, ensure_config(config), check_stop(stop)

    def _streams(self, kwargs: dict[str, Any]) -> bool:
        disabled = self.disable_streaming
        if disabled == "tool_calling":
            return not kwargs.get("tools")
        return not disabled and kwargs.get("stream") is not False

    def invoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
        stop: list[str] | None = None, **kwargs: Any,
    ) -> AIMessage:  # fmt: skip
        """The whole message; streamed underneath when events are being consumed."""
        if self.can_stream and self._streams(kwargs) and _event_sinks(ensure_config(config)):
            return add_chunks(list(self.stream(input, config, stop=stop, **kwargs))).to_message()
        return super().invoke(input, config, stop=stop, **kwargs)

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
        stop: list[str] | None = None, **kwargs: Any,
    ) -> AIMessage:  # fmt: skip
        """Async ``invoke``: native when the provider is."""
        if self.can_stream and self._streams(kwargs) and _event_sinks(ensure_config(config)):
            chunks = [c async for c in self.astream(input, config, stop=stop, **kwargs)]
            return add_chunks(chunks).to_message()
        return await super().ainvoke(input, config, stop=stop, **kwargs)

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
        stop: list[str] | None = None, **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:  # fmt: skip
        """Stream the message as ``AIMessageChunk``s; the last carries usage."""
        if not self._streams(kwargs):
            return self._one_chunk(input, config, stop, kwargs)
        prompt, cfg, stop = self._prepare(input, config, stop, kwargs)
        return self._drive(prompt, cfg, stop, kwargs, False)

    def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
        stop: list[str] | None = None, **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:  # fmt: skip
        """Stream the message as ``AIMessageChunk``s, async."""
        if not self._streams(kwargs):
            return self._aone_chunk(input, config, stop, kwargs)
        prompt, cfg, stop = self._prepare(input, config, stop, kwargs)
        return self._adrive(prompt, cfg, stop, kwargs, False)

    def _one_chunk(
        self, input: Any, config: RunnableConfig | None, stop: Any, kwargs: dict[str, Any]
    ) -> Iterator[AIMessageChunk]:
        """Streaming is disabled: the whole message as one (last) chunk."""
        chunk = as_message_chunk(self.invoke(input, config, stop=stop, **kwargs))
        chunk.chunk_position = "last"
        yield chunk

    async def _aone_chunk(
        self, input: Any, config: RunnableConfig | None, stop: Any, kwargs: dict[str, Any]
    ) -> AsyncIterator[AIMessageChunk]:
        chunk = as_message_chunk(await self.ainvoke(input, config, stop=stop, **kwargs))
        chunk.chunk_position = "last"
        yield chunk

    stream_chunks = stream
    astream_chunks = astream

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        """This model with tools bound: pydantic models, typed functions or JSON-schema
        dicts, converted once to OpenAI's tool schema and passed to every call."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        choice = tool_choice_of(tool_choice, formatted)
        if choice is not None:
            kwargs["tool_choice"] = choice
        return self.bind(tools=formatted, **kwargs)


class SimpleChatModel(BaseChatModel):
    """Subclass this to write a chat model: implement ``_call`` (messages in, a string
    or an ``AIMessage`` out) and, to stream, ``_stream``."""
