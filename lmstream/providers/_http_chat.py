"""The base of HTTP chat providers: ``HTTPChatModel``, the shared HTTP I/O (``_http_model``)
under the chat models' hooks, as ``HTTPLLM`` is for text models.

A provider declares its settings and implements ``_request`` (the URL and JSON body of one
call, from its messages), ``_wire(limits)`` (a reader of the streamed body, giving
``AIMessageChunk``s) and ``_parse(raw)`` (a whole answer as an ``AIMessage``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from lmstream.chat_model import BaseChatModel
from lmstream.messages import AIMessage, AIMessageChunk, BaseMessage
from lmstream.providers._http_model import HTTPModel

__all__ = ["HTTPChatModel"]


class HTTPChatModel(HTTPModel, BaseChatModel):
    """Base of the chat providers that talk HTTP: the hooks of a chat model, each one call
    of the shared HTTP I/O (time limits, retries before the first chunk, size limits)."""

    def _stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        return self._http_stream(messages, stop, kwargs)

    def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        return self._http_astream(messages, stop, kwargs)

    def _call(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AIMessage:
        result: AIMessage = self._http_call(messages, stop, kwargs)
        return result

    async def _acall(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AIMessage:
        result: AIMessage = await self._http_acall(messages, stop, kwargs)
        return result
