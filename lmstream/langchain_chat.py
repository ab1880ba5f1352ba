"""lmstream chat models inside LangChain, and LangChain chat models inside lmstream.

``to_langchain_chat(model)`` gives a real langchain-core ``BaseChatModel`` that streams
token by token from an lmstream chat model: every ``AIMessageChunk`` is handed on as
LangChain's (content and reasoning blocks, tool-call fragments, usage, response
metadata), LangChain's callbacks and ``astream_events`` see each one, ``bind_tools``
binds the tools on the lmstream model, and a consumer that stops early stops the model.

``from_langchain_chat(chat)`` wraps a LangChain chat model as an lmstream chat model; the
chat model id ``langchain:module.Class`` builds one (``load_chat``). ``lmstream.langchain``'s
``to_langchain``/``from_langchain`` pick these for chat models.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

try:
    from langchain_core import messages as lc
    from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
    from langchain_core.language_models import BaseChatModel as LangChainChat
    from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
    from langchain_core.utils.function_calling import convert_to_openai_tool
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "lmstream.langchain_chat needs langchain-core: pip install 'lmstream[langchain]'"
    ) from exc

from lmstream._utils import aclose, close
from lmstream.chat_model import BaseChatModel
from lmstream.errors import InvalidInputError
from lmstream.message_input import convert_to_messages
from lmstream.messages import AIMessage, AIMessageChunk, BaseMessage

__all__ = [
    "LMStreamLangChainChatModel",
    "LangChainChatModel",
    "from_langchain_chat",
    "load_chat",
    "to_langchain_chat",
]

_LC_KINDS = {"human": lc.HumanMessage, "system": lc.SystemMessage, "ai": lc.AIMessage}


# -- messages both ways ------------------------------------------------------------------------


def _lc_chunk(chunk: AIMessageChunk) -> lc.AIMessageChunk:
    """An lmstream message chunk as LangChain's."""
    calls = [{**c, "type": "tool_call_chunk"} for c in chunk.tool_call_chunks]
    return lc.AIMessageChunk(
        content=chunk.content, id=chunk.id, name=chunk.name,
        tool_call_chunks=calls, usage_metadata=chunk.usage_metadata,
        response_metadata=dict(chunk.response_metadata),
        additional_kwargs=dict(chunk.additional_kwargs),
        chunk_position=chunk.chunk_position,
    )  # fmt: skip


def _lc_message(message: AIMessage) -> lc.AIMessage:
    """An lmstream ``AIMessage`` as LangChain's."""
    return lc.AIMessage(
        content=message.content, id=message.id, name=message.name,
        tool_calls=[{**c, "type": "tool_call"} for c in message.tool_calls],
        usage_metadata=message.usage_metadata,
        response_metadata=dict(message.response_metadata),
        additional_kwargs=dict(message.additional_kwargs),
    )  # fmt: skip


def _to_lc_messages(messages: Sequence[BaseMessage]) -> list[lc.BaseMessage]:
    """lmstream messages as LangChain's, for a LangChain chat model."""
    out: list[lc.BaseMessage] = []
    for m in messages:
        if isinstance(m, AIMessage):
            out.append(_lc_message(m))
        elif m.type == "tool":
            call_id = getattr(m, "tool_call_id", "")
            out.append(lc.ToolMessage(content=m.content, tool_call_id=call_id, name=m.name))
        else:
            out.append(_LC_KINDS.get(m.type, lc.HumanMessage)(content=m.content, name=m.name))
    return out


def _chunk(chunk: Any) -> AIMessageChunk:
    """What a LangChain chat model streams, as an lmstream message chunk."""
    if not isinstance(chunk, lc.AIMessageChunk):
        raise InvalidInputError(f"a LangChain chat model streamed {chunk!r}, not a message chunk")
    calls = [{k: v for k, v in c.items() if k != "type"} for c in chunk.tool_call_chunks]
    return AIMessageChunk(
        chunk.content, id=chunk.id, name=chunk.name,
        tool_call_chunks=calls or None,  # type: ignore[arg-type]
        usage_metadata=chunk.usage_metadata,  # type: ignore[arg-type]
        response_metadata=dict(chunk.response_metadata) or None,
        additional_kwargs=dict(chunk.additional_kwargs) or None,
    )  # fmt: skip


def _message(message: Any) -> AIMessage:
    """A LangChain ``AIMessage`` as lmstream's."""
    return AIMessage(
        message.content, id=message.id, name=message.name,
        tool_calls=[dict(c) for c in getattr(message, "tool_calls", ())],  # type: ignore[misc]
        usage_metadata=getattr(message, "usage_metadata", None),
        response_metadata=dict(message.response_metadata) or None,
        additional_kwargs=dict(message.additional_kwargs) or None,
    )  # fmt: skip


def _generation(chunk: AIMessageChunk) -> ChatGenerationChunk:
    return ChatGenerationChunk(message=_lc_chunk(chunk))


