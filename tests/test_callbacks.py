"""Callback handlers: sync and async handlers on both paths, order, policy, custom events."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

import pytest
from helpers import collect, invoke_of, is_sync, stream_of, take

from lmstream import (
    AsyncCallbackHandler,
    BaseCallbackHandler,
    CallbackError,
    FakeLLM,
    PromptTemplate,
    RunnableLambda,
    StrOutputParser,
    dispatch_custom_event,
)


class Log(BaseCallbackHandler):
    """Records every call as (event, summary)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.kwargs: dict[str, list[dict[str, Any]]] = {}

    def _note(self, event: str, summary: Any, kwargs: dict[str, Any]) -> None:
        self.calls.append((event, summary))
        self.kwargs.setdefault(event, []).append(kwargs)

    def on_llm_start(self, serialized: Any, prompts: list[str], **kw: Any) -> None:
        self._note("llm_start", prompts, kw)

    def on_llm_new_token(self, token: str, **kw: Any) -> None:
        self._note("token", token, kw)

    def on_llm_end(self, response: Any, **kw: Any) -> None:
        self._note("llm_end", response.generations[0][0].text, kw)

    def on_llm_error(self, error: BaseException, **kw: Any) -> None:
        self._note("llm_error", type(error).__name__, kw)

    def on_llm_cancel(self, response: Any, **kw: Any) -> None:
        self._note("llm_cancel", response.generations[0][0].text, kw)

    def on_chain_start(self, serialized: Any, inputs: Any, **kw: Any) -> None:
        self._note("chain_start", (kw["name"], inputs), kw)

    def on_chain_end(self, outputs: Any, **kw: Any) -> None:
        self._note("chain_end", (outputs, kw.get("inputs")), kw)

    def on_chain_error(self, error: BaseException, **kw: Any) -> None:
        self._note("chain_error", type(error).__name__, kw)

    def on_custom_event(self, name: str, data: Any, **kw: Any) -> None:
        self._note("custom", (name, data), kw)


class AsyncLog(AsyncCallbackHandler):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def on_llm_start(self, serialized: Any, prompts: list[str], **kw: Any) -> None:
        self.calls.append(("llm_start", prompts))

    async def on_llm_new_token(self, token: str, **kw: Any) -> None:
        self.calls.append(("token", token))

    async def on_llm_end(self, response: Any, **kw: Any) -> None:
        self.calls.append(("llm_end", response.generations[0][0].text))


def test_a_handler_sees_start_tokens_and_end(flavour: str) -> None:
    log = Log()
    llm = FakeLLM(["hey"])
    assert "".join(collect(stream_of(llm, flavour, "hi", {"callbacks": [log]}))) == "hey"
    assert log.calls == [
        ("llm_start", ["hi"]),
        ("token", "h"),
        ("token", "e"),
        ("token", "y"),
        ("llm_end", "hey"),
    ]
    start = log.kwargs["llm_start"][0]
    assert start["batch_size"] == 1 and start["name"] == "FakeLLM"
    assert start["metadata"]["ls_provider"] == "fake"
    assert start["metadata"]["ls_model_type"] == "llm"
    assert start["invocation_params"]["_type"] == "fake"
    assert isinstance(start["run_id"], UUID) and start["parent_run_id"] is None
    assert log.kwargs["token"][2]["chunk"].finish_reason == "stop"


def test_async_handlers_work_on_both_paths(flavour: str) -> None:
    log = AsyncLog()
    llm = FakeLLM(["ok"], callbacks=[log])
    collect(stream_of(llm, flavour, "p"))
    invoke_of(llm, flavour, "q")
    assert log.calls == [
        ("llm_start", ["p"]),
        ("token", "o"),
        ("token", "k"),
        ("llm_end", "ok"),
        ("llm_start", ["q"]),
        ("llm_end", "ok"),
    ]


