"""Chunking invariance: however a recorded stream is cut, the parsers give exactly the
non-streamed result, and every partial on the way is a prefix (in the JSON sense) of it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import is_sync
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from lmstream import JsonOutputParser, Partial, ReasoningParser
from lmstream._jsonstream import JsonStream, is_json_prefix
from lmstream._partial import PartialBuilder
from lmstream._reasoning import ReasoningSplitter

RECORDED_JSON = [
    json.dumps(
        {
            "name": 'Ada "the Countess" Lovelace \\ é 😀',
            "born": 1815,
            "ratio": -0.25e-3,
            "langs": ["en", "fr", []],
            "notes": {"a/b": True, "c~d": None, "": [{}, {"x": [1, [2, [3]]]}]},
        }
    ),
    "```json\n" + json.dumps([{"id": i, "tags": ["t" * i]} for i in range(5)], indent=2) + "\n```",
    json.dumps({"escapes": '\\u00e9\n\t"/\\ud83d\\ude00', "s": "😀"}, ensure_ascii=True),
    '  {"spaced" :  [ 1 , 2.5e+3 , true , false , null ] , "s" : "x" }  ',
]
RECORDED_REASONING = [
    "<think>Plan: answer briefly.\nCheck <b>tags</b> too.</think>\n\nThe answer is 42.",
    "No reasoning at all, just <thinking> words.",
    "<think>one</think>A<think>two</think> B </thi",
]


def run_core(pieces: list[str]) -> tuple[list[Any], Any]:
    stream = JsonStream(patches=False)
    partials = [stream.partial() for piece in pieces if stream.feed(piece)]
    return partials, stream.finish()


def check_json(pieces: list[str], text: str) -> None:
    expected = json.loads(text.strip().removeprefix("```json").removesuffix("```"))
    partials, final = run_core(pieces)
    assert final == expected
    assert all(is_json_prefix(p, expected) for p in partials)


def cut(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


@pytest.mark.parametrize("text", RECORDED_JSON)
def test_every_two_way_split_gives_the_whole_result(text: str) -> None:
    for i in range(len(text) + 1):
        check_json([text[:i], text[i:]], text)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(RECORDED_JSON), st.lists(st.integers(0, 10_000), max_size=40))
def test_random_k_way_splits_give_the_whole_result(text: str, cuts: list[int]) -> None:
    check_json(cut(text, cuts), text)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    JSON_VALUES.filter(lambda v: isinstance(v, (dict, list))),
    st.sampled_from([None, 0, 2]),
    st.booleans(),
    st.lists(st.integers(0, 10_000), max_size=30),
)
def test_any_json_any_cut(
    value: Any, indent: int | None, ascii_only: bool, cuts: list[int]
) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    stream = JsonStream(patches=True)
    doc: Any = None
    for piece in cut(text, cuts):
        if stream.feed(piece):
            partial = stream.partial()
            doc = apply_patch(doc, stream.patch())
            assert doc == partial  # the patches rebuild every partial exactly
            assert is_json_prefix(partial, value)
    assert stream.finish() == value


def apply_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    for op in ops:
        if op["path"] == "":
            doc = json.loads(json.dumps(op["value"]))
            continue
        keys = [p.replace("~1", "/").replace("~0", "~") for p in op["path"][1:].split("/")]
        target = doc
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        value = json.loads(json.dumps(op["value"]))
        if isinstance(target, list) and op["op"] == "add":
            target.insert(int(keys[-1]), value)
        elif isinstance(target, list):
            target[int(keys[-1])] = value
        else:
            target[keys[-1]] = value
    return doc


async def _agen(pieces: list[str]) -> AsyncIterator[str]:
    for piece in pieces:
        yield piece


def _through(parser: Any, pieces: list[str], flavour: str) -> list[Any]:
    if is_sync(flavour):
        return list(parser.transform(iter(pieces)))

    async def run() -> list[Any]:
        return [x async for x in parser.atransform(_agen(pieces))]

    return asyncio.run(run())


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(RECORDED_JSON), st.lists(st.integers(0, 10_000), max_size=40))
def test_the_parser_stream_ends_with_the_invoke_result(text: str, cuts: list[int]) -> None:
    for flavour in ("sync", "async"):
        out = _through(JsonOutputParser(), cut(text, cuts), flavour)
        assert out[-1] == JsonOutputParser().invoke(text)
        assert all(is_json_prefix(p, out[-1]) for p in out)


def split_reasoning(pieces: list[str]) -> tuple[str, str]:
    splitter = ReasoningSplitter()
    parts = [splitter.feed(p) for p in pieces] + [splitter.flush()]
    return "".join(r for r, _ in parts), "".join(c for _, c in parts)


@pytest.mark.parametrize("text", RECORDED_REASONING)
def test_reasoning_every_two_way_split(text: str) -> None:
    whole = split_reasoning([text])
    for i in range(len(text) + 1):
        assert split_reasoning([text[:i], text[i:]]) == whole


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(RECORDED_REASONING), st.lists(st.integers(0, 10_000), max_size=40))
def test_reasoning_random_k_way_splits(text: str, cuts: list[int]) -> None:
    assert split_reasoning(cut(text, cuts)) == split_reasoning([text])


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(RECORDED_REASONING), st.lists(st.integers(0, 10_000), max_size=20))
def test_reasoning_parser_stream_adds_up_to_invoke(text: str, cuts: list[int]) -> None:
    for flavour in ("sync", "async"):
        chunks = _through(ReasoningParser(), cut(text, cuts), flavour)
        total = {"reasoning": "", "content": ""}
        for chunk in chunks:
            for key, value in chunk.items():
                total[key] += value
        assert total == ReasoningParser().invoke(text)


def test_reasoning_whole_results() -> None:
    assert split_reasoning([RECORDED_REASONING[0]]) == (
        "Plan: answer briefly.\nCheck <b>tags</b> too.",
        "The answer is 42.",
    )
    assert split_reasoning([RECORDED_REASONING[1]]) == ("", RECORDED_REASONING[1])
    assert split_reasoning([RECORDED_REASONING[2]]) == ("onetwo", "AB </thi")


class Stop(BaseModel):
    port: str
    days: int | None = None


class Voyage(BaseModel):
    ship: str
    crew: list[str]
    stops: list[Stop]
    flagship: Stop | None = None


VOYAGE = json.dumps(
    {
        "ship": "Revenge",
        "crew": ["Anne", "Mary"],
        "stops": [{"port": "Nassau", "days": 3}, {"port": "Port Royal"}, {"port": "Tortuga"}],
        "flagship": {"port": "Havana", "days": None},
    }
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 10_000), max_size=40))
def test_partial_models_built_piecewise_equal_whole_validation(cuts: list[int]) -> None:
    partial_cls = Partial[Voyage]
    builder = PartialBuilder(partial_cls)
    stream = JsonStream()
    for piece in cut(VOYAGE, cuts):
        if stream.feed(piece):
            snapshot = stream.partial()
            built = builder.build(snapshot)
            assert built == partial_cls.model_validate(snapshot)
            assert built.model_fields_set == partial_cls.model_validate(snapshot).model_fields_set
    assert Voyage.model_validate(stream.finish()) == Voyage.model_validate_json(VOYAGE)
