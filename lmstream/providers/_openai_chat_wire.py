"""The OpenAI chat completions protocol, pure: messages out, response bytes in, message
chunks or typed errors out.

``messages_out`` writes messages as ``/v1/chat/completions`` wants them. ``ChatStream``
turns a streamed answer into ``AIMessageChunk``s: text, reasoning (servers name it
``reasoning_content`` or ``reasoning``, some both: the first set is read) and tool-call
fragments, keyed by their ``index`` (a fragment without one continues the last call, or
starts a new one when it brings an id). Usage is kept as the server reports it (the last
report wins, so a server that sends running totals on every chunk is not counted twice)
and goes on the last chunk with the finish reason. A stream counts as finished only with
a ``finish_reason`` and ``[DONE]``, as in ``_openai_wire``. ``parse_chat`` reads a whole
answer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from lmstream._sse import SSEEvent
from lmstream.chunks import Usage
from lmstream.errors import ProtocolError
from lmstream.messages import AIMessage, AIMessageChunk, BaseMessage, ToolCallChunk, UsageMetadata
from lmstream.providers._frames import FrameReader
from lmstream.providers._http import DEFAULT_SIZES, SizeLimits
from lmstream.providers._openai_wire import (
    _choice,
    _finish,
    _payload,
    event_payload,
    finished,
    response_info,
    token_details,
    usage_of,
)

__all__ = ["ChatStream", "messages_out", "parse_chat"]

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}
_REASONING = ("reasoning_content", "reasoning")


def _content(content: Any) -> Any:
    """Content for the wire: text as is, blocks without reasoning (not sent back)."""
    if isinstance(content, str):
        return content
    blocks = [b for b in content if not (isinstance(b, dict) and b.get("type") == "reasoning")]
    if all(isinstance(b, dict) and b.get("type") == "text" for b in blocks):
        return "".join(b["text"] for b in blocks)
    return [{"type": "text", "text": b} if isinstance(b, str) else b for b in blocks]


def _call_out(call: Any) -> dict[str, Any]:
    return {"id": call.get("id"), "type": "function", "function": {
        "name": call.get("name"), "arguments": json.dumps(call.get("args", {}))}}  # fmt: skip


def messages_out(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """Messages as ``{"role", "content", ...}`` dicts of the chat completions API."""
    out = []
    for message in messages:
        item: dict[str, Any] = {"role": _ROLES.get(message.type, message.type)}
        item["content"] = _content(message.content)
        if message.name:
            item["name"] = message.name
        tool_call_id = getattr(message, "tool_call_id", None)
        if tool_call_id is not None:
            item["tool_call_id"] = tool_call_id
        if isinstance(message, AIMessage) and message.tool_calls:
            item["tool_calls"] = [_call_out(c) for c in message.tool_calls]
            item["content"] = item["content"] or None
        out.append(item)
    return out


def _text(value: Any, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProtocolError(f"{what} is not a string: {value!r}"[:200])
    return value


def _reasoning(delta: dict[str, Any]) -> str:
    """The reasoning under the first of its names that is set (a server may send both)."""
    for key in _REASONING:
        if delta.get(key) is not None:
            return _text(delta[key], key)
    return ""


def usage_metadata(usage: dict[str, Any]) -> UsageMetadata:
    """LangChain's usage metadata for an OpenAI usage object (checked, with details)."""
    counts: Usage = usage_of(usage)
    out: UsageMetadata = {"input_tokens": counts.prompt_tokens,
                          "output_tokens": counts.completion_tokens,
                          "total_tokens": counts.total_tokens}  # fmt: skip
    out.update(token_details(usage))  # type: ignore[typeddict-item]
    return out


def _chunk(text: str, reasoning: str, calls: list[ToolCallChunk], meta: Any) -> AIMessageChunk:
    content: Any = text
    if reasoning:
        content = [{"type": "reasoning", "reasoning": reasoning}]
        if text:
            content.append({"type": "text", "text": text})
    return AIMessageChunk(content, tool_call_chunks=calls or None, response_metadata=meta)