def test_a_raising_handler_is_logged_not_fatal(
    flavour: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(BaseCallbackHandler):
        def on_llm_new_token(self, token: str, **kw: Any) -> None:
            raise RuntimeError("handler bug")

    with caplog.at_level(logging.WARNING, logger="lmstream.callbacks"):
        out = collect(stream_of(FakeLLM(["abc"], callbacks=[Broken()]), flavour, "p"))
    assert "".join(out) == "abc"
    assert "Error in Broken.on_llm_new_token callback" in caplog.text


def test_a_handler_may_ask_to_raise(flavour: str) -> None:
    class Strict(BaseCallbackHandler):
        raise_error = True

        def on_llm_start(self, *args: Any, **kw: Any) -> None:
            raise RuntimeError("stop right there")

    with pytest.raises(RuntimeError, match="stop right there"):
        invoke_of(FakeLLM(["abc"], callbacks=[Strict()]), flavour, "p")


def test_handlers_can_ignore_a_family(flavour: str) -> None:
    class NoLLM(Log):
        ignore_llm = True

    log = NoLLM()
    chain = RunnableLambda(lambda x: x) | FakeLLM(["a"])
    invoke_of(chain, flavour, "p", {"callbacks": [log]})
    assert [c[0] for c in log.calls] == ["chain_start", "chain_start", "chain_end", "chain_end"]


def test_cancellation_is_not_reported_as_an_error(flavour: str) -> None:
    log = Log()
    take(stream_of(FakeLLM(["abcdef"], callbacks=[log]), flavour, "p"), 2)
    assert [c[0] for c in log.calls] == ["llm_start", "token", "token", "llm_cancel"]
    assert log.calls[-1] == ("llm_cancel", "ab")


def test_chain_callbacks_follow_the_stream(flavour: str) -> None:
    log = Log()
    chain = PromptTemplate.from_template("Q: {q}") | FakeLLM(["ab"]) | StrOutputParser()
    assert collect(stream_of(chain, flavour, {"q": "hi"}, {"callbacks": [log]})) == ["a", "b"]
    assert log.calls == [
        ("chain_start", ("RunnableSequence", {"input": ""})),
        ("chain_start", ("PromptTemplate", {"q": "hi"})),
        ("chain_end", (log.calls[2][1][0], {"q": "hi"})),
        ("llm_start", ["Q: hi"]),
        ("token", "a"),
        ("chain_start", ("StrOutputParser", {"input": ""})),
        ("token", "b"),
        ("llm_end", "ab"),
        ("chain_end", ("ab", "ab")),
        ("chain_end", ("ab", {"q": "hi"})),
    ]
    assert log.calls[2][1][0].to_string() == "Q: hi"
    tags = [kw["tags"] for kw in log.kwargs["llm_start"]]
    assert tags == [["seq:step:2"]]
    seq_id = log.kwargs["chain_start"][0]["run_id"]
    assert log.kwargs["llm_start"][0]["parent_run_id"] == seq_id


def test_an_error_in_a_chain_is_reported_by_every_run(flavour: str) -> None:
    log = Log()
    chain = FakeLLM(["abcd"], error_after=2) | StrOutputParser()
    with pytest.raises(Exception, match="failed after 2 tokens"):
        collect(stream_of(chain, flavour, "p", {"callbacks": [log]}))
    events = [c[0] for c in log.calls]
    assert events[-3:] == ["llm_error", "chain_error", "chain_error"]


def test_local_callbacks_are_not_inherited() -> None:
    log = Log()
    parser = StrOutputParser()
    chain = RunnableLambda(lambda x: x, name="outer") | parser
    chain.invoke("p", {"callbacks": [log]})
    assert ("chain_start", ("outer", "p")) in log.calls
    own = Log()
    FakeLLM(["z"], callbacks=[own]).invoke("p")
    assert [c[0] for c in own.calls] == ["llm_start", "llm_end"]


def test_custom_events_reach_handlers_from_inside_a_run(flavour: str) -> None:
    log = Log()

    def step(x: str) -> str:
        dispatch_custom_event("progress", {"done": 1})
        return x

    chain = RunnableLambda(step) | StrOutputParser()
    invoke_of(chain, flavour, "p", {"callbacks": [log]})
    assert ("custom", ("progress", {"done": 1})) in log.calls
    custom = log.kwargs["custom"][0]
    lambda_start = next(
        kw for (ev, s), kw in zip(log.calls, _kwargs_in_order(log), strict=True)
        if ev == "chain_start" and s[0] == "step"
    )  # fmt: skip
    assert custom["run_id"] == lambda_start["run_id"]


def _kwargs_in_order(log: Log) -> list[dict[str, Any]]:
    seen: dict[str, int] = {}
    out = []
    for event, _ in log.calls:
        i = seen.get(event, 0)
        out.append(log.kwargs[event][i])
        seen[event] = i + 1
    return out


def test_custom_events_outside_a_run_are_a_typed_error() -> None:
    with pytest.raises(CallbackError, match="parent run"):
        dispatch_custom_event("x", {})


def test_a_handler_in_config_reaches_runs_inside_lambdas(flavour: str) -> None:
    log = Log()
    llm = FakeLLM(["in"])
    outer = RunnableLambda(lambda x: llm.invoke(x), name="outer")
    assert invoke_of(outer, flavour, "p", {"callbacks": [log]}) == "in"
    starts = _kwargs_in_order(log)
    outer_id = starts[0]["run_id"]
    llm_start = log.kwargs["llm_start"][0]
    assert llm_start["parent_run_id"] == outer_id
    if not is_sync(flavour):
        assert [c[0] for c in log.calls] == ["chain_start", "llm_start", "llm_end", "chain_end"]
