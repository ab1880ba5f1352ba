"""The two kinds of served model: text models (text chunks) and chat models (message
chunks). Routes that speak text serve a chat model's answers through ``text_stream``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from lmstream._execution import aclose
from lmstream.chat_model import BaseChatModel
from lmstream.chunks import GenerationChunk, Usage
from lmstream.messages import AIMessageChunk

__all__ = ["as_text", "chat_side", "is_chat", "text_stream", "usage_of"]


def is_chat(model: Any) -> bool:
    """Whether a served model is a chat model (messages in, message chunks out)."""
    return isinstance(model, BaseChatModel)


def chat_side(model: Any) -> Any:
    """The model that answers chat requests for a served one. A text model with a chat
    side of its own (``chat_model()``: a ``Router``'s sends chat to its upstreams'
    ``/v1/chat/completions``) answers through it; any other model answers itself."""
    side = getattr(model, "chat_model", None)
    return side() if callable(side) and not is_chat(model) else model


def usage_of(chunk: AIMessageChunk) -> Usage | None:
    """A message chunk's usage as a ``Usage``."""
    usage = chunk.usage_metadata
    if usage is None:
        return None
    estimated = bool(chunk.response_metadata.get("usage_estimated"))
    return Usage(usage["input_tokens"], usage["output_tokens"], usage["total_tokens"], estimated)


def as_text(chunk: Any) -> GenerationChunk:
    """A served model's chunk as a text chunk (a chat model's text, finish reason, usage)."""
    if not isinstance(chunk, AIMessageChunk):
        return chunk  # type: ignore[no-any-return]
    info: dict[str, Any] = {}
    if reason := chunk.response_metadata.get("finish_reason"):
        info["finish_reason"] = reason
    if (usage := usage_of(chunk)) is not None:
        info["usage"] = usage
    return GenerationChunk(chunk.text, info or None)


async def _as_text(chunks: AsyncIterator[Any]) -> AsyncIterator[GenerationChunk]:
    try:
        async for chunk in chunks:
            yield as_text(chunk)
    finally:
        await aclose(chunks)  # a client that leaves stops the model


def text_stream(
    model: Any, input: Any, config: Any = None, **kwargs: Any
) -> AsyncIterator[GenerationChunk]:
    """``model``'s answer to ``input`` as text chunks, whatever its kind."""
    chunks = model.astream_chunks(input, config, **kwargs)
    return _as_text(chunks) if is_chat(model) else chunks
