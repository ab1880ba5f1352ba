"""Wrappers: bound kwargs and config, retries and fallbacks (before the first chunk only)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from failing_runnables import FAST, Flaky, drain
from helpers import collect, events_of, invoke_of, stream_of

from lmstream import (
    BaseCallbackHandler,
    FakeLLM,
    InvalidInputError,
    PromptTemplate,
    ProviderError,
    RateLimitError,
    RunnableBinding,
    RunnableGenerator,
    RunnableLambda,
    RunnableRetry,
    StrOutputParser,
)
from lmstream import wrappers as wrappers_module

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


def test_a_binding_streams_chunks_with_its_kwargs_and_config(flavour: str) -> None:
    from helpers import chunks_of

    from lmstream import FakeChatModel

    seen: list[Any] = []

    class Seen(BaseCallbackHandler):
        def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
            seen.append(kw.get("tags"))

    def get_weather(city: str) -> str:
        """The weather in a city."""
        return city

    model = FakeChatModel(["sunny"])
    bound = model.bind_tools([get_weather]).with_config(tags=["bound"])
    chunks = chunks_of(bound, flavour, "weather?", config={"callbacks": [Seen()]})
    assert "".join(c.text for c in chunks) == "sunny"
    assert [t["function"]["name"] for t in model.last_kwargs["tools"]] == ["get_weather"]
    assert seen and "bound" in seen[0]
