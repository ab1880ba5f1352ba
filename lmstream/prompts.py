"""Prompt values, message lists as prompts, and ``PromptTemplate``."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any

from lmstream._execution import acall_with_config, call_with_config
from lmstream._types import RunnableConfig
from lmstream.errors import InvalidInputError
from lmstream.runnable import Runnable
from lmstream.runs import Run

__all__ = [
    "ChatPromptValue",
    "PromptTemplate",
    "PromptValue",
    "StringPromptValue",
    "chat_messages",
    "messages_to_string",
    "prompt_to_string",
]

_ROLES = {
    "human": "Human",
    "user": "Human",
    "ai": "AI",
    "assistant": "AI",
    "system": "System",
    "developer": "System",
    "tool": "Tool",
    "function": "Function",
}


class PromptValue:
    """A formatted prompt."""

    __slots__ = ()

    def to_string(self) -> str:
        """The prompt as one string."""
        raise NotImplementedError


class StringPromptValue(PromptValue):
    """A prompt that is a string."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StringPromptValue) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __repr__(self) -> str:
        return f"StringPromptValue(text={self.text!r})"

    def to_string(self) -> str:
        """The text."""
        return self.text


def _message_parts(message: Any) -> tuple[str, str]:
    if isinstance(message, str):
        return "human", message
    if isinstance(message, (tuple, list)) and len(message) == 2:
        return str(message[0]), str(message[1])
    if isinstance(message, Mapping):
        role = message.get("role", message.get("type"))
        if role is not None and "content" in message:
            return str(role), str(message["content"])
    role = getattr(message, "role", None) or getattr(message, "type", None)
    content = getattr(message, "content", None)
    if role is not None and content is not None:
        return str(role), str(content)
    raise InvalidInputError(
        f"Cannot read a message from {message!r}: use (role, content), "
        "{'role': ..., 'content': ...} or an object with role/type and content"
    )


def messages_to_string(messages: Sequence[Any]) -> str:
    """One line per message, ``"<Role>: <content>"``, as the reference formats chat prompts."""
    lines = []
    for message in messages:
        role, content = _message_parts(message)
        lines.append(f"{_ROLES.get(role.lower(), role)}: {content}")
    return "\n".join(lines)


class ChatPromptValue(PromptValue):
    """A prompt that is a list of messages."""

    __slots__ = ("messages",)

    def __init__(self, messages: Sequence[Any]) -> None:
        self.messages = tuple(messages)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChatPromptValue) and other.messages == self.messages

    def __hash__(self) -> int:
        return hash(self.messages)

    def __repr__(self) -> str:
        return f"ChatPromptValue(messages={self.messages!r})"

    def to_string(self) -> str:
        """The messages, one ``Role: content`` line each."""
        return messages_to_string(self.messages)


_CHAT_ROLES = {"human": "user", "ai": "assistant", "developer": "system"}


def chat_messages(value: Any) -> list[dict[str, str]] | None:
    """The turns of a message-list input (a list of messages or a ``ChatPromptValue``) as
    ``{"role": ..., "content": ...}`` dicts with the roles chat templates know (``user``,
    ``assistant``, ``system``, ...); ``None`` for any other input."""
    if isinstance(value, ChatPromptValue):
        value = value.messages
    elif isinstance(value, (str, PromptValue, bytes, bytearray)) or not isinstance(value, Sequence):
        return None
    turns = []
    for message in value:
        role, content = _message_parts(message)
        role = role.lower()
        turns.append({"role": _CHAT_ROLES.get(role, role), "content": content})
    return turns


def _checked(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"the prompt is not valid Unicode text: {exc.reason} at position {exc.start}"
        ) from None
    return text


def prompt_to_string(value: Any) -> str:
    """The prompt string for any LLM input, or a typed error naming what was wrong."""
    if isinstance(value, str):
        return _checked(value)
    if isinstance(value, PromptValue) or hasattr(value, "to_string"):
        text = value.to_string()
        if isinstance(text, str):
            return _checked(text)
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return _checked(messages_to_string(value))
    raise InvalidInputError(
        f"Invalid input type {type(value)}. Must be a PromptValue, str, or list of messages."
    )


class PromptTemplate(Runnable[Any, StringPromptValue]):
    """A string template with ``{name}`` fields, formatted into a ``StringPromptValue``."""

    def __init__(self, template: str, input_variables: Sequence[str] | None = None) -> None:
        if not isinstance(template, str):
            raise InvalidInputError(f"template must be a str, not {type(template).__name__}")
        found = _variables(template)
        self.template = template
        self.input_variables = list(input_variables) if input_variables is not None else found
        missing = set(found) - set(self.input_variables)
        if missing:
            raise InvalidInputError(f"template uses undeclared variables: {sorted(missing)}")

    @classmethod
    def from_template(cls, template: str) -> PromptTemplate:
        """A template whose variables are the ``{fields}`` it contains."""
        return cls(template)

    def format(self, **kwargs: Any) -> str:
        """Fill the template."""
        missing = [v for v in self.input_variables if v not in kwargs]
        if missing:
            raise InvalidInputError(
                f"Input to PromptTemplate is missing variables {missing}. "
                f"Expected: {self.input_variables} Received: {sorted(kwargs)}"
            )
        return self.template.format(**kwargs)

    def _values(self, input: Any) -> dict[str, Any]:
        if isinstance(input, Mapping):
            return dict(input)
        if len(self.input_variables) == 1:
            return {self.input_variables[0]: input}
        raise InvalidInputError(
            f"Expected a dict with keys {self.input_variables}, got {type(input).__name__}"
        )

    def _format(self, input: Any, run: Run, config: RunnableConfig) -> StringPromptValue:
        return StringPromptValue(self.format(**self._values(input)))

    def invoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> StringPromptValue:
        """Format the template with ``input`` (a dict, or the value of the one variable)."""
        return call_with_config(self, self._format, input, config, run_type="prompt")

    async def ainvoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> StringPromptValue:
        """Async ``invoke`` (formatting never blocks, so no thread)."""

        async def fmt(value: Any, run: Run, cfg: RunnableConfig) -> StringPromptValue:
            return self._format(value, run, cfg)

        return await acall_with_config(self, fmt, input, config, run_type="prompt")

    def __repr__(self) -> str:
        return f"PromptTemplate(template={self.template!r})"


def _variables(template: str) -> list[str]:
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidInputError(f"invalid template {template!r}: {exc}") from exc
    for _, field, _, _ in parsed:
        if field is None:
            continue
        name = field.split(".")[0].split("[")[0]
        if not name or name.isdigit():
            raise InvalidInputError(f"template fields must be named: {template!r}")
        if name not in names:
            names.append(name)
    return names
