"""Tools for chat models, in OpenAI's tool schema: from pydantic models, ``TypedDict``s,
typed functions and JSON-schema dicts. Converted once, when tools are bound."""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping
from typing import Any

from lmstream.errors import InvalidInputError

__all__ = ["convert_to_openai_tool", "is_typeddict", "tool_choice_of"]

_JSON_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "array",
    dict: "object",
}


def _function(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    function: dict[str, Any] = {"name": name, "parameters": parameters}
    if description:
        function["description"] = description
    return {"type": "function", "function": function}


def _from_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    if schema.get("type") == "function" and isinstance(schema.get("function"), Mapping):
        return {"type": "function", "function": dict(schema["function"])}
    if "name" in schema and isinstance(schema.get("parameters"), Mapping):
        return _function(
            str(schema["name"]), schema.get("description", ""), dict(schema["parameters"])
        )
    name = schema.get("title")
    if not isinstance(name, str):
        raise InvalidInputError(
            "a JSON-schema tool needs a 'title' (its name), or use OpenAI's "
            "{'type': 'function', 'function': {...}} shape"
        )
    parameters = {k: v for k, v in schema.items() if k not in ("title", "description")}
    return _function(name, schema.get("description", ""), parameters)


def _annotation_schema(annotation: Any) -> dict[str, Any]:
    origin = typing.get_origin(annotation) or annotation
    kind = _JSON_TYPES.get(origin)
    if kind is None:
        return {}
    schema: dict[str, Any] = {"type": kind}
    args = typing.get_args(annotation)
    if kind == "array" and args:
        schema["items"] = _annotation_schema(args[0])
    return schema


def _from_function(fn: Callable[..., Any]) -> dict[str, Any]:
    import inspect  # when tools are bound, not on import (it pulls in ast, dis, tokenize)

    hints = typing.get_type_hints(fn)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        properties[name] = _annotation_schema(hints.get(name, Any))
        if param.default is param.empty:
            required.append(name)
    doc = inspect.getdoc(fn) or ""
    parameters = {"type": "object", "properties": properties, "required": required}
    return _function(fn.__name__, doc.split("\n\n")[0].strip(), parameters)


def is_typeddict(tool: Any) -> bool:
    """Whether ``tool`` is a ``TypedDict`` class (``typing``'s or ``typing_extensions``')."""
    return isinstance(tool, type) and issubclass(tool, dict) and hasattr(tool, "__required_keys__")


def _from_typeddict(tool: Any) -> dict[str, Any]:
    import inspect

    from pydantic import PydanticUserError, TypeAdapter

    try:
        schema = dict(TypeAdapter(tool).json_schema())
    except PydanticUserError:  # typing.TypedDict before 3.12: its fields one by one
        hints = typing.get_type_hints(tool)
        properties = {name: _annotation_schema(hint) for name, hint in hints.items()}
        required = [name for name in hints if name in tool.__required_keys__]
        schema = {"type": "object", "properties": properties, "required": required}
        if doc := inspect.getdoc(tool):
            schema["description"] = doc
    schema["title"] = tool.__name__
    return _from_schema(schema)


def convert_to_openai_tool(tool: Any) -> dict[str, Any]:
    """``{"type": "function", "function": {name, description, parameters}}`` for a
    pydantic model class, a ``TypedDict``, a typed function, a JSON-schema dict or an
    OpenAI tool dict."""
    if isinstance(tool, Mapping):
        return _from_schema(tool)
    if is_typeddict(tool):
        return _from_typeddict(tool)
    schema_of = getattr(tool, "model_json_schema", None)
    if isinstance(tool, type) and callable(schema_of):  # a pydantic model
        schema = dict(schema_of())
        schema["title"] = tool.__name__
        if not schema.get("description"):
            schema.pop("description", None)
        return _from_schema(schema)
    if callable(tool) and hasattr(tool, "__name__"):
        return _from_function(tool)
    raise InvalidInputError(
        f"Cannot make a tool from {tool!r}: use a pydantic model, a typed function or a "
        "JSON-schema dict"
    )


def tool_choice_of(choice: Any, tools: list[dict[str, Any]]) -> Any:
    """OpenAI's ``tool_choice`` for LangChain's forms: a tool name, "auto", "none",
    "any"/"required", ``True`` (the only tool), or a dict as it is."""
    if choice is None or isinstance(choice, Mapping):
        return choice
    names = [t["function"]["name"] for t in tools]
    if choice is True:
        if len(names) != 1:
            raise InvalidInputError("tool_choice=True needs exactly one tool")
        choice = names[0]
    if choice in ("auto", "none", "required"):
        return choice
    if choice == "any":
        return "required"
    if isinstance(choice, str) and choice in names:
        return {"type": "function", "function": {"name": choice}}
    raise InvalidInputError(f"tool_choice {choice!r} names no bound tool (tools: {names})")
