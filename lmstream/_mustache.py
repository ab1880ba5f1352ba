"""Mustache templates for ``PromptTemplate(template_format="mustache")``: pure, no I/O.

The subset prompts use, rendered as the reference renders it: ``{{name}}`` (HTML-escaped:
``& < > "``), ``{{{name}}}`` and ``{{& name}}`` (raw), dotted names into dicts and lists,
``{{#section}}`` over lists, dicts and truthy values, ``{{^inverted}}``, ``{{! comments}}``,
and tags alone on their line taking the line with them. A missing name renders as
nothing. Partials and delimiter changes are refused with a clear error. Values are never
traversed as objects (only dicts, lists and tuples), so a template cannot reach into
Python internals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lmstream.errors import InvalidInputError

__all__ = ["parse", "render", "variables"]

# A parsed template: text, ("var", key, escape), or ("section", key, children, inverted).
Node = Any
_BLOCK = frozenset("#^/!")


def _tags(template: str) -> list[tuple[str, str, int, int]]:
    """``(sigil, key, start, end)`` of every tag, in order."""
    tags, pos = [], 0
    while (start := template.find("{{", pos)) >= 0:
        triple = template.startswith("{{{", start)
        close = "}}}" if triple else "}}"
        end = template.find(close, start + 2)
        if end < 0:
            raise InvalidInputError(f"unclosed mustache tag at position {start}")
        body = template[start + (3 if triple else 2) : end].strip()
        sigil = "&" if triple else (body[:1] if body[:1] in "#^/!&>=" else "")
        key = body[1:].strip() if sigil and not triple else body
        if sigil in (">", "="):
            raise InvalidInputError("mustache partials and delimiter changes are not supported")
        tags.append((sigil, key, start, end + len(close)))
        pos = end + len(close)
    return tags


def _standalone(template: str, start: int, end: int) -> tuple[int, int] | None:
    """The span of the whole line when a block tag is alone on it."""
    line_start = template.rfind("\n", 0, start) + 1
    line_end = template.find("\n", end)
    line_end = len(template) if line_end < 0 else line_end + 1
    before, after = template[line_start:start], template[end:line_end]
    if before.strip() or after.strip():
        return None
    return line_start, line_end


def parse(template: str) -> list[Node]:
    """The template as a tree of nodes; ``InvalidInputError`` if it is malformed."""
    root: list[Node] = []
    stack: list[tuple[str, list[Node], bool]] = [("", root, False)]
    pos = 0
    for sigil, key, start, end in _tags(template):
        if sigil in _BLOCK and (span := _standalone(template, start, end)):
            start, end = span[0], span[1]
        if start > pos:
            stack[-1][1].append(template[pos:start])
        pos = max(pos, end)
        if sigil in ("#", "^"):
            children: list[Node] = []
            stack[-1][1].append(("section", key, children, sigil == "^"))
            stack.append((key, children, sigil == "^"))
        elif sigil == "/":
            if len(stack) == 1 or stack[-1][0] != key:
                raise InvalidInputError(f"mustache section closed but not opened: {key!r}")
            stack.pop()
        elif sigil != "!":
            stack[-1][1].append(("var", key, sigil != "&"))
    if len(stack) > 1:
        raise InvalidInputError(f"mustache section not closed: {stack[-1][0]!r}")
    if pos < len(template):
        root.append(template[pos:])
    return root


def variables(template: str) -> list[str]:
    """The names the template reads at its top level (inside sections, names are
    looked up in the section's value first, so they are not inputs of their own)."""
    names = {node[1].split(".")[0] for node in parse(template) if not isinstance(node, str)}
    names.discard("")
    return sorted(names)


def _lookup(key: str, scopes: list[Any]) -> Any:
    if key == ".":
        return scopes[-1]
    first, *rest = key.split(".")
    for scope in reversed(scopes):
        if isinstance(scope, Mapping) and first in scope:
            value = scope[first]
            break
    else:
        return None
    for part in rest:
        if isinstance(value, Mapping):
            value = value.get(part)
        elif isinstance(value, (list, tuple)) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _escape(text: str) -> str:
    return (
        text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")
    )


def _render(nodes: list[Node], scopes: list[Any], out: list[str]) -> None:
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
            continue
        value = _lookup(node[1], scopes)
        if node[0] == "var":
            if value is None or (not value and value is not False and value != 0):
                continue
            out.append(_escape(str(value)) if node[2] else str(value))
        elif node[3]:  # inverted: only when the value is falsy or an empty list
            if not value:
                _render(node[2], scopes, out)
        elif isinstance(value, (list, tuple)):
            for item in value:
                _render(node[2], [*scopes, item], out)
        elif value:
            _render(node[2], [*scopes, value], out)


def render(template: str | Sequence[Node], data: Mapping[str, Any]) -> str:
    """The template filled from ``data``."""
    nodes = parse(template) if isinstance(template, str) else list(template)
    out: list[str] = []
    _render(nodes, [data], out)
    return "".join(out)
