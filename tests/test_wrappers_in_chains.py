"""Retries and fallbacks inside streaming chains, and the runs they make."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from failing_runnables import FAST, Flaky, Picky
from helpers import collect, events_of, invoke_of, is_sync, stream_of, take
from stream_probes import Outcomes, settle, take_then

from lmstream import (
    BaseCallbackHandler,
    FakeLLM,
    PromptTemplate,
    ProviderError,
    Runnable,
    RunnableGenerator,
    StrOutputParser,
)

# -- inside a streaming chain ---------------------------------------------------------------


def test_a_retried_step_in_a_chain_replays_the_input_it_consumed(flavour: str) -> None:
    picky = Picky(failures=2)
    seq = FakeLLM(["abcdef"]) | RunnableGenerator(picky).with_retry(**FAST)
    assert collect(stream_of(seq, flavour, "p")) == ["ABCDEF"]
    assert picky.runs == [["a", "b"], ["a", "b"], list("abcdef")]


def test_a_fallback_step_in_a_chain_gets_the_input_the_failed_one_consumed(
    flavour: str,
) -> None:
    picky = Picky(failures=9)
    backup = Picky(failures=0)
    seq = FakeLLM(["abcdef"]) | RunnableGenerator(picky).with_fallbacks([RunnableGenerator(backup)])
    assert collect(stream_of(seq, flavour, "p")) == ["ABCDEF"]
    assert backup.runs == [list("abcdef")]


def test_a_retried_model_streams_inside_a_chain(flavour: str) -> None:
    llm = Flaky("hello", failures=1, fail_at=0)
    seq = PromptTemplate.from_template("{q}") | llm.with_retry(**FAST) | StrOutputParser()
    assert collect(stream_of(seq, flavour, {"q": "x"})) == list("hello")
    assert llm.calls == 2


@pytest.mark.parametrize("kind", ["retry", "fallbacks"])
def test_closing_a_retried_stream_stops_the_model(flavour: str, kind: str) -> None:
    text = "the quick brown fox jumps over the lazy dog"
    llm = FakeLLM([text], delay=0.001)
    wrapped = llm.with_retry(**FAST) if kind == "retry" else llm.with_fallbacks([llm])
    handler = Outcomes()
    stream = stream_of(wrapped | StrOutputParser(), flavour, "p", {"callbacks": [handler]})
    items, (order, unended) = take_then(stream, 2, handler.snapshot)
    assert items == ["t", "h"]
    assert not unended and len(order) == 4  # sequence, wrapper, model, parser
    handler.assert_children_first(order)
    produced = llm.tokens_produced
    settle()
    assert llm.tokens_produced == produced < len(text)


@pytest.mark.parametrize("kind", ["retry", "fallbacks"])
def test_closing_a_retried_transform_closes_its_input_at_once(flavour: str, kind: str) -> None:
    def shout(chunks: Iterator[str]) -> Iterator[str]:
        for chunk in chunks:
            yield chunk.upper()

    async def ashout(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        async for chunk in chunks:
            yield chunk.upper()

    step = RunnableGenerator(shout, ashout)
    wrapped = step.with_retry(**FAST) if kind == "retry" else step.with_fallbacks([step])
    closed: list[str] = []

    def source() -> Iterator[str]:
        try:
            yield from "abcdef"
        finally:
            closed.append("closed")

    async def asource() -> AsyncIterator[str]:
        try:
            for char in "abcdef":
                yield char
        finally:
            closed.append("closed")

    async def run(upstream: AsyncIterator[str]) -> list[str]:
        out = wrapped.atransform(upstream)
        assert [await out.__anext__() for _ in range(2)] == ["A", "B"]
        await out.aclose()  # type: ignore[attr-defined]
        return list(closed)  # before the loop's own clean-up at its end

    if is_sync(flavour):
        upstream = source()  # held here: only an explicit close can run its cleanup
        assert take(wrapped.transform(upstream), 2) == ["A", "B"]
        assert closed == ["closed"]
    else:
        assert asyncio.run(run(asource())) == ["closed"]


# -- runs -----------------------------------------------------------------------------------


def wrap(kind: str, llm: Any) -> Runnable[Any, Any]:
    return llm.with_retry(**FAST) if kind == "retry" else llm.with_fallbacks([FakeLLM(["ok"])])


@pytest.mark.parametrize("kind", ["retry", "fallbacks"])
def test_a_retried_call_is_one_run_with_its_attempts_as_children(kind: str) -> None:
    llm = Flaky("ok", failures=1)
    events = events_of(wrap(kind, llm), "p")
    root = events[0]
    assert root["event"] == "on_chain_start" and root["parent_ids"] == []
    starts = [e for e in events if e["event"] == "on_llm_start"]
    assert len(starts) == 2
    assert all(e["parent_ids"] == [root["run_id"]] for e in starts)
    assert [e["event"] for e in events if e["run_id"] == starts[0]["run_id"]] == [
        "on_llm_start",
        "on_llm_error",
    ]
    if kind == "retry":
        assert "retry:attempt:2" in starts[1]["tags"]
    root_events = [e["event"] for e in events if e["run_id"] == root["run_id"]]
    assert root_events == ["on_chain_start", "on_chain_stream", "on_chain_stream", "on_chain_end"]
    assert events[-1]["data"]["output"] == "ok"


@pytest.mark.parametrize("kind", ["retry", "fallbacks"])
def test_a_call_whose_attempts_all_fail_ends_once_as_failed(kind: str) -> None:
    failing = Flaky("ab", failures=9)
    runnable = (
        failing.with_retry(stop_after_attempt=2, **FAST)
        if kind == "retry"
        else failing.with_fallbacks([Flaky("cd", failures=9)])
    )
    seen: list[dict[str, Any]] = []

    async def main() -> None:
        async for event in runnable.astream_events("p"):
            seen.append(event)

    with pytest.raises(ProviderError):
        asyncio.run(main())
    root_id = seen[0]["run_id"]
    assert [e["event"] for e in seen if e["run_id"] == root_id] == [
        "on_chain_start",
        "on_chain_error",
    ]
    assert [e["event"] for e in seen if e["event"].startswith("on_llm")] == [
        "on_llm_start",
        "on_llm_error",
    ] * 2


class Tree(BaseCallbackHandler):
    def __init__(self) -> None:
        self.runs: list[tuple[str, Any, Any]] = []

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: Any, **kw: Any) -> None:
        self.runs.append(("chain", run_id, kw.get("parent_run_id")))

    def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: Any, **kw: Any) -> None:
        self.runs.append(("llm", run_id, kw.get("parent_run_id")))


@pytest.mark.parametrize("kind", ["retry", "fallbacks"])
@pytest.mark.parametrize("how", ["invoke", "stream"])
def test_attempts_are_child_runs_on_both_paths(flavour: str, kind: str, how: str) -> None:
    handler = Tree()
    runnable = wrap(kind, Flaky("ok", failures=1))
    config = {"callbacks": [handler]}
    if how == "invoke":
        assert invoke_of(runnable, flavour, "p", config) == "ok"
    else:
        assert "".join(collect(stream_of(runnable, flavour, "p", config))) == "ok"
    (root, *attempts) = handler.runs
    assert root[0] == "chain" and root[2] is None
    assert [(kind_, parent) for kind_, _, parent in attempts] == [("llm", root[1])] * 2


@pytest.mark.parametrize("kind", ["retry", "fallbacks"])
def test_an_error_in_the_input_stream_is_not_retried(flavour: str, kind: str) -> None:
    # the step did not fail, its input did: another attempt would see a cut input
    upstream = Flaky("abcdef", failures=9, fail_at=3)
    picky = Picky(failures=0)
    step = RunnableGenerator(picky)
    wrapped = step.with_retry(**FAST) if kind == "retry" else step.with_fallbacks([step])
    with pytest.raises(ProviderError, match="flaky"):
        collect(stream_of(upstream | wrapped, flavour, "p"))
    assert picky.runs == [["a", "b", "c"]]
