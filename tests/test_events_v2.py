"""astream_events v2: the reference's schema and data shapes, plus the additive events."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import events_of

from lmstream import (
    FakeLLM,
    GenerationChunk,
    PromptTemplate,
    ProviderError,
    Runnable,
    RunnableLambda,
    StringPromptValue,
    StrOutputParser,
    adispatch_custom_event,
)


def brief(events: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    return [(e["event"], e["name"], e["data"]) for e in events]


def chain(llm: Any) -> Runnable[Any, Any]:
    return PromptTemplate.from_template("Q: {q}") | llm | StrOutputParser()


def test_root_llm_events_have_the_reference_shape() -> None:
    config = {"tags": ["T"], "metadata": {"user": "u1"}, "run_name": "my_llm"}
    events = events_of(FakeLLM(["hey"]), "hi", config)
    assert [e["event"] for e in events] == ["on_llm_start"] + ["on_llm_stream"] * 3 + ["on_llm_end"]
    assert events[0]["data"] == {"input": "hi"}
    assert [e["data"]["chunk"] for e in events[1:4]] == ["h", "e", "y"]  # str at the root
    end = events[-1]["data"]
    assert set(end) == {"output"}
    (generation,) = end["output"]["generations"][0]
    assert generation["text"] == "hey" and generation["type"] == "Generation"
    assert generation["generation_info"]["finish_reason"] == "stop"
    assert end["output"]["llm_output"] is None
    for event in events:
        assert event["name"] == "my_llm"
        assert event["tags"] == ["T"]
        assert event["parent_ids"] == []
        assert event["metadata"]["user"] == "u1"
        assert event["metadata"]["ls_provider"] == "fake"
        assert event["metadata"]["ls_model_type"] == "llm"
        assert isinstance(event["run_id"], str)
    assert len({e["run_id"] for e in events}) == 1


def test_a_given_run_id_names_the_root() -> None:
    from uuid import uuid4

    run_id = uuid4()
    events = events_of(FakeLLM(["a"]), "hi", {"run_id": run_id})
    assert {e["run_id"] for e in events} == {str(run_id)}


def test_chain_events_stream_through_every_step() -> None:
    events = events_of(chain(FakeLLM(["hey"])), {"q": "hi"})
    assert [(e["event"], e["name"]) for e in events] == [
        ("on_chain_start", "RunnableSequence"),
        ("on_prompt_start", "PromptTemplate"),
        ("on_prompt_end", "PromptTemplate"),
        ("on_llm_start", "FakeLLM"),
        ("on_llm_stream", "FakeLLM"),
        ("on_parser_start", "StrOutputParser"),
        ("on_parser_stream", "StrOutputParser"),
        ("on_chain_stream", "RunnableSequence"),
        ("on_llm_stream", "FakeLLM"),
        ("on_parser_stream", "StrOutputParser"),
        ("on_chain_stream", "RunnableSequence"),
        ("on_llm_stream", "FakeLLM"),
        ("on_parser_stream", "StrOutputParser"),
        ("on_chain_stream", "RunnableSequence"),
        ("on_llm_end", "FakeLLM"),
        ("on_parser_end", "StrOutputParser"),
        ("on_chain_end", "RunnableSequence"),
    ]
    data = [e["data"] for e in events]
    assert data[0] == {"input": {"q": "hi"}}
    assert data[1] == {"input": {"q": "hi"}}
    assert data[2] == {"output": StringPromptValue("Q: hi"), "input": {"q": "hi"}}
    assert data[3] == {"input": {"prompts": ["Q: hi"]}}
    assert data[4] == {"chunk": GenerationChunk(text="h")}  # nested: the chunk object
    assert data[5] == {}  # the parser starts before its input is known
    assert data[6] == {"chunk": "h"} and data[7] == {"chunk": "h"}
    assert data[14]["input"] == {"prompts": ["Q: hi"]}
    assert data[14]["output"]["generations"][0][0]["text"] == "hey"
    assert data[15] == {"output": "hey", "input": "hey"}
    assert data[16] == {"output": "hey"}
    root = events[0]["run_id"]
    assert all(e["parent_ids"] == [root] for e in events[1:] if e["run_id"] != root)
    tags = {e["name"]: e["tags"] for e in events}
    assert tags["PromptTemplate"] == ["seq:step:1"] and tags["FakeLLM"] == ["seq:step:2"]


def filtered(**filters: Any) -> list[str]:
    llm = FakeLLM(["ab"]).with_config(run_name="my_llm", tags=["llm_tag"])
    runnable = chain(llm).with_config(tags=["root_tag"])
    return [e["event"] for e in events_of(runnable, {"q": "hi"}, **filters)]


LLM_ONLY = ["on_llm_start", "on_llm_stream", "on_llm_stream", "on_llm_end"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"include_types": ["llm"]}, LLM_ONLY),
        ({"include_names": ["my_llm"]}, LLM_ONLY),
        ({"include_tags": ["llm_tag"]}, LLM_ONLY),
        ({"include_types": ["llm"], "exclude_names": ["my_llm"]}, []),
        (
            {"include_names": ["RunnableSequence"]},
            ["on_chain_start", "on_chain_stream", "on_chain_stream", "on_chain_end"],
        ),
        (
            {"exclude_types": ["llm", "prompt"]},
            [
                "on_chain_start", "on_parser_start", "on_parser_stream", "on_chain_stream",
                "on_parser_stream", "on_chain_stream", "on_parser_end", "on_chain_end",
            ],
        ),
    ],
)  # fmt: skip
def test_filters(filters: dict[str, Any], expected: list[str]) -> None:
    assert filtered(**filters) == expected


def test_an_inherited_tag_includes_everything() -> None:
    assert len(filtered(include_tags=["root_tag"])) == len(filtered())


def test_the_first_admitted_event_gets_the_root_input() -> None:
    events = events_of(chain(FakeLLM(["ab"])), {"q": "hi"}, include_types=["llm"])
    assert events[0]["data"] == {"input": {"q": "hi"}}
    assert "input" not in events[-1]["data"]


def test_a_failing_root_llm_emits_an_error_event_then_raises() -> None:
    got: list[dict[str, Any]] = []

    async def main() -> None:
        async for event in FakeLLM(["abcd"], error_after=2).astream_events("hi"):
            got.append(event)

    with pytest.raises(ProviderError) as info:
        asyncio.run(main())
    assert [e["event"] for e in got] == [
        "on_llm_start",
        "on_llm_stream",
        "on_llm_stream",
        "on_llm_error",
    ]
    error_data = got[-1]["data"]
    assert error_data["error"] is info.value
    assert error_data["output"]["generations"][0][0]["text"] == "ab"
    assert error_data["output"]["generations"][0][0]["generation_info"]["finish_reason"] == "error"


def test_a_failing_chain_reports_an_error_for_every_run() -> None:
    got: list[dict[str, Any]] = []

    async def main() -> None:
        async for event in chain(FakeLLM(["abcd"], error_after=2)).astream_events({"q": "x"}):
            got.append(event)

    with pytest.raises(ProviderError):
        asyncio.run(main())
    tail = [(e["event"], e["data"].get("output")) for e in got[-3:]]
    assert [t[0] for t in tail] == ["on_llm_error", "on_parser_error", "on_chain_error"]
    assert tail[1][1] == "ab" and tail[2][1] == "ab"


def test_a_run_stopped_early_ends_as_cancelled() -> None:
    def first_two(chunks: Iterator[str]) -> Iterator[str]:
        for i, chunk in enumerate(chunks):
            yield chunk
            if i == 1:
                return

    llm = FakeLLM(["abcdefgh"])
    events = events_of(llm | first_two, "p")
    llm_end = next(e for e in events if e["event"] == "on_llm_end")
    assert llm_end["data"]["cancelled"] is True
    info = llm_end["data"]["output"]["generations"][0][0]["generation_info"]
    assert info["finish_reason"] == "cancelled"
    assert llm.tokens_produced == 2
    assert events[-1]["event"] == "on_chain_end" and events[-1]["data"] == {"output": "ab"}


def test_custom_events() -> None:
    async def step(x: str) -> str:
        await adispatch_custom_event("progress", {"pct": 50})
        return x

    runnable = RunnableLambda(step) | StrOutputParser()
    events = events_of(runnable, "p")
    custom = [e for e in events if e["event"] == "on_custom_event"]
    assert len(custom) == 1
    assert custom[0]["name"] == "progress" and custom[0]["data"] == {"pct": 50}
    step_start = next(e for e in events if e["event"] == "on_chain_start" and e["name"] == "step")
    assert custom[0]["run_id"] == step_start["run_id"]
    assert custom[0]["parent_ids"] == [events[0]["run_id"]]
    v1 = events_of(runnable, "p", version="v1")
    assert v1 and not any(e["event"] == "on_custom_event" for e in v1)


def test_tokens_inside_a_blocking_step_arrive_live() -> None:
    llm = FakeLLM(["abcdefghijklmnop"], delay=0.01)

    def blocking(x: str) -> str:
        return "".join(llm.stream(x))

    seen_at: list[int] = []

    async def main() -> None:
        async for event in RunnableLambda(blocking).astream_events("p"):
            if event["event"] == "on_llm_stream":
                seen_at.append(llm.tokens_produced)

    asyncio.run(main())
    assert len(seen_at) == 16
    assert seen_at[0] < 16  # the first token event came before the model had finished


def test_stopping_the_consumer_stops_the_model() -> None:
    llm = FakeLLM(["abcdefghijklmnopqrstuvwxyz"], delay=0.005)

    async def main() -> int:
        agen = chain(llm).astream_events({"q": "x"})
        async for event in agen:
            if event["event"] == "on_parser_stream":
                break
        await agen.aclose()  # type: ignore[attr-defined]
        return llm.tokens_produced

    produced = asyncio.run(main())
    assert produced < 26
    assert llm.tokens_produced == produced


def test_unknown_versions_are_refused() -> None:
    with pytest.raises(NotImplementedError, match="Unsupported version"):
        events_of(FakeLLM(["a"]), "p", version="v9")


def test_a_custom_runnable_without_runs_still_has_events() -> None:
    class Custom(Runnable[str, str]):
        def invoke(self, input: str, config: Any = None, **kwargs: Any) -> str:
            return input.upper()

        async def astream(self, input: str, config: Any = None, **kwargs: Any) -> Any:
            for char in input:
                yield char

    events = events_of(Custom(), "ab")
    assert brief(events) == [
        ("on_chain_start", "Custom", {"input": "ab"}),
        ("on_chain_stream", "Custom", {"chunk": "a"}),
        ("on_chain_stream", "Custom", {"chunk": "b"}),
        ("on_chain_end", "Custom", {"output": "ab"}),
    ]


def test_a_non_streaming_llm_gives_one_stream_event() -> None:
    events = events_of(FakeLLM(["hey"], streaming=False), "hi")
    assert [e["event"] for e in events] == ["on_llm_start", "on_llm_stream", "on_llm_end"]
    assert events[1]["data"] == {"chunk": "hey"}


def test_a_custom_event_first_in_the_filtered_stream_keeps_its_data() -> None:
    def step(q: str) -> str:
        from lmstream import dispatch_custom_event

        dispatch_custom_event("progress", "searching")
        return q

    runnable = RunnableLambda(step) | FakeLLM(["ok"])
    events = events_of(runnable, "hi", include_names=["progress"])
    assert [(e["event"], e["data"]) for e in events] == [("on_custom_event", "searching")]


def test_a_failing_parser_reports_the_input_it_had_read() -> None:
    def explode(chunks: Any) -> Any:
        for i, chunk in enumerate(chunks):
            if i == 2:
                raise ValueError("boom")
            yield chunk

    got: list[dict[str, Any]] = []

    async def main() -> None:
        async for event in (FakeLLM(["abcd"]) | explode).astream_events("p"):
            got.append(event)

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(main())
    error = next(e for e in got if e["event"] == "on_chain_error" and e["name"] == "explode")
    assert error["data"]["input"] == "abc"
