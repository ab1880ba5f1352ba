"""Wrappers: bound kwargs and config, retries and fallbacks (before the first chunk only)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from helpers import collect, events_of, invoke_of, is_sync, stream_of, take
from stream_probes import Outcomes, settle, take_then

from lmstream import (
    LLM,
    BaseCallbackHandler,
    FakeLLM,
    GenerationChunk,
    InvalidInputError,
    PromptTemplate,
    ProviderError,
    RateLimitError,
    Runnable,
    RunnableBinding,
    RunnableGenerator,
    RunnableLambda,
    RunnableRetry,
    StrOutputParser,
)
from lmstream import wrappers as wrappers_module

FAST = {"wait_exponential_jitter": False}


class Flaky(LLM):
    """Streams ``text``; its first ``failures`` calls raise ``error`` at chunk ``fail_at``."""

    def __init__(
        self, text: str, failures: int, fail_at: int = 0, error: Exception | None = None
    ) -> None:
        super().__init__()
        self.text = text
        self.failures = failures
        self.fail_at = fail_at
        self.error = error or KeyError("flaky")
        self.calls = 0
        self.lock = threading.Lock()

    def _chunks(self) -> Iterator[str]:
        with self.lock:
            self.calls += 1
            failing = self.calls <= self.failures
        for i, char in enumerate(self.text):
            if failing and i == self.fail_at:
                raise self.error
            yield char
        if failing and self.fail_at >= len(self.text):
            raise self.error

    def _stream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        for char in self._chunks():
            yield GenerationChunk(char)

    async def _astream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[GenerationChunk]:
        for char in self._chunks():
            await asyncio.sleep(0)
            yield GenerationChunk(char)


def drain(stream: Any, got: list[Any]) -> None:
    """Read a sync or async stream into ``got`` (what arrived before an error stays)."""
    if not hasattr(stream, "__anext__"):
        for item in stream:
            got.append(item)
        return

    async def run() -> None:
        async for item in stream:
            got.append(item)

    asyncio.run(run())


# -- bind and with_config -------------------------------------------------------------------


def test_bind_adds_kwargs_to_every_call(flavour: str) -> None:
    llm = FakeLLM(["hello world"]).bind(stop=[" "])
    assert isinstance(llm, RunnableBinding)
    assert invoke_of(llm, flavour, "p") == "hello"
    assert "".join(collect(stream_of(llm, flavour, "p"))) == "hello"
    assert llm.batch(["a", "b"]) == ["hello", "hello"]
    assert asyncio.run(llm.abatch(["a"])) == ["hello"]


def test_call_kwargs_override_bound_ones(flavour: str) -> None:
    llm = FakeLLM(["hello world"]).bind(max_tokens=2)
    assert invoke_of(llm, flavour, "p") == "he"
    assert invoke_of(llm, flavour, "p", max_tokens=4) == "hell"


def test_chained_binds_merge(flavour: str) -> None:
    base = FakeLLM(["hello world"])
    bound = base.bind(stop=["o"]).bind(max_tokens=3)
    assert bound.bound is base
    assert bound.kwargs == {"stop": ["o"], "max_tokens": 3}
    assert invoke_of(bound, flavour, "p") == "hel"
    assert invoke_of(base.bind(max_tokens=3).bind(max_tokens=8, stop=["o"]), flavour, "p") == "hell"


def test_a_bound_step_streams_inside_a_chain(flavour: str) -> None:
    seq = PromptTemplate.from_template("{q}") | FakeLLM(["hello world"]).bind(stop=[" "])
    assert collect(stream_of(seq | StrOutputParser(), flavour, {"q": "x"})) == list("hello")


def test_with_config_names_and_tags_the_run_in_events() -> None:
    llm = FakeLLM(["ab"]).with_config(run_name="answer", tags=["t1"])
    events = events_of(llm, "p")
    assert {e["name"] for e in events} == {"answer"}
    assert all("t1" in e["tags"] for e in events)
    nested = events_of(PromptTemplate.from_template("{q}") | llm, {"q": "x"})
    llm_events = [e for e in nested if e["event"].startswith("on_llm")]
    assert llm_events and {e["name"] for e in llm_events} == {"answer"}
    assert all("t1" in e["tags"] for e in llm_events)


class Names(BaseCallbackHandler):
    def __init__(self) -> None:
        self.seen: list[tuple[str, list[str]]] = []

    def on_llm_start(self, serialized: Any, prompts: Any, **kw: Any) -> None:
        self.seen.append((kw["name"], kw["tags"]))


def test_with_config_reaches_the_run_on_both_paths(flavour: str) -> None:
    handler = Names()
    llm = FakeLLM(["ab"]).with_config(run_name="answer", tags=["t1"])
    llm = llm.with_config(tags=["t2"], callbacks=[handler])
    invoke_of(llm, flavour, "p")
    collect(stream_of(llm, flavour, "p", {"tags": ["t3"]}))
    assert [name for name, _ in handler.seen] == ["answer", "answer"]
    assert {"t1", "t2"} <= set(handler.seen[0][1])
    assert {"t1", "t2", "t3"} <= set(handler.seen[1][1])


def test_chained_with_config_merges() -> None:
    base = FakeLLM(["x"])
    bound = base.with_config(tags=["b"], metadata={"k": 1}).with_config(
        tags=["a"], metadata={"j": 2}, run_name="n"
    )
    assert bound.bound is base
    assert bound.config == {"tags": ["a", "b"], "metadata": {"k": 1, "j": 2}, "run_name": "n"}


def test_a_binding_takes_the_bound_runnables_name() -> None:
    assert FakeLLM(["x"]).bind(stop=["y"]).get_name() == "FakeLLM"


# -- with_retry -----------------------------------------------------------------------------


def test_retry_retries_invoke(flavour: str) -> None:
    llm = Flaky("abc", failures=2, fail_at=1)
    assert invoke_of(llm.with_retry(**FAST), flavour, "p") == "abc"
    assert llm.calls == 3


def test_retry_gives_up_after_the_last_attempt(flavour: str) -> None:
    llm = Flaky("abc", failures=5)
    with pytest.raises(ProviderError):
        invoke_of(llm.with_retry(stop_after_attempt=2, **FAST), flavour, "p")
    assert llm.calls == 2


def test_retry_only_retries_the_given_exception_types(flavour: str) -> None:
    def broken(x: Any) -> Any:
        broken.calls += 1  # type: ignore[attr-defined]
        raise KeyError("not retried")

    broken.calls = 0  # type: ignore[attr-defined]
    retried = RunnableLambda(broken).with_retry(retry_if_exception_type=(ValueError,), **FAST)
    with pytest.raises(KeyError):
        invoke_of(retried, flavour, 1)
    assert broken.calls == 1  # type: ignore[attr-defined]


def test_retry_retries_a_stream_that_fails_before_its_first_chunk(flavour: str) -> None:
    llm = Flaky("abc", failures=2, fail_at=0)
    assert collect(stream_of(llm.with_retry(**FAST), flavour, "p")) == ["a", "b", "c"]
    assert llm.calls == 3


def test_retry_does_not_retry_a_stream_after_its_first_chunk(flavour: str) -> None:
    llm = Flaky("abcd", failures=1, fail_at=2)
    got: list[str] = []
    with pytest.raises(ProviderError) as info:
        drain(stream_of(llm.with_retry(**FAST), flavour, "p"), got)
    assert got == ["a", "b"]
    assert info.value.partial_text == "ab"
    assert llm.calls == 1


def test_an_empty_stream_is_a_success(flavour: str) -> None:
    calls: list[int] = []

    def nothing(chunks: Iterator[Any]) -> Iterator[Any]:
        calls.append(1)
        yield from ()

    def fallback(chunks: Iterator[Any]) -> Iterator[Any]:
        calls.append(2)
        yield "fallback"

    empty = RunnableGenerator(nothing)
    assert collect(stream_of(empty.with_retry(**FAST), flavour, "x")) == []
    assert calls == [1]
    assert (
        collect(stream_of(empty.with_fallbacks([RunnableGenerator(fallback)]), flavour, "x")) == []
    )
    assert calls == [1, 1]


def test_retry_waits_at_least_retry_after(monkeypatch: pytest.MonkeyPatch, flavour: str) -> None:
    slept: list[float] = []

    async def asleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(wrappers_module, "_sleep", slept.append)
    monkeypatch.setattr(wrappers_module, "_asleep", asleep)
    limited = RateLimitError("slow down", retry_after=7.5)
    llm = Flaky("ab", failures=2, error=limited)
    assert invoke_of(llm.with_retry(**FAST), flavour, "p") == "ab"
    assert collect(stream_of(Flaky("ab", 1, error=limited).with_retry(**FAST), flavour, "p")) == [
        "a",
        "b",
    ]
    assert slept == [7.5, 7.5, 7.5]


def test_retry_backs_off_exponentially_within_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(wrappers_module, "_sleep", slept.append)
    params = {"initial": 0.5, "max": 3.0, "exp_base": 2.0, "jitter": 0.25}
    llm = Flaky("ab", failures=5)
    retried = llm.with_retry(stop_after_attempt=6, exponential_jitter_params=params)
    assert isinstance(retried, RunnableRetry)
    assert retried.invoke("p") == "ab"
    bases = [0.5, 1.0, 2.0, 3.0, 3.0]
    assert len(slept) == 5
    assert all(b <= s <= b + 0.25 for b, s in zip(bases, slept, strict=True))


def test_retry_needs_one_attempt_and_known_jitter_params() -> None:
    with pytest.raises(InvalidInputError):
        FakeLLM(["x"]).with_retry(stop_after_attempt=0)
    with pytest.raises(InvalidInputError, match="maximum"):
        FakeLLM(["x"]).with_retry(exponential_jitter_params={"maximum": 1.0})


# -- with_fallbacks -------------------------------------------------------------------------


def test_fallbacks_take_over_before_the_first_chunk(flavour: str) -> None:
    primary = Flaky("abc", failures=9, fail_at=0)
    backup = FakeLLM(["xyz"])
    runnable = primary.with_fallbacks([backup])
    assert collect(stream_of(runnable, flavour, "p")) == ["x", "y", "z"]
    assert invoke_of(runnable, flavour, "p") == "xyz"


def test_fallbacks_do_not_take_over_after_the_first_chunk(flavour: str) -> None:
    primary = Flaky("abcd", failures=9, fail_at=2)
    backup = FakeLLM(["xyz"])
    got: list[str] = []
    with pytest.raises(ProviderError):
        drain(stream_of(primary.with_fallbacks([backup]), flavour, "p"), got)
    assert got == ["a", "b"]
    assert backup.calls == 0


def test_when_every_fallback_fails_the_first_error_is_raised(flavour: str) -> None:
    runnables = [
        RunnableLambda(lambda x: (_ for _ in ()).throw(KeyError("first"))),
        RunnableLambda(lambda x: (_ for _ in ()).throw(ValueError("second"))),
        RunnableLambda(lambda x: (_ for _ in ()).throw(LookupError("third"))),
    ]
    runnable = runnables[0].with_fallbacks(runnables[1:])
    with pytest.raises(KeyError, match="first"):
        invoke_of(runnable, flavour, 1)
    with pytest.raises(KeyError, match="first"):
        collect(stream_of(runnable, flavour, 1))


def test_fallbacks_handle_only_the_given_exceptions(flavour: str) -> None:
    primary = Flaky("abc", failures=9, error=KeyError("not handled"))
    backup = FakeLLM(["xyz"])
    runnable = primary.with_fallbacks([backup], exceptions_to_handle=(ValueError,))
    with pytest.raises(ProviderError, match="not handled"):
        invoke_of(runnable, flavour, "p")
    with pytest.raises(ProviderError, match="not handled"):
        collect(stream_of(runnable, flavour, "p"))
    assert backup.calls == 0
    handled = primary.with_fallbacks([backup], exceptions_to_handle=(ProviderError,))
    assert invoke_of(handled, flavour, "p") == "xyz"


# -- inside a streaming chain ---------------------------------------------------------------


class Picky:
    """A generator step that fails, before any output, on its first ``failures`` runs;
    it records the input each run saw."""

    def __init__(self, failures: int, read_before_failing: int = 2) -> None:
        self.failures = failures
        self.read = read_before_failing
        self.runs: list[list[str]] = []

    def __call__(self, chunks: Iterator[str]) -> Iterator[str]:
        seen: list[str] = []
        self.runs.append(seen)
        failing = len(self.runs) <= self.failures
        for chunk in chunks:
            seen.append(chunk)
            if failing and len(seen) == self.read:
                raise KeyError("picky")
        yield "".join(seen).upper()


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
