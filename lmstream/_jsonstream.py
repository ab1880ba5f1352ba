"""Incremental JSON: one pass over each new piece of text, pure (no I/O).

``JsonStream.feed(piece)`` reads only ``piece``: the cost of a chunk does not grow with what
came before it (an open string is the one exception: its value so far is decoded again).
After each piece the stream offers

- ``partial()``: the value so far, with open strings, arrays and objects closed as far as
  they go. A key appears once its value starts; numbers and ``true``/``false``/``null``
  appear once complete, so every partial is a prefix of the final value in the JSON sense.
  Snapshots are copy-on-write: a snapshot handed out never changes afterwards, and taking
  one copies only the containers still open (shallowly).
- ``patch()``: the JSON-patch operations (RFC 6902) that turn the previous partial into
  this one (``add`` for a new key or item, ``replace`` for a growing string).
- ``finish()``: the final value, strictly validated by ``json.loads`` over the whole text.

A Markdown code fence around the value (```` ```json ````) is skipped. Control characters
inside strings are accepted, as LangChain's parser does (``json.loads(strict=False)``).
"""

from __future__ import annotations

import re
from typing import Any

from lmstream.errors import OutputParserError

__all__ = ["JsonStream", "PartialDict", "PartialList", "is_json_prefix"]


class PartialDict(dict[str, Any]):
    """A streamed JSON object; a later snapshot replaces it (it does not add to it)."""


class PartialList(list[Any]):
    """A streamed JSON array; a later snapshot replaces it (it does not add to it)."""


_WS = re.compile(r"[ \t\n\r]*")
_STRING_STOP = re.compile(r'["\\]')
_SCALAR = re.compile(r"[-+.0-9A-Za-z]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_LITERALS: dict[str, Any] = {
    "true": True,
    "false": False,
    "null": None,
    "NaN": float("nan"),
    "Infinity": float("inf"),
    "-Infinity": float("-inf"),
}
_HIGH_SURROGATE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}\Z")

# what the innermost open container (or the top level) expects next
_START, _VALUE, _FIRST_VALUE, _KEY, _FIRST_KEY, _COLON, _AFTER, _DONE, _FENCE = range(9)
# what the scanner is inside of
_NONE, _STRING, _SCALAR_TOKEN = range(3)


def _pointer(key: str | int) -> str:
    return "/" + str(key).replace("~", "~0").replace("/", "~1")


class _Frame:
    __slots__ = ("container", "is_object", "key", "path")

    def __init__(self, container: Any, is_object: bool, path: str) -> None:
        self.container = container
        self.is_object = is_object
        self.key: str | None = None  # the key whose value is being read (objects)
        self.path = path


