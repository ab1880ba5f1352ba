"""Pure pieces of adding message chunks: content blocks, tool-call fragments, usage and
partial JSON. Every merge here is associative, so a stream adds up to the same message
however it was cut into chunks."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

__all__ = [
    "ToolCall",
    "ToolCallChunk",
    "UsageMetadata",
    "add_usage",
    "merge_content",
    "merge_tool_call_chunks",
    "parse_partial_json",
    "parse_tool_calls",
]


class ToolCall(TypedDict, total=False):
    """A complete tool call: ``{"name", "args", "id", "type": "tool_call"}``."""

    name: str
    args: dict[str, Any]
    id: str | None
    type: Literal["tool_call"]


class ToolCallChunk(TypedDict, total=False):
    """A streamed fragment of a tool call; ``args`` is a piece of a JSON string."""

    name: str | None
    args: str | None
    id: str | None
    index: int | None
    type: Literal["tool_call_chunk"]


class UsageMetadata(TypedDict, total=False):
    """Token counts, LangChain's shape; details (``cache_read``, ``reasoning``...) optional."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_token_details: dict[str, int]
    output_token_details: dict[str, int]


def _blocks_text(content: Any, kind: str) -> str:
    if type(content) is str:
        return content if kind == "text" else ""
    parts = []
    for block in content:
        if isinstance(block, str):
            if kind == "text":
                parts.append(block)
        elif block.get("type") == kind:
            parts.append(str(block.get(kind, "")))
    return "".join(parts)


_TEXT_KEYS = {"text": "text", "reasoning": "reasoning"}


def _block(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"type": "text", "text": value}
    return dict(value)


def _joinable(left: dict[str, Any], right: dict[str, Any]) -> str | None:
    """The key whose text joins when ``right`` continues ``left``, else None."""
    kind = left.get("type")
    key = _TEXT_KEYS.get(kind) if isinstance(kind, str) else None
    if key is None or right.get("type") != kind or left.get("index") != right.get("index"):
        return None
    return key


def merge_content(left: Any, right: Any) -> Any:
    """Content of two chunks, added: strings concatenate; blocks of the same kind that
    follow each other (and share an ``index``, when they have one) join their text."""
    if type(left) is str and type(right) is str:
        return left + right
    if not right:
        return left if not isinstance(left, list) else list(left)
    if not left:
        return right if isinstance(right, str) else [_block(b) for b in right]
    out = [_block(b) for b in ([left] if isinstance(left, str) else left)]
    for item in [right] if isinstance(right, str) else right:
        block = _block(item)
        key = _joinable(out[-1], block) if out else None
        if key is None:
            out.append(block)
        else:
            joined = {**block, **out[-1]}
            joined[key] = str(out[-1].get(key, "")) + str(block.get(key, ""))
            out[-1] = joined
    return out


# -- tool-call fragments ------------------------------------------------------------------


def _owner(calls: list[dict[str, Any]], fragment: dict[str, Any]) -> int:
    """Which call a fragment belongs to (its position in ``calls``), or -1 for a new one."""
    index = fragment.get("index")
    if index is not None:
        for i, call in enumerate(calls):
            if call["index"] == index:
                return i
        return -1
    ident, name = fragment.get("id"), fragment.get("name")
    if ident:
        for i, call in enumerate(calls):
            if call["id"] == ident:
                return i
    if not calls or ident or name:  # an id or a name without an index opens a call
        return -1
    return len(calls) - 1  # a bare continuation belongs to the call opened last


def _fold(calls: list[dict[str, Any]], fragment: dict[str, Any]) -> None:
    at = _owner(calls, fragment)
    if at < 0:
        calls.append(
            {
                "name": fragment.get("name") or None,
                "args": fragment.get("args") or "",
                "id": fragment.get("id") or None,
                "index": fragment.get("index"),
                "type": "tool_call_chunk",
            }
        )
        return
    call = dict(calls[at])
    call["name"] = call["name"] or fragment.get("name") or None
    call["id"] = call["id"] or fragment.get("id") or None
    call["args"] += fragment.get("args") or ""
    calls[at] = call


def merge_tool_call_chunks(*groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool-call fragments merged into one entry per call, keyed by ``index``.

    A fragment without an index continues the call opened last (or opens one when it
    carries a new id or name); fragments sharing an index in one delta join too. The
    merge is associative: any grouping of a stream's fragments gives the same calls.
    """
    calls: list[dict[str, Any]] = []
    for group in groups:
        for fragment in group:
            _fold(calls, fragment)
    return calls


def parse_tool_calls(
    chunks: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(tool_calls, invalid_tool_calls) from merged fragments; arguments still streaming
    show as the object parsed so far."""
    valid: list[dict[str, Any]] = []
    invalid: list[dict[str, Any]] = []
    for chunk in chunks:
        args = chunk.get("args") or ""
        parsed = parse_partial_json(args) if args else {}
        if isinstance(parsed, dict):
            valid.append(
                {"name": chunk.get("name") or "", "args": parsed, "id": chunk.get("id"),
                 "type": "tool_call"}
            )  # fmt: skip
        else:
            invalid.append(
                {"name": chunk.get("name"), "args": args, "id": chunk.get("id"),
                 "error": "the arguments are not a JSON object", "type": "invalid_tool_call"}
            )  # fmt: skip
    return valid, invalid


_CLOSERS = {"{": "}", "[": "]"}


def _closed(text: str) -> str | None:
    """``text`` with its open strings, arrays and objects closed; None if malformed."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in _CLOSERS:
            stack.append(_CLOSERS[ch])
        elif ch in "}]" and (not stack or stack.pop() != ch):
            return None
    tail = text
    if in_string:
        tail = tail[:-1] if escaped else tail
        tail += '"'
    return tail + "".join(reversed(stack))


def parse_partial_json(text: str) -> Any:
    """The JSON value ``text`` starts, as far as it goes: ``'{"a": "Par'`` gives
    ``{"a": "Par"}``. Returns None when no prefix of ``text`` parses."""
    import json  # on use: it is not needed to import lmstream

    try:
        return json.loads(text)
    except ValueError:
        pass
    end = len(text)
    while end > 0:
        closed = _closed(text[:end])
        if closed is not None:
            try:
                return json.loads(closed)
            except ValueError:
                pass
        end -= 1
    return None


# -- usage --------------------------------------------------------------------------------

_COUNTS = ("input_tokens", "output_tokens", "total_tokens")
_DETAILS = ("input_token_details", "output_token_details")


def add_usage(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any] | None:
    """Token counts of two deltas, added (details key by key)."""
    if not left:
        return None if right is None else dict(right)
    if not right:
        return dict(left)
    out = {key: left.get(key, 0) + right.get(key, 0) for key in _COUNTS}
    for key in _DETAILS:
        a, b = left.get(key), right.get(key)
        if a or b:
            a, b = a or {}, b or {}
            out[key] = {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}
    return out
