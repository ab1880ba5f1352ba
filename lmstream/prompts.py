"""Prompt values, message lists as prompts, and ``PromptTemplate``."""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any

from lmstream import _mustache
from lmstream._execution import acall_with_config, call_with_config
from lmstream._types import RunnableConfig
from lmstream.errors import InvalidInputError, MissingVariablesError
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

    def to_messages(self) -> list[Any]:
        """The messages."""
        return list(self.messages)

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


_FORMATS = ("f-string", "mustache", "jinja2")


class PromptTemplate(Runnable[Any, StringPromptValue]):
    """A string template formatted into a ``StringPromptValue``: ``{name}`` fields
    (``template_format="f-string"``), ``{{name}}`` (``"mustache"``) or Jinja2 (``"jinja2"``,
    sandboxed, where jinja2 is installed). Its ``input_variables`` are the template's
    variables, sorted, less the ``partial_variables`` (values, or functions called at
    each format)."""

    def __init__(
        self,
        template: str,
        input_variables: Sequence[str] | None = None,
        *,
        template_format: str = "f-string",
        partial_variables: Mapping[str, Any] | None = None,
        validate_template: bool = False,
        name: str | None = None,
    ) -> None:
        if not isinstance(template, str):
            raise InvalidInputError(f"template must be a str, not {type(template).__name__}")
        if template_format not in _FORMATS:
            raise InvalidInputError(f"Unsupported template format: {template_format}")
        self.template = template
        self.template_format = template_format
        self.partial_variables: dict[str, Any] = dict(partial_variables or {})
        self.validate_template = validate_template
        self.name = name
        found = _variables(template, template_format)
        if validate_template:
            _validate(found, template_format, input_variables, self.partial_variables)
        self.input_variables = [v for v in found if v not in self.partial_variables]

    @classmethod
    def from_template(
        cls,
        template: str,
        *,
        template_format: str = "f-string",
        partial_variables: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> PromptTemplate:
        """A template whose variables are the fields it contains."""
        return cls(
            template,
            template_format=template_format,
            partial_variables=partial_variables,
            **kwargs,
        )

    def partial(self, **kwargs: Any) -> PromptTemplate:
        """A copy with some variables filled in (values, or functions called at format)."""
        return PromptTemplate(
            self.template,
            template_format=self.template_format,
            partial_variables={**self.partial_variables, **kwargs},
            name=self.name,
        )

    def format(self, **kwargs: Any) -> str:
        """Fill the template; a missing variable raises ``MissingVariablesError`` (a
        ``KeyError``)."""
        values = {k: v() if callable(v) else v for k, v in self.partial_variables.items()}
        values.update(kwargs)
        missing = [v for v in self.input_variables if v not in values]
        if missing and self.template_format == "f-string":
            raise self._missing(missing, values)
        if self.template_format == "mustache":
            return _mustache.render(self.template, values)
        if self.template_format == "jinja2":
            return str(_jinja2().from_string(self.template).render(**values))
        return self.template.format(**values)

    def _missing(self, missing: list[str], values: Mapping[str, Any]) -> MissingVariablesError:
        return MissingVariablesError(
            f"Input to PromptTemplate is missing variables {missing}. "
            f"Expected: {self.input_variables} Received: {sorted(values)}"
        )

    def _values(self, input: Any) -> dict[str, Any]:
        if isinstance(input, Mapping):
            values = dict(input)
        elif len(self.input_variables) == 1:
            values = {self.input_variables[0]: input}
        else:
            raise InvalidInputError(
                f"Expected a dict with keys {self.input_variables}, got {type(input).__name__}"
            )
        missing = [v for v in self.input_variables if v not in values]
        if missing:
            raise self._missing(missing, values)
        return values

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

    def __add__(self, other: Any) -> PromptTemplate:
        """The two templates one after the other (``other`` may be a str)."""
        if isinstance(other, str):
            other = PromptTemplate(other, template_format=self.template_format)
        if not isinstance(other, PromptTemplate):
            return NotImplemented
        if other.template_format != self.template_format:
            raise InvalidInputError("Cannot add templates of different formats")
        both = set(self.partial_variables) & set(other.partial_variables)
        if both:
            raise InvalidInputError(f"Cannot have same variable partialed twice: {sorted(both)}")
        return PromptTemplate(
            self.template + other.template,
            template_format=self.template_format,
            partial_variables={**self.partial_variables, **other.partial_variables},
        )

    def _key(self) -> tuple[Any, ...]:
        return (
            self.template,
            self.template_format,
            self.input_variables,
            self.partial_variables,
            self.validate_template,
            self.name,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PromptTemplate) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.template, self.template_format))

    def __repr__(self) -> str:
        fmt = (
            ""
            if self.template_format == "f-string"
            else f", template_format={self.template_format!r}"
        )
        return (
            f"PromptTemplate(input_variables={self.input_variables!r}, "
            f"partial_variables={self.partial_variables!r}, template={self.template!r}{fmt})"
        )


def _jinja2() -> Any:
    try:
        from jinja2.sandbox import SandboxedEnvironment
    except ImportError:
        raise ImportError(
            'template_format="jinja2" needs jinja2: pip install jinja2 '
            "(and never format jinja2 templates from untrusted sources)"
        ) from None
    return SandboxedEnvironment()


def _validate(
    found: list[str], fmt: str, declared: Sequence[str] | None, partials: Mapping[str, Any]
) -> None:
    if fmt == "mustache":
        raise InvalidInputError("Mustache templates cannot be validated.")
    if declared is None:
        raise InvalidInputError("Input variables must be provided to validate the template.")
    missing = sorted(set(found) - set(declared) - set(partials))
    if missing:
        raise InvalidInputError(
            f"Invalid prompt schema; the template uses {missing}, missing from "
            f"input_variables {list(declared)}"
        )


def _variables(template: str, fmt: str) -> list[str]:
    if fmt == "mustache":
        return _mustache.variables(template)
    if fmt == "jinja2":
        from jinja2 import meta

        return sorted(meta.find_undeclared_variables(_jinja2().parse(template)))
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidInputError(f"invalid template {template!r}: {exc}") from exc
    for _, field, spec, _ in parsed:
        if field is None:
            continue
        if not field or field.isdigit():
            raise InvalidInputError(f"template fields must be named: {template!r}")
        if any(c in field for c in ".[]"):
            raise InvalidInputError(
                f"Invalid variable name {field!r} in f-string template: variable names "
                "cannot contain attribute access (.) or indexing ([])"
            )
        if spec and ("{" in spec or "}" in spec):
            raise InvalidInputError(
                "Invalid format specifier in f-string template: nested fields are not allowed"
            )
        names.add(field)
    return sorted(names)
