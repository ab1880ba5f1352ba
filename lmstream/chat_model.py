"""Chat models: messages in, ``AIMessageChunk``s out, with every guarantee of text models.

A provider implements the same few hooks as a text model, over messages: ``_call``
(returns a string or an ``AIMessage``; LangChain's ``_generate`` works too), ``_stream``
(yields ``AIMessageChunk``s), ``_acall``/``_astream`` for a native async path. The
generation loop is the text models' own (``lmstream._generation``); only the chunk kind
differs (``lmstream._chat_kind``), and the stream ends with a last chunk
(``chunk_position="last"``) with the finish reason and usage (estimated and flagged when
the provider sent none).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from lmstream import _chat_kind as chat_loops
from lmstream import _generation as loops
from lmstream import _llmsources
from lmstream._chat_kind import ChatGenerating
from lmstream._llmcore import check_stop
from lmstream._otel import observed
from lmstream._types import LanguageModelInput, RunnableConfig
from lmstream.callbacks import CallbackManager
from lmstream.config import ensure_config
from lmstream.llm import _HOOKS, BaseLLM, _check_kwargs
from lmstream.message_input import as_message_chunk, convert_to_messages, get_buffer_string
from lmstream.messages import AIMessage, AIMessageChunk, BaseMessage, add_chunks
from lmstream.runnable import Runnable
from lmstream.runs import SILENT, Run, is_event_sink
from lmstream.tools import convert_to_openai_tool, tool_choice_of

__all__ = ["BaseChatModel", "SimpleChatModel"]

_BATCH_HOOKS = ("_generate", "_agenerate")  # the text side's hooks over prompt lists

_Messages = list[BaseMessage]


# the hooks' fallback chain, typed for text models; here it makes message chunks
_complete: Any = _llmsources.complete
_acomplete: Any = _llmsources.acomplete
_source: Any = _llmsources.source
_asource: Any = _llmsources.asource


def _join(chunks: Iterator[Any]) -> AIMessageChunk:
    return add_chunks([as_message_chunk(c) for c in chunks])


def _message(result: Any) -> AIMessage:
    message: AIMessageChunk = result.generations[0][0].message
    return message.to_message()


def _event_sinks(config: RunnableConfig) -> bool:
    """Whether an event stream listens to a call with ``config`` (then invoke streams)."""
    callbacks = config.get("callbacks")
    if isinstance(callbacks, CallbackManager):
        callbacks = callbacks.handlers
    return any(is_event_sink(h) for h in callbacks or ())


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
        def _ls_metadata(self, stop: Any, kwargs: dict[str, Any]) -> dict[str, Any]: ...

    disable_streaming: bool | Literal["tool_calling"] = False
    """Never stream (``True``), or not when tools are passed (``"tool_calling"``)."""
    supports_tool_calling: bool = True
    """Whether the model takes tools (``bind_tools``) and can be made to call one: a
    provider that cannot pass tools on says ``False``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        if "_generate" in cls.__dict__ and "_call" not in cls.__dict__:
            cls._call = cls.__dict__["_generate"]  # type: ignore[method-assign]
        if "_agenerate" in cls.__dict__ and "_acall" not in cls.__dict__:
            cls._acall = cls.__dict__["_agenerate"]  # type: ignore[method-assign]
        declared = {k for k in ("can_stream", "native_async") if k in cls.__dict__}
        super().__init_subclass__(**kwargs)
        # a chat model's _generate/_agenerate answer through _call/_acall (above), never
        # through the text side's batch hook, which takes a list of prompts
        cls._has = {
            h: h not in _BATCH_HOOKS and getattr(cls, h) is not getattr(BaseChatModel, h)
            for h in _HOOKS
        }
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

    _to_chunk = staticmethod(as_message_chunk)
    _join_chunks = staticmethod(_join)

    _ls_model_type: ClassVar[str] = "chat"

    @staticmethod
    def _ls_provider_of(name: str) -> str:
        """The ``ls_provider`` of a chat model class: ``ChatOpenAI`` is ``openai``."""
        provider = name.lower()
        return provider.replace("chatmodel", "").replace("chat", "") or provider

    def _new_run(
        self, prompt: _Messages, config: RunnableConfig, stop: Any, kwargs: dict[str, Any]
    ) -> Run:
        inputs = {"messages": [prompt]}
        callbacks = config.get("callbacks")
        if not self.callbacks and (not callbacks or callbacks is SILENT) and not observed():
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

    def _generation(
        self, input: Any, config: RunnableConfig | None, stop: Any, kwargs: dict[str, Any]
    ) -> tuple[ChatGenerating, tuple[Any, ...], RunnableConfig]:
        """A generation of ``input``; the arguments of the hooks' fallback chain for it,
        and its config."""
        messages, cfg, stop = self._prepare(input, config, stop, kwargs)
        run = self._new_run(messages, cfg, stop, kwargs)
        gen = ChatGenerating(run, messages, stop)
        return gen, (self, messages, stop, run, kwargs), cfg

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
        gen, args, _ = self._generation(input, config, stop, kwargs)
        return _message(loops.invoke(gen, _complete, *args))

    async def ainvoke(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
        stop: list[str] | None = None, **kwargs: Any,
    ) -> AIMessage:  # fmt: skip
        """Async ``invoke``: native when the provider is."""
        if self.can_stream and self._streams(kwargs) and _event_sinks(ensure_config(config)):
            chunks = [c async for c in self.astream(input, config, stop=stop, **kwargs)]
            return add_chunks(chunks).to_message()
        gen, args, _ = self._generation(input, config, stop, kwargs)
        return _message(await loops.ainvoke(gen, _acomplete, *args))

    def stream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
        stop: list[str] | None = None, **kwargs: Any,
    ) -> Iterator[AIMessageChunk]:  # fmt: skip
        """Stream the message as ``AIMessageChunk``s; the last carries usage."""
        if not self._streams(kwargs):
            return self._one_chunk(input, config, stop, kwargs)
        gen, args, cfg = self._generation(input, config, stop, kwargs)
        return chat_loops.stream(gen, _source, *args, cfg)

    def astream(
        self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
        stop: list[str] | None = None, **kwargs: Any,
    ) -> AsyncIterator[AIMessageChunk]:  # fmt: skip
        """Stream the message as ``AIMessageChunk``s, async."""
        if not self._streams(kwargs):
            return self._aone_chunk(input, config, stop, kwargs)
        gen, args, cfg = self._generation(input, config, stop, kwargs)
        return chat_loops.astream(gen, _asource, *args, cfg)

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

    def with_structured_output(
        self, schema: Any = None, *,
        method: Literal["json_schema", "function_calling", "json_mode"] | None = None,
        include_raw: bool = False, strict: bool | None = None, **kwargs: Any,
    ) -> Runnable[LanguageModelInput, Any]:  # fmt: skip
        """This model answering with an object of ``schema`` (a pydantic model, a
        ``TypedDict``, a JSON-schema dict or an OpenAI tool dict) that streams as it fills
        in: ``Partial[Model]`` snapshots then the validated model, or partial dicts then
        the dict. ``method``: ``"json_schema"`` (``response_format``), ``"function_calling"``
        (a forced tool call) or ``"json_mode"``; by default ``"json_schema"`` where the
        model supports ``response_format``, else ``"function_calling"``. ``include_raw``:
        ``{"raw", "parsed", "parsing_error"}``. See ``lmstream.structured_chat``."""
        from lmstream.structured_chat import structured_output

        return structured_output(
            self, schema, method=method, include_raw=include_raw, strict=strict, **kwargs
        )


class SimpleChatModel(BaseChatModel):
    """Subclass this to write a chat model: implement ``_call`` (messages in, a string
    or an ``AIMessage`` out) and, to stream, ``_stream``."""
