"""astream_events v1: the reference's older shapes, produced at O(1) cost per event."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import events_of

from lmstream import FakeLLM, GenerationChunk, PromptTemplate, ProviderError, StrOutputParser


def v1(runnable: Any, value: Any, config: Any = None, **kw: Any) -> list[dict[str, Any]]:
    return events_of(runnable, value, config, version="v1", **kw)


def test_root_llm_v1_shapes() -> None:
    config = {"tags": ["T"], "metadata": {"user": "u1"}, "run_name": "my_llm"}
    events = v1(FakeLLM(["hey"], tags=["own"]), "hi", config)
    assert [(e["event"], e["data"]) for e in events] == [
        ("on_llm_start", {"input": "hi"}),
        ("on_llm_stream", {"chunk": "h"}),
        ("on_llm_stream", {"chunk": "e"}),
        ("on_llm_stream", {"chunk": "y"}),
        ("on_llm_end", {"output": "hey"}),
    ]
    for event in events:  # the root carries the config's tags and metadata only
        assert event["tags"] == ["T"] and event["metadata"] == {"user": "u1"}
        assert event["parent_ids"] == [] and event["name"] == "my_llm"


def test_a_non_streaming_root_llm_streams_its_one_chunk() -> None:
    events = v1(FakeLLM(["hey"], streaming=False), "hi")
    assert [(e["event"], e["data"]) for e in events] == [
        ("on_llm_start", {"input": "hi"}),
        ("on_llm_stream", {"chunk": "hey"}),
        ("on_llm_end", {"output": "hey"}),
    ]


def test_chain_v1_shapes() -> None:
    runnable = PromptTemplate.from_template("Q: {q}") | FakeLLM(["ab"]) | StrOutputParser()
    events = v1(runnable, {"q": "hi"})
    assert [e["event"] for e in events] == [
        "on_chain_start", "on_prompt_start", "on_prompt_end", "on_llm_start", "on_llm_stream",
        "on_parser_start", "on_parser_stream", "on_chain_stream", "on_llm_stream",
        "on_parser_stream", "on_chain_stream", "on_llm_end", "on_parser_end", "on_chain_end",
    ]  # fmt: skip
    data = {e["event"]: e["data"] for e in events}
    assert events[0]["data"] == {"input": {"q": "hi"}}
    assert events[4]["data"] == {"chunk": "a"}  # nested tokens are strings in v1
    llm_end = data["on_llm_end"]
    assert llm_end["input"] == {"prompts": ["Q: hi"]}
    assert llm_end["output"]["run"] is None and llm_end["output"]["type"] == "LLMResult"
    assert llm_end["output"]["generations"][0][0]["text"] == "ab"
    assert data["on_parser_end"] == {"output": "ab", "input": "ab"}
    assert data["on_chain_end"] == {"output": "ab"}
    assert all(e["parent_ids"] == [] for e in events)
    llm_start = next(e for e in events if e["event"] == "on_llm_start")
    assert llm_start["metadata"]["ls_provider"] == "fake"  # children keep their own metadata


def test_v1_reports_failed_children_as_ended_then_raises() -> None:
    runnable = FakeLLM(["abcd"], error_after=2) | StrOutputParser()
    got: list[dict[str, Any]] = []

    async def main() -> None:
        async for event in runnable.astream_events("p", version="v1"):
            got.append(event)

    with pytest.raises(ProviderError):
        asyncio.run(main())
    ends = [(e["event"], e["data"].get("output")) for e in got if e["event"].endswith("_end")]
    assert ends[0][0] == "on_llm_end"
    assert ends[0][1]["generations"][0][0]["text"] == "ab"
    assert ends[1] == ("on_parser_end", None)
    assert len(ends) == 2  # no root end


def test_v1_filters_apply() -> None:
    runnable = PromptTemplate.from_template("Q: {q}") | FakeLLM(["ab"]) | StrOutputParser()
    events = v1(runnable, {"q": "hi"}, include_types=["llm"])
    assert [e["event"] for e in events] == [
        "on_llm_start", "on_llm_stream", "on_llm_stream", "on_llm_end",
    ]  # fmt: skip


def test_v1_event_count_is_linear_in_tokens() -> None:
    for n in (10, 100, 1000):
        events = v1(FakeLLM([["x"] * n]) | StrOutputParser(), "p")
        # start, per token llm+parser+chain stream, ends: no per-event history
        assert len(events) == 3 * n + 6
        assert all(isinstance(e["data"].get("chunk", ""), (str, GenerationChunk)) for e in events)
