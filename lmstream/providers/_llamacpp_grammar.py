"""JSON output from the embedded model: a ``response_format`` becomes a llama.cpp grammar.

``{"type": "json_schema", "json_schema": {"schema": {...}}}`` (OpenAI's form; a bare
``{"schema": ...}`` or a pydantic model class work too) constrains sampling to JSON that
matches the schema; ``{"type": "json_object"}`` to any JSON object; ``{"type": "text"}`` or
``None`` to nothing. Grammars are built once per schema (llama-cpp-python's converter).
Sampling under a grammar cannot stop mid-value on its own, but ``max_tokens`` still can:
such a stream ends with ``finish_reason="length"`` and JSON that is cut short.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

from lmstream.errors import InvalidInputError
from lmstream.settings import Rule

__all__ = ["RESPONSE_FORMAT", "gbnf", "grammar_for"]

_LOOSE_CHAR = r'char ::= [^"\\] |'
_STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'
_ANY_OBJECT = '{"type": "object"}'  # whitespace bounded, unlike JSON_GBNF's ``ws``


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and callable(getattr(value, "model_json_schema", None))


def _schema(value: Any) -> str | None:
    """The schema text a response format asks for ('' for any object; None: plain text)."""
    if value is None:
        return None
    if _is_model(value):
        return json.dumps(value.model_json_schema())
    if not isinstance(value, dict):
        raise InvalidInputError(f"response_format must be a dict, got {value!r}")
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return _ANY_OBJECT
    if kind != "json_schema":
        raise InvalidInputError(f"unknown response_format type {kind!r}")
    spec = value.get("json_schema")
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise InvalidInputError("response_format json_schema needs a 'schema' object")
    return json.dumps(schema)


def _small_ranges(node: Any) -> Any:
    """``node`` with every integer bounded on both sides (at most 1,000 values) written as
    an enum: llama-cpp-python's converter ignores ``minimum``/``maximum``."""
    if isinstance(node, list):
        return [_small_ranges(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _small_ranges(v) for k, v in node.items()}
    if node.get("type") == "integer" and "enum" not in node:
        low, high = _bound(node, "minimum", 1), _bound(node, "maximum", -1)
        if low is not None and high is not None and 0 <= high - low < 1000:
            node["enum"] = list(range(low, high + 1))
    return node


def _bound(node: dict[str, Any], name: str, step: int) -> int | None:
    exclusive = "exclusive" + name[0].upper() + name[1:]
    if isinstance(node.get(name), int):
        return int(node[name])
    if isinstance(node.get(exclusive), int):
        return int(node[exclusive]) + step
    return None


def _valid(value: Any) -> bool:
    try:
        _schema(value)
    except InvalidInputError:
        return False
    return True


RESPONSE_FORMAT = Rule(
    _valid,
    "None, a pydantic model class, {'type': 'text'}, {'type': 'json_object'} or "
    "{'type': 'json_schema', 'json_schema': {'schema': {...}}}",
)


def gbnf(schema: str) -> str:
    """The GBNF text of a JSON schema (its start rule is ``root``)."""
    try:
        text = json_schema_to_gbnf(json.dumps(_small_ranges(json.loads(schema))))
    except Exception as exc:  # the converter raises bare exceptions on what it cannot do
        raise InvalidInputError(f"cannot turn this JSON schema into a grammar: {exc}") from exc
    # the converter lets raw control characters into strings: strict JSON does not
    return str(text).replace(_LOOSE_CHAR, _STRICT_CHAR)


@lru_cache(maxsize=64)
def _grammar(schema: str) -> LlamaGrammar:
    return LlamaGrammar.from_string(gbnf(schema), verbose=False)


def grammar_for(response_format: Any) -> LlamaGrammar | None:
    """The grammar that constrains sampling to ``response_format`` (None: unconstrained)."""
    schema = _schema(response_format)
    return None if schema is None else _grammar(schema)
