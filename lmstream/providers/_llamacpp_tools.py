"""Tool calls of the embedded chat model: what the model is told, the grammar that holds
its answer, and the reader that streams the call as it is written.

The form is llama-cpp-python's ``chatml-function-calling``: an answer is either
``message:`` and text, or ``functions.<name>:`` and the arguments' JSON. With
``tool_choice="auto"`` (or none given) the grammar is *mixed* and allows both; once the
answer has begun with ``message:`` it is text, which is then sampled without the grammar,
so it costs what plain text costs. A named ``tool_choice`` forces that tool,
``"required"``/``"any"`` forces a call, and ``"none"`` offers none. With
``parallel_tool_calls=True`` (and no tool named) the answer may be several calls, one per
line; else it is one call: allowed more, a small model lists tools it was not asked for.
The reader hands on text as it comes (without its label), and
each call as ``tool_call_chunks`` of its own index (0, 1, ...): the first fragment carries
the name, an id and the index, the next ones the pieces of the arguments' JSON as the model
writes them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from llama_cpp.llama_grammar import LlamaGrammar

from lmstream._accumulate import TextState
from lmstream.chunks import GenerationChunk
from lmstream.errors import InvalidInputError
from lmstream.messages import AIMessage, ToolCallChunk
from lmstream.providers._llamacpp_grammar import gbnf

__all__ = ["CallReader", "TextStops", "ToolPlan", "mixed_gbnf", "plan", "release_for", "written"]

CALL, TEXT = "functions.", "message:"
_TOLD = (
    "You have access to the following functions:\n{functions}\n"
    "You can respond to users messages with either a single message or {calls}."
    "\n\nTo respond with a message begin the message with 'message:', use the following "
    "format:\n\nmessage:\n<message>\n\n"
    "To respond with {calls} begin the message with 'functions.<function_name>:', "
    'use the following format:\n\nfunctions.<function_name>:\n{{ "arg1": "value1", '
    '"arg2": "value2" }}'
)
_MANY = "one or more function calls, one per line"
_FORCING = ("required", "any", True)
_HEAD = re.compile(r"functions\.([^:\s]+):")
_TEXT, _UNDECIDED, _ARGS, _AFTER, _DONE = range(5)


@dataclass(frozen=True, slots=True)
class ToolPlan:
    """How one call offers tools: the system note, the grammar and when to let go of it."""

    note: str
    grammar: LlamaGrammar
    mixed: bool
    many: bool


def _release(start: bytes) -> bool:
    """An answer that has begun with the text label is text from there on."""
    return start.startswith(TEXT.encode())


def _functions(tools: list[Any], choice: Any) -> list[dict[str, Any]]:
    """The functions the model may call, narrowed by a named ``tool_choice``."""
    functions = []
    for tool in tools:
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidInputError(f"a tool must be in OpenAI's tool schema, got {tool!r}")
        functions.append(function)
    name = choice if isinstance(choice, str) and choice not in ("auto", *_FORCING) else None
    if isinstance(choice, dict):
        name = choice.get("function", {}).get("name", choice.get("name"))
    if name is not None:
        functions = [f for f in functions if f["name"] == name]
        if not functions:
            raise InvalidInputError(f"tool_choice names {name!r}, which is not among the tools")
    return functions


def mixed_gbnf(functions: list[dict[str, Any]], mixed: bool, many: bool = False) -> str:
    """The grammar's text: one call of one of ``functions`` (its arguments held to the
    function's schema), with ``many`` one or more such calls a line each, and with
    ``mixed`` also ``message:`` and any text."""
    schemas = [f.get("parameters") or {"type": "object"} for f in functions]
    rules = gbnf(json.dumps({"anyOf": schemas}))
    calls = " | ".join(
        f'{json.dumps(f["name"])} ":" space alternative-{n}' for n, f in enumerate(functions)
    )
    answer = 'lm-call ("\\n" lm-call)*' if many else "lm-call"
    start = f"root ::= lm-text | {answer}\n" if mixed else f"root ::= {answer}\n"
    return f'{start}lm-text ::= "{TEXT}" [^\\x00]*\nlm-call ::= "{CALL}" ({calls})\n' + re.sub(
        r"^root ::=", "lm-arguments ::=", rules, count=1, flags=re.M
    )


@lru_cache(maxsize=64)
def _grammar(functions: str, mixed: bool, many: bool) -> LlamaGrammar:
    return LlamaGrammar.from_string(mixed_gbnf(json.loads(functions), mixed, many), verbose=False)


def plan(tools: Any, choice: Any, parallel: Any = None) -> ToolPlan | None:
    """How the tools are offered (``None``: they are not, for ``tool_choice="none"``).

    The model may call several tools at once only when ``parallel`` (``parallel_tool_calls``)
    is ``True`` and ``tool_choice`` names no tool.
    """
    if parallel is not None and not isinstance(parallel, bool):
        raise InvalidInputError(f"parallel_tool_calls must be True or False, got {parallel!r}")
    if not tools or choice == "none":
        return None
    functions = _functions(list(tools), choice)
    mixed = choice in (None, "auto")
    many = parallel is True and (mixed or choice in _FORCING)
    listed = "".join(
        f"\nfunctions.{f['name']}:\n{f.get('description', '')}\n{json.dumps(f.get('parameters'))}\n"
        for f in functions
    )
    note = _TOLD.format(functions=listed, calls=_MANY if many else "a function call")
    if not mixed:
        note += "\n\nRespond with a function call."
    return ToolPlan(note, _grammar(json.dumps(functions), mixed, many), mixed, many)


def release_for(tool_plan: ToolPlan | None) -> Any:
    """The test that lets go of the grammar once the answer is text (mixed grammars)."""
    return _release if tool_plan is not None and tool_plan.mixed else None


def written(message: AIMessage) -> str:
    """An earlier answer as the model would have written it (calls in the call form)."""
    calls = [f"{CALL}{c['name']}: {json.dumps(c['args'])}" for c in message.tool_calls]
    return "\n".join([message.text, *calls] if message.text else calls)


class CallReader:
    """The model's answer as it streams: text as it comes, or its calls in fragments."""

    def __init__(self) -> None:
        self._mode, self._held, self._calls = _UNDECIDED, "", 0
        self._depth, self._string, self._escape = 0, False, False

    @property
    def called(self) -> bool:
        """Whether the answer called tools and every call it began is whole."""
        return self._calls > 0 and self._mode in (_AFTER, _DONE) and not self._held.strip()

    def feed(self, piece: str) -> tuple[str, list[ToolCallChunk]]:
        """The text and the call fragments that ``piece`` of the answer makes."""
        if self._mode == _TEXT:
            if not self._held:  # the whitespace after the label goes
                piece = piece.lstrip()
                self._held = piece[:1]
            return piece, []
        calls: list[ToolCallChunk] = []
        if self._mode == _ARGS:
            piece = self._arguments(piece, calls)
            if self._mode == _ARGS or not piece:
                return "", calls
        if self._mode == _DONE:
            return "", calls
        self._held += piece
        text, more = self._head()
        return text, calls + more

    def _head(self) -> tuple[str, list[ToolCallChunk]]:
        """What the held start of the answer, or of the next call, has become."""
        first = self._mode == _UNDECIDED
        held = self._held if first else self._held.lstrip()
        n = len(held)
        if first and held.startswith(TEXT):
            self._mode, self._held = _TEXT, ""
            return self.feed(held[len(TEXT) :])
        if (first and held == TEXT[:n]) or (held[: len(CALL)] == CALL[:n] and ":" not in held):
            return "", []
        head = _HEAD.match(held)
        if head is None:  # neither form: text as it is at first, dropped after a call
            self._mode, self._held = (_TEXT, held[:1]) if first else (_DONE, "")
            return (held if first else ""), []
        self._mode, self._held, index = _ARGS, "", self._calls
        self._calls += 1
        first_chunk: ToolCallChunk = {"name": head[1], "args": "", "index": index,
            "id": f"call_{os.urandom(12).hex()}", "type": "tool_call_chunk"}  # fmt: skip
        text, rest = self.feed(held[head.end() :])
        return text, [first_chunk, *rest]

    def flush(self) -> str:
        """What was held back and never became a call (a stream cut short), as text."""
        text = self._held if self._mode == _UNDECIDED else ""
        self._held = "" if self._mode == _UNDECIDED else self._held
        return text

    def _arguments(self, piece: str, calls: list[ToolCallChunk]) -> str:
        """Add the part of ``piece`` inside the arguments' JSON value to ``calls`` as one
        fragment; return the rest of ``piece`` once the value is whole."""
        start, end = 0, len(piece)
        if not self._depth:  # the value has not begun: the whitespace before it goes
            start = len(piece) - len(piece.lstrip())
        for i in range(start, end):
            char = piece[i]
            if self._string:
                if self._escape:
                    self._escape = False
                else:
                    self._escape, self._string = char == "\\", char != '"'
            elif char == '"':
                self._string = True
            elif char in "{[":
                self._depth += 1
            elif char in "}]":
                self._depth -= 1
                if not self._depth:
                    self._mode, end = _AFTER, i + 1
                    break
        if piece[start:end]:
            calls.append({"name": None, "args": piece[start:end], "id": None,
                          "index": self._calls - 1, "type": "tool_call_chunk"})  # fmt: skip
        return piece[end:]


