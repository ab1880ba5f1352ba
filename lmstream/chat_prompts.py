"""Chat prompt templates: a list of message templates (with ``{variables}`` in any of
them) and placeholders for whole message lists, formatted into a ``ChatPromptValue``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from lmstream._execution import acall_with_config, call_with_config
from lmstream._types import RunnableConfig
from lmstream.errors import InvalidInputError
from lmstream.message_input import convert_to_messages
from lmstream.messages import BaseMessage
from lmstream.prompts import ChatPromptValue, PromptTemplate
from lmstream.runnable import Runnable
from lmstream.runs import Run

__all__ = ["ChatPromptTemplate", "MessagesPlaceholder"]


class MessagesPlaceholder:
    """Where a list of messages from the input goes (a chat history, say)."""

    def __init__(self, variable_name: str, *, optional: bool = False) -> None:
        self.variable_name = variable_name
        self.optional = optional

    def __repr__(self) -> str:
        return f"MessagesPlaceholder(variable_name={self.variable_name!r})"

    def format_messages(self, values: Mapping[str, Any]) -> list[BaseMessage]:
        """The messages the input holds under ``variable_name``."""
        value = values.get(self.variable_name)
        if value is None:
            if self.optional:
                return []
            raise InvalidInputError(
                f"the prompt expects a list of messages under {self.variable_name!r}"
            )
        return convert_to_messages(value if isinstance(value, (list, tuple)) else [value])


class _MessageTemplate:
    """One message whose content is an f-string template."""

    def __init__(self, role: str, template: str) -> None:
        self.role = role
        self.prompt = PromptTemplate.from_template(template)

    @property
    def input_variables(self) -> list[str]:
        return self.prompt.input_variables

    def format_messages(self, values: Mapping[str, Any]) -> list[BaseMessage]:
        return convert_to_messages([(self.role, self.prompt.format(**values))])


_Part = Any  # a message, a _MessageTemplate or a MessagesPlaceholder


def _part(item: Any) -> _Part:
    if isinstance(item, (BaseMessage, MessagesPlaceholder, _MessageTemplate)):
        return item
    if isinstance(item, str):
        return _MessageTemplate("human", item)
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str):
        role, template = item
        if role == "placeholder":
            name = str(template).strip("{}")
            return MessagesPlaceholder(name, optional=True)
        if isinstance(template, str):
            convert_to_messages([(role, "")])  # a typed error for an unknown role
            return _MessageTemplate(role, template)
    if isinstance(item, Mapping) and isinstance(item.get("content"), str):
        return _part((item.get("role", "human"), item["content"]))
    raise InvalidInputError(
        f"Cannot make a message template from {item!r}: use (role, template), a message "
        "or a MessagesPlaceholder"
    )


class ChatPromptTemplate(Runnable[Any, ChatPromptValue]):
    """Message templates formatted into a ``ChatPromptValue`` for a chat model."""

    def __init__(
        self, messages: Sequence[Any], partial_variables: Mapping[str, Any] | None = None
    ) -> None:
        self.messages: list[_Part] = [_part(m) for m in messages]
        self.partial_variables = dict(partial_variables or {})

    @classmethod
    def from_messages(cls, messages: Sequence[Any]) -> ChatPromptTemplate:
        """A template from ``(role, template)`` tuples, messages, strings and placeholders."""
        return cls(messages)

    @classmethod
    def from_template(cls, template: str) -> ChatPromptTemplate:
        """One human message template."""
        return cls([("human", template)])

    @property
    def input_variables(self) -> list[str]:
        """The variables an input must give (placeholders that are required included)."""
        names: list[str] = []
        for part in self.messages:
            if isinstance(part, _MessageTemplate):
                names += part.input_variables
            elif isinstance(part, MessagesPlaceholder) and not part.optional:
                names.append(part.variable_name)
        return [n for n in dict.fromkeys(names) if n not in self.partial_variables]

    def partial(self, **values: Any) -> ChatPromptTemplate:
        """A template with some variables filled in (values, or callables called at format)."""
        return ChatPromptTemplate(self.messages, {**self.partial_variables, **values})

    def _values(self, given: Mapping[str, Any]) -> dict[str, Any]:
        values = {
            k: v() if isinstance(v, Callable) else v  # type: ignore[arg-type]
            for k, v in self.partial_variables.items()
        }
        values.update(given)
        missing = [v for v in self.input_variables if v not in values]
        if missing:
            raise InvalidInputError(
                f"Input to ChatPromptTemplate is missing variables {missing}. "
                f"Expected: {self.input_variables} Received: {sorted(given)}"
            )
        return values

    def format_messages(self, **kwargs: Any) -> list[BaseMessage]:
        """The messages, filled in."""
        values = self._values(kwargs)
        out: list[BaseMessage] = []
        for part in self.messages:
            out += [part] if isinstance(part, BaseMessage) else part.format_messages(values)
        return out

    def format_prompt(self, **kwargs: Any) -> ChatPromptValue:
        """The filled-in messages as a prompt value."""
        return ChatPromptValue(self.format_messages(**kwargs))

    def _input(self, input: Any) -> dict[str, Any]:
        if isinstance(input, Mapping):
            return dict(input)
        names = self.input_variables
        if len(names) == 1:
            return {names[0]: input}
        raise InvalidInputError(f"Expected a dict with keys {names}, got {type(input).__name__}")

    def _format(self, input: Any, run: Run, config: RunnableConfig) -> ChatPromptValue:
        return self.format_prompt(**self._input(input))

    def invoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> ChatPromptValue:
        """Format the template with ``input`` (a dict, or the value of the one variable)."""
        return call_with_config(self, self._format, input, config, run_type="prompt")

    async def ainvoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> ChatPromptValue:
        """Async ``invoke`` (formatting never blocks, so no thread)."""

        async def fmt(value: Any, run: Run, cfg: RunnableConfig) -> ChatPromptValue:
            return self._format(value, run, cfg)

        return await acall_with_config(self, fmt, input, config, run_type="prompt")

    def __repr__(self) -> str:
        return f"ChatPromptTemplate(messages={self.messages!r})"
