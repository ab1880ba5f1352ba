"""Chunking invariance for tool calls: a recorded tool-call stream (three parallel calls,
scripted through FakeChatModel), cut and interleaved any way, gives the tool parsers'
non-streamed result, and every partial on the way is consistent with it: each call's
arguments a prefix (in the JSON sense) of its final arguments."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from helpers import collect, stream_of
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from lmstream import (
    AIMessage,
    AIMessageChunk,
    FakeChatModel,
    JsonOutputKeyToolsParser,
    JsonOutputToolsParser,
    PydanticToolsParser,
)
from lmstream._jsonstream import is_json_prefix
from lmstream.structured import SKIP


class Weather(BaseModel):
    city: str
    unit: Literal["celsius", "fahrenheit"] = "celsius"
    days: list[int] = []


class Note(BaseModel):
    text: str
    tags: dict[str, Any]


CALLS = [
    {"name": "Weather", "args": {"city": 'Oslo "Ø" \\ 😀', "unit": "fahrenheit",
                                  "days": [1, -2, 30]}, "id": "call_a"},
    {"name": "Note", "args": {"text": "line\nbreak", "tags": {"x": [1.5e3, None, True],
                                                              "": {}}}, "id": "call_b"},
    {"name": "Weather", "args": {"city": "Bergen"}, "id": "call_c"},
]  # fmt: skip
MESSAGE = AIMessage("", tool_calls=CALLS)  # type: ignore[arg-type]
PARSERS = [  # each parser, and the calls it hands on
    (JsonOutputToolsParser(return_id=True), [0, 1, 2]),
    (JsonOutputToolsParser(first_tool_only=True), [0]),
    (JsonOutputKeyToolsParser("Weather"), [0, 2]),
    (PydanticToolsParser([Weather, Note]), [0, 1, 2]),
]

Atom = tuple[int, dict[str, Any]]  # (call, fragment): one character of arguments


def _recorded() -> list[AIMessageChunk]:
    """The tool-call stream FakeChatModel streams for ``MESSAGE``, chunk by chunk."""
    return list(FakeChatModel([MESSAGE], chunking="char").stream("go"))


def _atoms(chunks: list[AIMessageChunk]) -> list[list[Atom]]:
    """Each call's fragments, cut to one character of arguments each (the first carries
    the call's name and id)."""
    calls: dict[int, list[Atom]] = {}
    for chunk in chunks:
        for fragment in chunk.tool_call_chunks:
            index = fragment["index"]
            assert index is not None
            atoms = calls.setdefault(index, [])
            head = {k: fragment.get(k) for k in ("name", "id") if fragment.get(k)}
            args = fragment.get("args") or ""
            if head or not args:
                atoms.append((index, {**head, "args": args[:1], "index": index}))
                args = args[1:]
            atoms += [(index, {"args": ch, "index": index}) for ch in args]
    return [calls[i] for i in sorted(calls)]


ATOMS = _atoms(_recorded())


def _interleave(choices: list[int]) -> list[Atom]:
    """The calls' atoms in one order: each call's in its own order, calls opening in turn,
    ``choices`` picking which open call goes next."""
    queues = [list(a) for a in ATOMS]
    out: list[Atom] = []
    opened, step = 0, 0
    while any(queues):
        live = [i for i in range(opened) if queues[i]]
        if opened < len(queues):
            live.append(opened)
        pick = live[choices[step % len(choices)] % len(live)] if choices else live[0]
        step += 1
        opened = max(opened, pick + 1)
        out.append(queues[pick].pop(0))
    return out


def _chunks(atoms: list[Atom], cuts: list[int]) -> list[AIMessageChunk]:
    """``atoms`` cut into chunks at ``cuts``; within a chunk, a call's neighbouring atoms
    join into one fragment."""
    points = sorted({c % (len(atoms) + 1) for c in cuts})
    chunks = []
    for a, b in zip([0, *points], [*points, len(atoms)], strict=True):
        fragments: list[dict[str, Any]] = []
        for call, atom in atoms[a:b]:
            if fragments and fragments[-1]["index"] == call and not atom.keys() - {"args", "index"}:
                fragments[-1] = {**fragments[-1], "args": fragments[-1]["args"] + atom["args"]}
            else:
                fragments.append(dict(atom))
        chunks.append(AIMessageChunk("", tool_call_chunks=fragments))  # type: ignore[arg-type]
    return chunks


def _consistent(partial: Any, calls: list[int]) -> bool:
    """Whether ``partial`` can show on the way to ``calls``' output: per call so far, the
    same tool and arguments that are a prefix (in the JSON sense) of the final ones."""
    parts = partial if isinstance(partial, list) else [partial]
    if len(parts) > len(calls):
        return False
    for part, at in zip(parts, calls, strict=False):
        call = CALLS[at]
        if isinstance(part, BaseModel):
            same = type(part).__name__ == f"Partial{call['name']}"
            args = part.model_dump(exclude_unset=True)
        elif "type" in part:
            same = part["type"] == call["name"] and part.get("id", call["id"]) == call["id"]
            args = part["args"]
        else:
            same, args = True, part
        if not same or not is_json_prefix(args, call["args"]):
            return False
    return True


def _run(parser: Any, chunks: list[AIMessageChunk]) -> tuple[list[Any], Any]:
    """The partials and the final output of ``parser`` streaming ``chunks`` (pure path)."""
    streamer = parser._streamer()
    out = [o for c in chunks if (o := streamer.feed(c)) is not SKIP and o is not None]
    last = streamer.end()
    if last is not SKIP and last is not None:
        out.append(last)
    return out[:-1], out[-1]


def _check(chunks: list[AIMessageChunk]) -> None:
    for parser, calls in PARSERS:
        expected = parser.parse_message(MESSAGE)
        partials, final = _run(parser, chunks)
        assert final == expected, parser
        for partial in partials:
            assert _consistent(partial, calls), (parser, partial)


def test_the_recorded_stream_gives_the_whole_result() -> None:
    assert len(ATOMS) == 3 and sum(map(len, ATOMS)) > 100
    _check(_recorded())


def test_every_two_way_split_gives_the_whole_result() -> None:
    atoms = _interleave([])
    for i in range(len(atoms) + 1):
        _check(_chunks(atoms, [i]))


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.integers(0, 7), max_size=30),
    st.lists(st.integers(0, 10_000), max_size=40),
)
def test_random_interleavings_and_k_way_splits_give_the_whole_result(
    choices: list[int], cuts: list[int]
) -> None:
    _check(_chunks(_interleave(choices), cuts))


@pytest.mark.parametrize("cuts", [[1, 2, 3], [7, 40, 41, 90], list(range(0, 200, 3))])
def test_a_split_stream_through_a_model_and_parser_gives_the_whole_result(
    flavour: str, cuts: list[int]
) -> None:
    chunks = _chunks(_interleave([0, 2, 1, 1, 0]), cuts)
    for parser, calls in PARSERS:
        out = collect(stream_of(FakeChatModel([chunks]) | parser, flavour, "go"))
        assert out[-1] == parser.parse_message(MESSAGE)
        assert len(out) >= 2 and all(_consistent(p, calls) for p in out[:-1])


def test_the_recorded_fragments_are_the_calls_json() -> None:
    for atoms, call in zip(ATOMS, CALLS, strict=True):
        assert json.loads("".join(a["args"] for _, a in atoms)) == call["args"]