class ChatStream(FrameReader[AIMessageChunk]):
    """What a streamed chat completion has said so far; feed it the body's bytes."""

    __slots__ = ("_calls", "_last_index", "estimated", "finish_reason", "named", "usage")

    def __init__(self, limits: SizeLimits = DEFAULT_SIZES) -> None:
        super().__init__(limits)
        self.finish_reason: str | None = None
        self.usage: UsageMetadata | None = None
        self.estimated = False  # usage counted by the server's lmstream, not its model
        self.named: dict[str, Any] = {}  # the answer's id and model, from its first event
        self._calls = 0  # tool calls started
        self._last_index: int | None = None

    def _index(self, fragment: dict[str, Any]) -> int:
        index = fragment.get("index")
        if index is None:  # a server that numbers nothing: an id starts a new call
            if fragment.get("id") is None and self._last_index is not None:
                return self._last_index
            index = self._calls
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ProtocolError(f"a tool call with a bad index: {fragment!r}"[:200])
        self._calls = max(self._calls, index + 1)
        self._last_index = index
        return index

    def _tool_calls(self, delta: dict[str, Any]) -> list[ToolCallChunk]:
        fragments = delta.get("tool_calls") or []
        if not isinstance(fragments, list):
            raise ProtocolError(f"tool_calls is not a list: {fragments!r}"[:200])
        out: list[ToolCallChunk] = []
        for fragment in fragments:
            function = fragment.get("function") if isinstance(fragment, dict) else None
            if not isinstance(function, dict | None):
                raise ProtocolError(f"a malformed tool call: {fragment!r}"[:200])
            function = function or {}
            out.append({"name": _text(function.get("name"), "a tool name") or None,
                        "args": _text(function.get("arguments"), "tool arguments"),
                        "id": fragment.get("id"), "index": self._index(fragment),
                        "type": "tool_call_chunk"})  # fmt: skip
        return out

    def _event(self, event: SSEEvent) -> AIMessageChunk | None:
        payload = event_payload(self, event)
        if payload is None:
            return None
        if payload.get("usage") is not None:
            self.usage = usage_metadata(payload["usage"])
            self.estimated = payload["usage"].get("estimated") is True
        if not self.named:
            response_info(payload, self.named)
        choice = _choice(payload)
        if choice is None:
            return None
        if choice.get("finish_reason") is not None:
            self.finish_reason = _finish(choice["finish_reason"], payload)
        delta = {} if choice.get("delta") is None else choice["delta"]
        if not isinstance(delta, dict):
            raise ProtocolError(f"a delta that is not an object: {delta!r}"[:200])
        text, reasoning = _text(delta.get("content"), "content"), _reasoning(delta)
        calls, logprobs = self._tool_calls(delta), choice.get("logprobs")
        if not (text or reasoning or calls or logprobs):
            return None
        chunk = _chunk(text, reasoning, calls, {"logprobs": logprobs} if logprobs else None)
        chunk.id = self.named.get("id")  # the answer's id is the message's, as in LangChain
        return chunk

    def _last(self) -> AIMessageChunk:
        """The last chunk (finish reason, model, usage), or why the stream is incomplete."""
        meta: dict[str, Any] = {"finish_reason": finished(self, self.finish_reason), **self.named}
        if self.estimated:
            meta["usage_estimated"] = True
        return AIMessageChunk("", response_metadata=meta, usage_metadata=self.usage)


def parse_chat(raw: bytes) -> AIMessage:
    """A whole (non-streamed) chat completion body as an ``AIMessage``."""
    payload = _payload(raw.decode("utf-8", "replace"))
    choice = _choice(payload)
    if choice is None or choice.get("finish_reason") is None:
        raise ProtocolError(f"a chat completion without a finished choice: {payload!r}"[:200])
    message = choice.get("message")
    if not isinstance(message, dict):
        raise ProtocolError(f"a choice without a message: {choice!r}"[:200])
    meta: dict[str, Any] = {"finish_reason": _finish(choice["finish_reason"], payload)}
    response_info(payload, meta)
    if choice.get("logprobs"):
        meta["logprobs"] = choice["logprobs"]
    usage: Any = payload.get("usage")
    counts = None if usage is None else usage_metadata(usage)  # checked before it is read
    if counts is not None and usage.get("estimated") is True:
        meta["usage_estimated"] = True
    calls = ChatStream()._tool_calls(message)
    chunk = _chunk(_text(message.get("content"), "content"), _reasoning(message), calls, meta)
    if counts is not None:
        chunk.usage_metadata = counts
    chunk.id = meta.get("id")
    return chunk.to_message()