class JsonStream:
    """Parses one JSON value as it arrives in pieces. ``feed`` returns whether it changed."""

    def __init__(self, *, patches: bool = False) -> None:
        self._parts: list[str] = []
        self._offset = 0  # characters fed before the current piece
        self._start = -1  # where the value starts in the whole text
        self._end = -1  # where it ends
        self._state = _START
        self._mode = _NONE
        self._stack: list[_Frame] = []
        self._root: Any = None
        self._has_root = False
        self._shared = False  # the open containers belong to a snapshot handed out
        self._changed = False
        self._patches = patches
        self._ops: list[dict[str, Any]] = []
        # the open string: raw text, whether it is a key, the escape still being read
        self._raw: list[str] = []
        self._is_key = False
        self._escape = 0
        self._escape_at = -1  # where the last escape starts in the raw text
        self._raw_len = 0
        self._dirty = False
        self._string_op: dict[str, Any] | None = None
        self._token = ""

    # -- public -----------------------------------------------------------------------------

    @property
    def text(self) -> str:
        """All the text fed so far."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    @property
    def started(self) -> bool:
        """Whether the value has started (a partial exists)."""
        return self._has_root

    def feed(self, piece: str) -> bool:
        """Read ``piece``; True when the partial value changed."""
        self._parts.append(piece)
        i, n = 0, len(piece)
        while i < n:
            mode = self._mode
            if mode == _STRING:
                i = self._scan_string(piece, i)
            elif mode == _SCALAR_TOKEN:
                i = self._scan_scalar(piece, i)
            elif self._state == _FENCE:
                j = piece.find("\n", i)
                if j < 0:
                    break
                i, self._state = j + 1, _START
            else:
                i = _WS.match(piece, i).end()  # type: ignore[union-attr]
                if i < n:
                    self._structural(piece[i], i)
                    i += 1
        self._offset += n
        if self._mode == _STRING and self._dirty and not self._is_key and self._stack:
            self._write_string(self._decoded_so_far())
        changed, self._changed = self._changed, False
        return changed

    def partial(self) -> Any:
        """The value so far (``None`` before it starts). It never changes once handed out."""
        self._shared = True
        return self._root

    def patch(self) -> list[dict[str, Any]]:
        """The JSON-patch operations since the last call (needs ``patches=True``)."""
        ops, self._ops = self._ops, []
        self._string_op = None
        return ops

    def finish(self) -> Any:
        """The whole value, strictly validated; ``OutputParserError`` when it is not JSON."""
        text = self.text
        if self._end < 0:
            if self._mode == _SCALAR_TOKEN and not self._stack:  # a number at the very end
                self._end = len(text)
            else:
                what = "no JSON value" if self._start < 0 else "the JSON value is cut short"
                raise OutputParserError(f"Invalid JSON output: {what}", llm_output=text)
        rest = text[self._end :].strip()
        if rest.strip("`"):
            raise OutputParserError(
                f"Invalid JSON output: text after the value: {rest[:40]!r}", llm_output=text
            )
        import json  # on use: it is not needed to import lmstream

        try:
            return json.loads(text[self._start : self._end], strict=False)
        except ValueError as exc:
            raise OutputParserError(f"Invalid JSON output: {exc}", llm_output=text) from exc

    # -- structure --------------------------------------------------------------------------

    def _fail(self, message: str) -> OutputParserError:
        return OutputParserError(f"Invalid JSON output: {message}", llm_output=self.text)

    def _structural(self, ch: str, i: int) -> None:
        state = self._state
        if state in (_VALUE, _FIRST_VALUE, _START):
            if state == _START:
                if ch == "`":
                    self._state = _FENCE
                    return
                self._start = self._offset + i
            if ch == "]" and state == _FIRST_VALUE:
                self._close(ch, i)
            else:
                self._begin_value(ch)
        elif state in (_KEY, _FIRST_KEY):
            if ch == '"':
                self._open_string(True)
            elif ch == "}" and state == _FIRST_KEY:
                self._close(ch, i)
            else:
                raise self._fail(f"expected a key, got {ch!r}")
        elif state == _COLON:
            if ch != ":":
                raise self._fail(f"expected ':', got {ch!r}")
            self._state = _VALUE
        elif state == _AFTER:
            top = self._stack[-1]
            if ch == ",":
                self._state = _KEY if top.is_object else _VALUE
            elif ch == ("}" if top.is_object else "]"):
                self._close(ch, i)
            else:
                raise self._fail(f"expected ',' or a closing bracket, got {ch!r}")
        # _DONE: what follows the value is checked by finish()

    def _begin_value(self, ch: str) -> None:
        if ch == "{" or ch == "[":
            is_object = ch == "{"
            if self._stack:
                container: Any = {} if is_object else []
            else:
                container = PartialDict() if is_object else PartialList()
            path = self._attach(container, {} if is_object else [])
            self._stack.append(_Frame(container, is_object, path))
            self._state = _FIRST_KEY if is_object else _FIRST_VALUE
        elif ch == '"':
            self._open_string(False)
        elif ch in "-0123456789tfnNI":
            self._mode = _SCALAR_TOKEN
            self._token = ch
        else:
            raise self._fail(f"expected a value, got {ch!r}")

    def _attach(self, value: Any, op_value: Any) -> str:
        """Put a new value into the innermost container (or make it the root)."""
        self._changed = True
        if not self._stack:
            self._root, self._has_root = value, True
            if self._patches:
                self._ops.append({"op": "replace", "path": "", "value": op_value})
            return ""
        self._own()
        top = self._stack[-1]
        if top.is_object:
            key = top.key
            assert key is not None
            top.container[key] = value
            path = top.path + _pointer(key)
        else:
            path = top.path + _pointer(len(top.container))
            top.container.append(value)
        if self._patches:
            self._ops.append({"op": "add", "path": path, "value": op_value})
        return path

    def _own(self) -> None:
        """Copy the open containers a snapshot shares, before changing one (copy-on-write)."""
        if not self._shared:
            return
        self._shared = False
        parent: _Frame | None = None
        for frame in self._stack:
            copy = type(frame.container)(frame.container)
            if parent is None:
                self._root = copy
            elif parent.is_object:
                assert parent.key is not None
                parent.container[parent.key] = copy
            else:
                parent.container[-1] = copy
            frame.container = copy
            parent = frame

    def _close(self, ch: str, i: int) -> None:
        self._stack.pop()
        self._value_done(i + 1)

    def _value_done(self, end: int) -> None:
        if self._stack:
            self._state = _AFTER
        else:
            self._state = _DONE
            self._end = self._offset + end

    # -- strings ----------------------------------------------------------------------------

    def _open_string(self, is_key: bool) -> None:
        self._mode = _STRING
        self._is_key = is_key
        self._raw = []
        self._raw_len = 0
        self._escape = 0
        self._escape_at = -1
        self._dirty = False
        if not is_key and self._stack:
            self._attach("", "")
            if self._patches:
                self._string_op = self._ops[-1]

    def _scan_string(self, piece: str, i: int) -> int:
        n = len(piece)
        while i < n:
            if self._escape:
                take = min(self._escape, n - i)
                if (
                    self._escape == 1
                    and piece[i] == "u"
                    and not self._raw_len - self._escape_at - 1
                ):
                    take, self._escape = 1, 5
                self._escape -= take
                self._add_raw(piece[i : i + take])
                i += take
                continue
            m = _STRING_STOP.search(piece, i)
            if m is None:
                self._add_raw(piece[i:])
                return n
            j = m.start()
            if j > i:
                self._add_raw(piece[i:j])
            if piece[j] == '"':
                self._end_string(j)
                return j + 1
            self._escape_at, self._escape = self._raw_len, 1
            self._add_raw("\\")
            i = j + 1
        return i

    def _add_raw(self, text: str) -> None:
        self._raw.append(text)
        self._raw_len += len(text)
        self._dirty = True

    def _decode(self, raw: str) -> str:
        from json.decoder import scanstring  # type: ignore[attr-defined]

        try:
            value: str = scanstring(raw + '"', 0, False)[0]
        except ValueError as exc:
            raise self._fail(f"bad string {raw[:40]!r}: {exc}") from exc
        return value

    def _decoded_so_far(self) -> str:
        raw = "".join(self._raw)
        self._raw = [raw]
        if self._escape:  # an escape still arriving is left out
            raw = raw[: self._escape_at]
        if self._escape_at >= 0 and _HIGH_SURROGATE.search(raw):  # wait for its pair
            slashes = len(raw) - 6 - len(raw[:-6].rstrip("\\"))
            if slashes % 2 == 0:  # not an escaped backslash followed by "u..."
                raw = raw[:-6]
        return self._decode(raw)

    def _end_string(self, j: int) -> None:
        self._mode = _NONE
        value = self._decode("".join(self._raw))
        if self._is_key:
            self._stack[-1].key = value
            self._state = _COLON
            return
        if self._stack:
            self._write_string(value)
        self._value_done(j + 1)
        if not self._stack:  # a string at the top level appears once complete
            self._set_root(value)

    def _set_root(self, value: Any) -> None:
        self._root, self._has_root, self._changed = value, True, True
        if self._patches:
            self._ops.append({"op": "replace", "path": "", "value": value})

    def _write_string(self, value: str) -> None:
        self._dirty = False
        top = self._stack[-1]
        slot: str | int = -1 if top.key is None or not top.is_object else top.key
        if top.container[slot] == value:
            return
        self._own()  # may replace the container with a copy
        top.container[slot] = value
        path = top.path + _pointer(slot if top.is_object else len(top.container) - 1)
        self._changed = True
        if self._patches:
            if self._string_op is not None and self._string_op["path"] == path:
                self._string_op["value"] = value
            else:
                self._ops.append({"op": "replace", "path": path, "value": value})

    # -- numbers and literals ---------------------------------------------------------------

    def _scan_scalar(self, piece: str, i: int) -> int:
        j = _SCALAR.match(piece, i).end()  # type: ignore[union-attr]
        self._token += piece[i:j]
        if j == len(piece):
            return j
        self._mode = _NONE
        value = _scalar(self._token)
        if value is _BAD:
            raise self._fail(f"bad value {self._token[:40]!r}")
        if self._stack:
            self._attach(value, value)
        else:
            self._set_root(value)
        self._value_done(j)
        return j


_BAD = object()


def _scalar(token: str) -> Any:
    match = _NUMBER.fullmatch(token)
    if match is None:
        return _LITERALS.get(token, _BAD)
    return int(token) if match.lastindex is None else float(token)


def is_json_prefix(partial: Any, final: Any) -> bool:
    """Whether ``partial`` is what a stream of ``final`` can show on its way: strings are
    prefixes, containers hold a prefix of the final keys or items, and all but the last of
    them are already complete."""
    if isinstance(final, str):
        return isinstance(partial, str) and final.startswith(partial)
    if isinstance(final, dict):
        if not isinstance(partial, dict):
            return False
        keys, final_keys = list(partial), list(final)
        if keys != final_keys[: len(keys)]:
            return False
        return all(partial[k] == final[k] for k in keys[:-1]) and (
            not keys or is_json_prefix(partial[keys[-1]], final[keys[-1]])
        )
    if isinstance(final, list):
        if not isinstance(partial, list) or len(partial) > len(final):
            return False
        if not partial:
            return True
        return partial[:-1] == final[: len(partial) - 1] and (
            is_json_prefix(partial[-1], final[len(partial) - 1])
        )
    return type(partial) is type(final) and partial == final
