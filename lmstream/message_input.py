"""Turning what people pass a chat model into messages: strings, ``(role, content)``
tuples, ``{"role", "content"}`` dicts, prompt values and LangChain's message objects.
Also the chat result shapes callback handlers receive."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lmstream.chunks import Generation
from lmstream.errors import InvalidInputError
from lmstream.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

__all__ = [
    "ChatGeneration",
    "ChatGenerationChunk",
    "ChatResult",
    "convert_to_messages",
    "get_buffer_string",
    "messages_to_dicts",
]

_CLASSES: dict[str, type[BaseMessage]] = {
    "human": HumanMessage,
    "user": HumanMessage,
    "ai": AIMessage,
    "assistant": AIMessage,
    "system": SystemMessage,
    "developer": SystemMessage,
    "tool": ToolMessage,
}
_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def _make(role: str, content: Any, extra: Mapping[str, Any]) -> BaseMessage:
    cls = _CLASSES.get(role.lower())
    if cls is None:
        raise InvalidInputError(
            f"Unknown message role {role!r}: use one of {sorted(_CLASSES)} (or a message object)"
        )
    if content is None:
        content = ""
    if not isinstance(content, (str, list)):
        raise InvalidInputError(f"message content must be a str or a list, not {content!r}")
    kwargs = {k: extra[k] for k in ("id", "name") if extra.get(k) is not None}
    if cls is ToolMessage:
        call_id = extra.get("tool_call_id")
        if not isinstance(call_id, str):
            raise InvalidInputError("a tool message needs a 'tool_call_id'")
        return ToolMessage(content, tool_call_id=call_id, **kwargs)
    if cls is AIMessage and extra.get("tool_calls"):
        return AIMessage(content, tool_calls=_calls(extra["tool_calls"]), **kwargs)
    return cls(content, **kwargs)


def _calls(calls: Any) -> list[Any]:
    """Tool calls in LangChain's shape or OpenAI's (``function.arguments`` as a string)."""
    import json

    out = []
    for call in calls:
        function = call.get("function")
        if isinstance(function, Mapping):
            args = function.get("arguments") or "{}"
            out.append({"name": function.get("name"), "id": call.get("id"), "type": "tool_call",
                        "args": json.loads(args) if isinstance(args, str) else args})  # fmt: skip
        else:
            out.append({"type": "tool_call", **call})
    return out


def _one(value: Any) -> BaseMessage:
    if isinstance(value, BaseMessage):
        return value
    if isinstance(value, str):
        return HumanMessage(value)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
        return _make(value[0], value[1], {})
    if isinstance(value, Mapping):
        role = value.get("role", value.get("type"))
        if isinstance(role, str) and "content" in value:
            return _make(role, value["content"], value)
    kind, content = getattr(value, "type", None), getattr(value, "content", None)
    if isinstance(kind, str) and content is not None:  # LangChain's message objects
        extra = {k: getattr(value, k, None) for k in ("id", "name", "tool_call_id", "tool_calls")}
        return _make(kind, content, extra)
    raise InvalidInputError(
        f"Cannot read a message from {value!r}: use a message, (role, content), "
        "{'role': ..., 'content': ...} or a string"
    )


def convert_to_messages(value: Any) -> list[BaseMessage]:
    """The messages a chat model's input stands for; a typed error when it is none."""
    if isinstance(value, str):
        return [HumanMessage(value)]
    if isinstance(value, BaseMessage):
        return [value]
    to_messages = getattr(value, "to_messages", None)
    if callable(to_messages):
        return [_one(m) for m in to_messages()]
    messages = getattr(value, "messages", None)
    if isinstance(messages, (list, tuple)):
        return [_one(m) for m in messages]
    to_string = getattr(value, "to_string", None)
    if callable(to_string):
        return [HumanMessage(to_string())]
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return [_one(m) for m in value]
    raise InvalidInputError(
        f"Invalid input type {type(value)}. Must be a PromptValue, str, or list of messages."
    )


def messages_to_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """OpenAI-style ``{"role", "content"}`` dicts for messages."""
    out = []
    for message in messages:
        item: dict[str, Any] = {"role": _ROLES.get(message.type, message.type)}
        item["content"] = message.content
        if isinstance(message, ToolMessage):
            item["tool_call_id"] = message.tool_call_id
        if isinstance(message, AIMessage) and message.tool_calls:
            item["tool_calls"] = message.tool_calls
        out.append(item)
    return out


_TITLES = {"human": "Human", "ai": "AI", "system": "System", "tool": "Tool"}


def get_buffer_string(messages: Sequence[BaseMessage]) -> str:
    """Messages as one text, a ``Role: text`` line each (how text models see a chat)."""
    return "\n".join(f"{_TITLES.get(m.type, m.type)}: {m.text}" for m in messages)


class ChatGeneration(Generation):
    """One candidate of a chat model: the message and its text."""

    __slots__ = ("message",)

    def __init__(self, message: BaseMessage, generation_info: dict[str, Any] | None = None):
        super().__init__(message.text, generation_info)
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChatGeneration) and (self.message, self.generation_info) == (
            other.message,
            other.generation_info,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(message={self.message!r})"

    @property
    def type(self) -> str:
        """``"ChatGeneration"``, as in the reference schema."""
        return "ChatGeneration"

    def to_dict(self) -> dict[str, Any]:
        """The serialised shape, with the message."""
        out = super().to_dict()
        out["type"] = self.type
        out["message"] = self.message.to_dict()
        return out


class ChatGenerationChunk(ChatGeneration):
    """A piece of a chat generation (what LangChain-style ``_stream`` hooks yield)."""

    __slots__ = ()

    def __add__(self, other: ChatGenerationChunk) -> ChatGenerationChunk:
        message = self.message + other.message  # type: ignore[operator]
        return ChatGenerationChunk(message)


class ChatResult:
    """What a LangChain-style ``_generate`` hook returns: one or more generations."""

    __slots__ = ("generations", "llm_output")

    def __init__(
        self, generations: list[ChatGeneration], llm_output: dict[str, Any] | None = None
    ) -> None:
        self.generations = generations
        self.llm_output = llm_output

    def __repr__(self) -> str:
        return f"ChatResult(generations={self.generations!r})"


def as_message_chunk(value: Any) -> AIMessageChunk:
    """What a chat hook returned or yielded, as an ``AIMessageChunk``."""
    if type(value) is AIMessageChunk:
        return value
    if isinstance(value, str):
        return AIMessageChunk(value)
    if isinstance(value, ChatResult):
        value = value.generations[0]
    message = getattr(value, "message", value)
    if isinstance(message, AIMessageChunk):
        return message
    if isinstance(message, AIMessage):
        return AIMessageChunk(
            message.content, id=message.id, name=message.name,
            tool_calls=list(message.tool_calls) or None,
            invalid_tool_calls=list(message.invalid_tool_calls) or None,
            usage_metadata=message.usage_metadata,
            response_metadata=message._response_metadata,
            additional_kwargs=message._additional_kwargs,
        )  # fmt: skip
    raise TypeError(f"a chat model returned {type(value).__name__}, expected AIMessage or str")