class TextStops:
    """Stop sequences for an answer that may call tools: they cut its text, from after the
    label and the whitespace that follows it (what the reader hands on), and never a call.
    Until the answer's form is known its start is held back."""

    def __init__(self, stop: list[str]) -> None:
        self._cut, self._start, self._mode = TextState(stop), "", _UNDECIDED

    @property
    def stopped(self) -> bool:
        """Whether the text has reached a stop sequence."""
        return self._cut.stopped

    def feed(self, chunk: GenerationChunk) -> GenerationChunk | None:
        """What of ``chunk`` to hand on (``None``: nothing yet)."""
        if self._mode == _TEXT:
            return self._cut.feed(chunk)  # type: ignore[no-any-return]
        if self._mode == _ARGS:
            return chunk
        start = self._start = self._start + chunk.text
        body = start[len(TEXT) :].lstrip()
        if start.startswith(TEXT) and body:  # the text has begun
            self._mode, self._start, lead = _TEXT, "", start[: len(start) - len(body)]
            out = self._cut.feed(GenerationChunk(body))
            return GenerationChunk(lead + ("" if out is None else out.text))
        if start.startswith(TEXT) or TEXT.startswith(start):
            return None
        self._mode, self._start = _ARGS, ""  # a call: it passes as it is
        return GenerationChunk(start)

    def flush(self) -> str:
        """At the end: what was held back and was not cut off."""
        if self._mode == _TEXT:
            return self._cut.flush()
        held, self._start = self._start, ""
        return held