# -- lmstream chat models inside LangChain ---------------------------------------------------


class LMStreamLangChainChatModel(LangChainChat):
    """A langchain-core ``BaseChatModel`` backed by an lmstream chat model."""

    model: Any
    """The lmstream chat model (or the same model with tools bound)."""

    @property
    def _llm_type(self) -> str:
        return "lmstream-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model.get_name()}

    def _generate(
        self,
        messages: list[lc.BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        answer = self.model.invoke(convert_to_messages(messages), stop=stop, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=_lc_message(answer))])

    async def _agenerate(
        self,
        messages: list[lc.BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        answer = await self.model.ainvoke(convert_to_messages(messages), stop=stop, **kwargs)
        return ChatResult(generations=[ChatGeneration(message=_lc_message(answer))])

    def _stream(
        self,
        messages: list[lc.BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        chunks = self.model.stream(convert_to_messages(messages), stop=stop, **kwargs)
        try:  # closed at once when LangChain's consumer stops: the model stops too
            for chunk in chunks:
                out = _generation(chunk)
                if run_manager is not None:
                    run_manager.on_llm_new_token(out.text, chunk=out)
                yield out
        finally:
            close(chunks)

    async def _astream(
        self,
        messages: list[lc.BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        chunks = self.model.astream(convert_to_messages(messages), stop=stop, **kwargs)
        try:
            async for chunk in chunks:
                out = _generation(chunk)
                if run_manager is not None:
                    await run_manager.on_llm_new_token(out.text, chunk=out)
                yield out
        finally:
            await aclose(chunks)

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> LMStreamLangChainChatModel:
        """This model with ``tools`` (LangChain tools, pydantic models, functions or
        schemas) bound on the lmstream model, which sends them with every call."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        bound = self.model.bind_tools(formatted, tool_choice=tool_choice, **kwargs)
        return self.model_copy(update={"model": bound})


def to_langchain_chat(model: BaseChatModel, **fields: Any) -> LMStreamLangChainChatModel:
    """A langchain-core chat model that streams from ``model``; ``fields`` are
    LangChain's (``callbacks``, ``tags``, ``metadata``, ``name``...)."""
    if isinstance(model, LangChainChatModel):
        raise InvalidInputError("this model is a LangChain model already: use model.chat")
    fields.setdefault("name", model.get_name())
    return LMStreamLangChainChatModel(model=model, **fields)


# -- LangChain chat models inside lmstream ---------------------------------------------------


class LangChainChatModel(BaseChatModel):
    """An lmstream chat model backed by a LangChain chat model."""

    can_stream = True

    def __init__(self, chat: Any, **fields: Any) -> None:
        if not isinstance(chat, LangChainChat):
            raise InvalidInputError(f"this is not a LangChain chat model: {type(chat)!r}")
        super().__init__(**fields)
        self.chat = chat
        self.name = self.name or chat.get_name()
        hooks = ("_stream", "_astream", "stream", "astream")
        self.can_stream = any(
            getattr(type(chat), h) is not getattr(LangChainChat, h) for h in hooks
        )

    @property
    def _llm_type(self) -> str:
        return f"langchain:{type(self.chat).__name__}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"langchain": type(self.chat).__module__ + "." + type(self.chat).__qualname__}

    def _call(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> BaseMessage:
        return _message(self.chat.invoke(_to_lc_messages(messages), stop=stop, **kwargs))

    async def _acall(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> BaseMessage:
        answer = await self.chat.ainvoke(_to_lc_messages(messages), stop=stop, **kwargs)
        return _message(answer)

    def _stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        chunks = self.chat.stream(_to_lc_messages(messages), stop=stop, **kwargs)
        try:
            for chunk in chunks:
                yield _chunk(chunk)
        finally:  # the LangChain model stops when lmstream's consumer does
            close(chunks)

    async def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        chunks = self.chat.astream(_to_lc_messages(messages), stop=stop, **kwargs)
        try:
            async for chunk in chunks:
                yield _chunk(chunk)
        finally:
            await aclose(chunks)


def from_langchain_chat(chat: Any, **fields: Any) -> LangChainChatModel:
    """An lmstream chat model backed by ``chat``, a LangChain chat model; ``fields`` are
    lmstream's (``callbacks``, ``tags``, ``metadata``, ``name``)."""
    if isinstance(chat, LMStreamLangChainChatModel):
        raise InvalidInputError("this model is an lmstream model already: use chat.model")
    return LangChainChatModel(chat, **fields)


def load_chat(path: str | None = None, **settings: Any) -> LangChainChatModel:
    """The chat model for the id ``langchain:module.Class``: ``module.Class(**settings)``,
    which must be a LangChain chat model."""
    module_name, _, class_name = (path or "").rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InvalidInputError(
            f"a LangChain chat model id is langchain:module.Class: {exc}"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, LangChainChat)):
        raise InvalidInputError(f"{path!r} is not a LangChain chat model class")
    return LangChainChatModel(cls(**settings))
