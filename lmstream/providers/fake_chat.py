"""FakeChatModel: scripted chat messages for tests, demos and benchmarks.

It streams for real (sync and native async), chunk by chunk: reasoning first, then text,
then tool-call fragments (the first with name, id and index, the rest pieces of the JSON
arguments), and usage on the last chunk (or as running totals on every chunk, or not at
all). It can fail after k chunks, and counts the chunks it produced.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from lmstream.chat_model import BaseChatModel
from lmstream.errors import InvalidInputError, ProviderError
from lmstream.message_input import get_buffer_string
from lmstream.messages import AIMessage, AIMessageChunk, BaseMessage, UsageMetadata
from lmstream.providers.fake import split_tokens

__all__ = ["FakeChatModel"]

_CHUNKINGS = ("char", "word", "none")
_USAGE = ("last", "running", "none")


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


class FakeChatModel(BaseChatModel):
    """A chat model that answers with scripted messages, cycling through them.

    A response is a string, an ``AIMessage`` (its reasoning, text and tool calls are
    streamed in pieces) or a list of ``AIMessageChunk``s (streamed exactly). ``usage``:
    "last" (on the last chunk), "running" (running totals on every chunk, marked as such)
    or "none" (lmstream then estimates it). ``supports_response_format=True`` makes it
    claim to hold its answers to a ``response_format`` (it answers its script regardless).
    """

    def __init__(
        self,
        responses: Sequence[str | AIMessage | Sequence[AIMessageChunk]] = ("",),
        *,
        chunking: str = "char",
        delay: float = 0.0,
        error_after: int | None = None,
        error: BaseException | type[BaseException] | None = None,
        streaming: bool = True,
        usage: str = "last",
        model_name: str = "fake-chat",
        supports_response_format: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.supports_response_format = supports_response_format
        if isinstance(responses, str) or not isinstance(responses, Sequence) or not responses:
            raise InvalidInputError("responses must be a non-empty list of messages or strings")
        if chunking not in _CHUNKINGS or usage not in _USAGE:
            raise InvalidInputError(f"chunking is one of {_CHUNKINGS}, usage one of {_USAGE}")
        if delay < 0 or (error_after is not None and error_after < 0):
            raise InvalidInputError("delay and error_after must be >= 0")
        self.responses = list(responses)
        self.chunking, self.delay, self.usage = chunking, delay, usage
        self.error_after, self.error = error_after, error
        self.can_stream = streaming
        self.model_name = model_name
        self.chunks_produced = 0
        self.calls = 0
        self.last_kwargs: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def _llm_type(self) -> str:
        return "fake-chat"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name}

    def split(self, text: str) -> list[str]:
        """``text`` cut into tokens the way this fake chunks."""
        return split_tokens(text, self.chunking)

    def get_num_tokens(self, text: str) -> int:
        """Tokens in ``text`` as this fake counts them."""
        return len(self.split(text))

    # -- the script -----------------------------------------------------------------------

    def _next(self, kwargs: dict[str, Any]) -> Any:
        with self._lock:
            response = self.responses[self.calls % len(self.responses)]
            self.calls += 1
            self.last_kwargs = dict(kwargs)
        return response

    def _pieces(self, message: AIMessage) -> list[AIMessageChunk]:
        out = [
            AIMessageChunk([{"type": "reasoning", "reasoning": p}])
            for p in self.split(message.reasoning)
        ]
        out += [AIMessageChunk(p) for p in self.split(message.text)]
        import json  # on use: it is not needed to import lmstream

        for index, call in enumerate(message.tool_calls):
            args = self.split(json.dumps(call.get("args", {}))) or [""]
            first = {"name": call.get("name"), "args": args[0], "id": call.get("id"),
                     "index": index}  # fmt: skip
            out.append(AIMessageChunk("", tool_call_chunks=[first]))  # type: ignore[list-item]
            out += [
                AIMessageChunk("", tool_call_chunks=[{"args": a, "index": index}]) for a in args[1:]
            ]
        return out

    def _script(self, messages: list[BaseMessage], kwargs: dict[str, Any]) -> list[AIMessageChunk]:
        response = self._next(kwargs)
        if isinstance(response, str):
            response = AIMessage(response)
        if not isinstance(response, AIMessage):
            return list(response)
        chunks = self._pieces(response) or [AIMessageChunk("")]
        reason = "tool_calls" if response.tool_calls else "stop"
        chunks[-1] = chunks[-1] + AIMessageChunk(
            "", response_metadata={"finish_reason": reason, "model_name": self.model_name}
        )
        return self._with_usage(chunks, self.get_num_tokens(get_buffer_string(messages)))

    def _with_usage(self, chunks: list[AIMessageChunk], prompt: int) -> list[AIMessageChunk]:
        def usage(n: int) -> UsageMetadata:
            return {"input_tokens": prompt, "output_tokens": n, "total_tokens": prompt + n}

        if self.usage == "last":
            chunks[-1] = chunks[-1] + AIMessageChunk("", usage_metadata=usage(len(chunks)))
        elif self.usage == "running":
            for i, chunk in enumerate(chunks):
                chunks[i] = chunk + AIMessageChunk(
                    "", usage_metadata=usage(i + 1), usage_running_total=True
                )
        return chunks

    def _produce(self, i: int, chunk: AIMessageChunk) -> AIMessageChunk:
        if self.error_after is not None and i == self.error_after:
            error = self.error
            if error is None:
                raise ProviderError(f"FakeChatModel failed after {i} chunks")
            raise error() if isinstance(error, type) else error
        with self._lock:
            self.chunks_produced += 1
        return chunk

    # -- the hooks ------------------------------------------------------------------------

    def _stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        for i, chunk in enumerate(self._script(messages, kwargs)):
            if self.delay:
                import time

                time.sleep(self.delay)
            yield self._produce(i, chunk)

    async def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        for i, chunk in enumerate(self._script(messages, kwargs)):
            if self.delay:
                await _sleep(self.delay)
            yield self._produce(i, chunk)

    def _call(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AIMessage:
        chunks = [self._produce(i, c) for i, c in enumerate(self._script(messages, kwargs))]
        total = chunks[0]
        for chunk in chunks[1:]:
            total = total + chunk
        return total.to_message()

    async def _acall(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AIMessage:
        return self._call(messages, stop, **kwargs)
