"""User functions: lambdas block on their input (documented), generators truly stream,
sync and async functions work on both paths, and strict mode refuses silent buffering."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from helpers import collect, events_of, invoke_of, is_sync, stream_of
from stream_probes import Outcomes, settle, take_then

from lmstream import (
    AsyncCallbackHandler,
    BaseCallbackHandler,
    FakeLLM,
    PromptTemplate,
    Runnable,
    RunnableGenerator,
    RunnableLambda,
    StreamingUnsupportedError,
    StrOutputParser,
    adispatch_custom_event,
    dispatch_custom_event,
)

TEXT = "the quick brown fox jumps over the lazy dog"


def chain(llm: Any) -> Runnable[Any, str]:
    return PromptTemplate.from_template("Q: {q}") | llm | StrOutputParser()


# -- lambdas --------------------------------------------------------------------------------


def upper(x: str) -> str:
    return x.upper()


async def aupper(x: str) -> str:
    await asyncio.sleep(0)
    return x.upper()


@pytest.mark.parametrize("fn", [upper, aupper], ids=["sync_fn", "async_fn"])
def test_a_lambda_waits_for_its_whole_input(flavour: str, fn: Any) -> None:
    seq = FakeLLM(["abc"]) | RunnableLambda(fn)
    assert collect(stream_of(seq, flavour, "p")) == ["ABC"]  # one chunk: documented
    assert invoke_of(seq, flavour, "p") == "ABC"


@pytest.mark.parametrize("fn", [upper, aupper], ids=["sync_fn", "async_fn"])
def test_sync_and_async_functions_work_on_both_paths(flavour: str, fn: Any) -> None:
    runnable = RunnableLambda(fn)
    assert invoke_of(runnable, flavour, "ab") == "AB"
    assert collect(stream_of(runnable, flavour, "ab")) == ["AB"]


def test_a_lambda_with_both_functions_uses_each_on_its_path(flavour: str) -> None:
    async def afunc(x: str) -> str:
        return f"async:{x}"

    runnable = RunnableLambda(lambda x: f"sync:{x}", afunc)
    expected = "sync:a" if is_sync(flavour) else "async:a"
    assert invoke_of(runnable, flavour, "a") == expected
    assert collect(stream_of(runnable, flavour, "a")) == [expected]


def test_a_lambda_takes_its_name_from_the_function() -> None:
    assert RunnableLambda(upper).get_name() == "upper"
    assert RunnableLambda(aupper).get_name() == "aupper"
    assert RunnableLambda(lambda x: x).get_name() == "RunnableLambda"
    assert RunnableLambda(upper, name="shout").get_name() == "shout"


def test_a_lambda_needs_a_callable() -> None:
    with pytest.raises(TypeError):
        RunnableLambda("not callable")  # type: ignore[arg-type]


def test_a_lambda_returning_a_runnable_streams_it(flavour: str) -> None:
    llm = FakeLLM(["hey"])

    def route(x: str) -> Any:
        return llm

    async def aroute(x: str) -> Any:
        return llm

    for fn in (route, aroute):
        assert collect(stream_of(RunnableLambda(fn), flavour, "p")) == ["h", "e", "y"]
        assert invoke_of(RunnableLambda(fn), flavour, "p") == "hey"


def test_a_lambda_returning_itself_hits_the_recursion_limit(flavour: str) -> None:
    def again(x: Any) -> Any:
        return looping

    looping = RunnableLambda(again)
    with pytest.raises(RecursionError):
        invoke_of(looping, flavour, 1)
    with pytest.raises(RecursionError):
        collect(stream_of(looping, flavour, 1))


@pytest.mark.parametrize(("depth", "fails"), [(3, False), (4, True)])
def test_the_recursion_limit_counts_returned_runnables(
    flavour: str, depth: int, fails: bool
) -> None:
    def nest(n: int) -> Runnable[Any, Any]:
        if n == 0:
            return RunnableLambda(lambda x: "done")
        return RunnableLambda(lambda x: nest(n - 1))

    config = {"recursion_limit": 3}
    if fails:
        with pytest.raises(RecursionError):
            invoke_of(nest(depth), flavour, 0, config)
    else:
        assert invoke_of(nest(depth), flavour, 0, config) == "done"
        assert collect(stream_of(nest(depth), flavour, 0, config)) == ["done"]


def counting(x: int) -> Iterator[int]:
    yield from range(x)


async def acounting(x: int) -> AsyncIterator[int]:
    for i in range(x):
        await asyncio.sleep(0)
        yield i


@pytest.mark.parametrize("fn", [counting, acounting], ids=["sync_gen", "async_gen"])
def test_a_generator_lambda_streams_its_output(flavour: str, fn: Any) -> None:
    runnable = RunnableLambda(fn)
    assert collect(stream_of(runnable, flavour, 4)) == [0, 1, 2, 3]
    assert invoke_of(runnable, flavour, 4) == 0 + 1 + 2 + 3


def sees_config(x: Any, config: Any) -> Any:
    return (x, sorted(config["tags"]), config["metadata"].get("who"))


async def asees_config(x: Any, config: Any) -> Any:
    return (x, sorted(config["tags"]), config["metadata"].get("who"))


def gen_sees_config(x: Any, config: Any) -> Iterator[Any]:
    yield (x, sorted(config["tags"]), config["metadata"].get("who"))


@pytest.mark.parametrize("fn", [sees_config, asees_config, gen_sees_config])
def test_the_config_is_passed_to_functions_that_take_it(flavour: str, fn: Any) -> None:
    config = {"tags": ["t1"], "metadata": {"who": "me"}}
    expected = ("x", ["t1"], "me")
    assert invoke_of(RunnableLambda(fn), flavour, "x", config) == expected
    assert collect(stream_of(RunnableLambda(fn), flavour, "x", config)) == [expected]


# -- runs inside functions ------------------------------------------------------------------


class Starts(BaseCallbackHandler):
    """Records (name, run_id, parent_run_id) of every start, and the chunk count."""

    def __init__(self) -> None:
        self.starts: dict[str, tuple[Any, Any]] = {}
        self.tokens = 0
        self.lock = threading.Lock()

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: Any, **kw: Any) -> None:
        with self.lock:
            self.starts[kw["name"]] = (run_id, kw.get("parent_run_id"))

    def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: Any, **kw: Any) -> None:
        with self.lock:
            self.starts[kw["name"]] = (run_id, kw.get("parent_run_id"))

    def on_llm_new_token(self, token: str, **kw: Any) -> None:
        with self.lock:
            self.tokens += 1


def calling(llm: FakeLLM, how: str) -> Any:
    if how == "invoke":

        def outer(x: str) -> str:
            return llm.invoke(x)

        return outer
    if how == "stream":

        def outer(x: str) -> str:
            return "".join(llm.stream(x))

        return outer
    if how == "ainvoke":

        async def aouter(x: str) -> str:
            return await llm.ainvoke(x)

        return aouter

    async def aouter(x: str) -> str:
        return "".join([c async for c in llm.astream(x)])

    return aouter


@pytest.mark.parametrize("how", ["invoke", "stream", "ainvoke", "astream"])
def test_a_runnable_called_inside_a_function_is_a_child_run(flavour: str, how: str) -> None:
    llm = FakeLLM(["abc"])
    handler = Starts()
    outer = RunnableLambda(calling(llm, how), name="outer")
    config = {"callbacks": [handler]}
    assert collect(stream_of(outer, flavour, "p", config)) == ["abc"]
    outer_id, outer_parent = handler.starts["outer"]
    _, llm_parent = handler.starts["FakeLLM"]
    assert outer_parent is None
    assert llm_parent == outer_id
    assert handler.tokens == (3 if "stream" in how else 0)


@pytest.mark.parametrize("how", ["invoke", "stream", "ainvoke", "astream"])
def test_events_of_a_nested_call_appear_under_the_function(how: str) -> None:
    llm = FakeLLM(["abc"])
    outer = RunnableLambda(calling(llm, how), name="outer")
    events = events_of(outer, "p")
    (outer_start,) = [e for e in events if e["event"] == "on_chain_start"]
    (llm_start,) = [e for e in events if e["event"] == "on_llm_start"]
    assert llm_start["parent_ids"] == [outer_start["run_id"]]
    streamed = [e["data"]["chunk"].text for e in events if e["event"] == "on_llm_stream"]
    assert "".join(streamed) == ("abc" if "stream" in how else "")
    assert events[-1]["event"] == "on_chain_end" and events[-1]["data"]["output"] == "abc"


@pytest.mark.parametrize("how", ["stream", "astream"])
def test_a_nested_stream_inside_a_function_streams_its_events_live(how: str) -> None:
    llm = FakeLLM([TEXT], delay=0.002)
    outer = RunnableLambda(calling(llm, how))
    produced_at_event: list[int] = []

    async def main() -> None:
        async for event in outer.astream_events("p"):
            if event["event"] == "on_llm_stream":
                produced_at_event.append(llm.tokens_produced)

    asyncio.run(main())
    assert len(produced_at_event) == len(TEXT)
    assert produced_at_event[0] < len(TEXT)  # seen while the model was still generating


def test_custom_events_inside_a_run_nobody_listens_to_are_dropped(flavour: str) -> None:
    def step(x: str) -> str:
        dispatch_custom_event("progress", {"x": x})
        return x

    async def astep(x: str) -> str:
        await adispatch_custom_event("progress", {"x": x})
        return x

    def gen(chunks: Iterator[str]) -> Iterator[str]:
        for chunk in chunks:
            dispatch_custom_event("chunk", chunk)
            yield chunk

    seq = RunnableLambda(step) | RunnableLambda(astep) | gen
    assert invoke_of(seq, flavour, "a") == "a"
    assert collect(stream_of(seq, flavour, "a")) == ["a"]


# -- RunnableGenerator ----------------------------------------------------------------------


def shout(chunks: Iterator[str]) -> Iterator[str]:
    for chunk in chunks:
        yield chunk.upper()


async def ashout(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    async for chunk in chunks:
        yield chunk.upper()


GENERATORS = [
    pytest.param(RunnableGenerator(shout), id="sync_only"),
    pytest.param(RunnableGenerator(ashout), id="async_only"),
    pytest.param(RunnableGenerator(shout, ashout), id="both"),
]


@pytest.mark.parametrize("gen", GENERATORS)
def test_a_generator_streams_as_its_input_arrives(flavour: str, gen: Any) -> None:
    llm = FakeLLM([TEXT])
    stream = stream_of(llm | gen, flavour, "p")
    if is_sync(flavour):
        first = next(stream)
        produced = llm.tokens_produced
        stream.close()
    else:

        async def run() -> tuple[str, int]:
            item = await stream.__anext__()
            count = llm.tokens_produced
            await stream.aclose()
            return item, count

        first, produced = asyncio.run(run())
    assert first == "T"
    assert produced <= 10 < len(TEXT)  # a thread bridge may run a few chunks ahead


@pytest.mark.parametrize("gen", GENERATORS)
def test_a_generator_invokes_to_the_sum_of_its_stream(flavour: str, gen: Any) -> None:
    seq = FakeLLM(["abc"]) | gen
    assert collect(stream_of(seq, flavour, "p")) == ["A", "B", "C"]
    assert invoke_of(seq, flavour, "p") == "ABC"
    assert invoke_of(gen, flavour, "xyz") == "XYZ"


@pytest.mark.parametrize("gen", GENERATORS)
def test_closing_a_generator_stream_closes_the_function_and_the_model(
    flavour: str, gen: Any
) -> None:
    llm = FakeLLM([TEXT * 3], delay=0.001)
    handler = Outcomes()
    stream = stream_of(llm | gen, flavour, "p", {"callbacks": [handler]})
    items, (order, unended) = take_then(stream, 2, handler.snapshot)
    assert items == ["T", "H"]
    assert not unended and len(order) == 3  # sequence, model and generator: all cancelled
    handler.assert_children_first(order)
    produced = llm.tokens_produced
    settle()
    assert llm.tokens_produced == produced < len(TEXT)


def counting_forever(x: Any) -> Iterator[int]:
    i = 0
    while True:
        yield i
        i += 1


async def acounting_forever(x: Any) -> AsyncIterator[int]:
    i = 0
    while True:
        await asyncio.sleep(0)
        yield i
        i += 1


@pytest.mark.parametrize(
    "fn",
    [counting_forever, acounting_forever, lambda x: FakeLLM([TEXT])],
    ids=["sync_gen", "async_gen", "returns_model"],
)
def test_closing_a_lambda_stream_ends_its_runs_at_once(flavour: str, fn: Any) -> None:
    handler = Outcomes()
    stream = stream_of(RunnableLambda(fn), flavour, "p", {"callbacks": [handler]})
    _, (order, unended) = take_then(stream, 2, handler.snapshot)
    assert not unended and order
    handler.assert_children_first(order)


def test_an_async_generator_on_the_sync_path_reads_its_input_off_the_background_loop() -> None:
    # upstream work that itself needs lmstream's background loop: async handlers, async
    # generator functions
    class Handler(AsyncCallbackHandler):
        def __init__(self) -> None:
            self.tokens = 0

        async def on_llm_new_token(self, token: str, **kw: Any) -> None:
            self.tokens += 1

    handler = Handler()
    seq = FakeLLM(["abc"]) | ashout
    assert list(seq.stream("p", {"callbacks": [handler]})) == ["A", "B", "C"]
    assert handler.tokens == 3

    async def letters(x: str) -> AsyncIterator[str]:
        for char in x:
            yield char

    seq2 = RunnableLambda(letters) | ashout
    assert list(seq2.stream("xyz")) == ["X", "Y", "Z"]


def test_a_generator_gets_the_config_when_it_takes_it(flavour: str) -> None:
    def tagged(chunks: Iterator[str], config: Any) -> Iterator[str]:
        for chunk in chunks:
            yield f"{chunk}:{','.join(sorted(config['tags']))}"

    async def atagged(chunks: AsyncIterator[str], config: Any) -> AsyncIterator[str]:
        async for chunk in chunks:
            yield f"{chunk}:{','.join(sorted(config['tags']))}"

    for fn in (tagged, atagged):
        out = collect(stream_of(RunnableGenerator(fn), flavour, "a", {"tags": ["t"]}))
        assert out == ["a:t"]


def test_an_error_in_a_generator_propagates_after_its_chunks(flavour: str) -> None:
    def broken(chunks: Iterator[str]) -> Iterator[str]:
        for chunk in chunks:
            if chunk == "c":
                raise KeyError("at c")
            yield chunk

    got: list[str] = []
    stream = stream_of(FakeLLM(["abcd"]) | broken, flavour, "p")

    async def adrain() -> None:
        async for chunk in stream:
            got.append(chunk)

    def drain() -> None:
        if is_sync(flavour):
            got.extend(stream)
        else:
            asyncio.run(adrain())

    with pytest.raises(KeyError, match="at c"):
        drain()
    assert got == ["a", "b"]


# -- strict mode ----------------------------------------------------------------------------


def strict_ways(runnable: Runnable[Any, Any]) -> list[tuple[Runnable[Any, Any], Any]]:
    return [(runnable, {"strict": True}), (runnable.with_config(strict=True), None)]


def test_strict_mode_refuses_a_lambda_after_a_streaming_model(flavour: str) -> None:
    seq = chain(FakeLLM(["abc"])) | RunnableLambda(upper)
    for runnable, config in strict_ways(seq):
        with pytest.raises(StreamingUnsupportedError, match="upper"):
            collect(stream_of(runnable, flavour, {"q": "x"}, config))
    assert collect(stream_of(seq, flavour, {"q": "x"})) == ["ABC"]  # not strict: buffers


def test_strict_mode_lets_a_fully_streaming_chain_through(flavour: str) -> None:
    seq = chain(FakeLLM(["abc"])) | shout
    for runnable, config in strict_ways(seq):
        assert collect(stream_of(runnable, flavour, {"q": "x"}, config)) == ["A", "B", "C"]


def test_strict_mode_refuses_a_model_that_cannot_stream(flavour: str) -> None:
    llm = FakeLLM(["abc"], streaming=False)
    assert collect(stream_of(llm, flavour, "p")) == ["abc"]  # one chunk otherwise
    for runnable, config in strict_ways(llm):
        with pytest.raises(StreamingUnsupportedError):
            collect(stream_of(runnable, flavour, "p", config))
    with pytest.raises(StreamingUnsupportedError):
        collect(stream_of(chain(llm), flavour, {"q": "x"}, {"strict": True}))


def test_strict_mode_does_not_affect_invoke(flavour: str) -> None:
    seq = chain(FakeLLM(["abc"], streaming=False)) | RunnableLambda(upper)
    assert invoke_of(seq, flavour, {"q": "x"}, {"strict": True}) == "ABC"
