"""Composition: sequences stream through every step, ``|`` coerces functions and dicts,
parallel maps run their branches at once and stream ``{key: chunk}``."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from helpers import collect, invoke_of, is_sync, stream_of
from stream_probes import Outcomes, settle, take_then

from lmstream import (
    BaseCallbackHandler,
    FakeLLM,
    InvalidInputError,
    PromptTemplate,
    ProviderError,
    Runnable,
    RunnableGenerator,
    RunnableLambda,
    RunnableParallel,
    RunnablePassthrough,
    RunnableSequence,
    StreamingStep,
    StrOutputParser,
)
from lmstream._accumulate import aggregate
from lmstream._merge import ATee, Tee

WAIT = 10.0
TEXT = "the quick brown fox jumps over the lazy dog"


def chain(llm: Any) -> Runnable[Any, str]:
    return PromptTemplate.from_template("Q: {q}") | llm | StrOutputParser()


def first_and_count(stream: Any, llm: FakeLLM) -> tuple[Any, int]:
    """The first chunk of a stream and how many tokens the model had made by then."""
    if hasattr(stream, "__anext__"):

        async def run() -> tuple[Any, int]:
            first = await stream.__anext__()
            produced = llm.tokens_produced
            await stream.aclose()
            return first, produced

        return asyncio.run(run())
    first = next(stream)
    produced = llm.tokens_produced
    stream.close()
    return first, produced


# -- sequences ------------------------------------------------------------------------------


def test_a_sequence_invokes_and_streams_the_same_text(flavour: str) -> None:
    seq = chain(FakeLLM(["hello"]))
    assert invoke_of(seq, flavour, {"q": "hi"}) == "hello"
    assert collect(stream_of(seq, flavour, {"q": "hi"})) == list("hello")


def test_a_sequence_batches() -> None:
    seq = chain(FakeLLM(["ok"]))
    assert seq.batch([{"q": "a"}, {"q": "b"}]) == ["ok", "ok"]
    assert asyncio.run(seq.abatch([{"q": "a"}, {"q": "b"}])) == ["ok", "ok"]


def test_sequences_flatten() -> None:
    a, b, c, d = (RunnableLambda(lambda x, i=i: [*x, i]) for i in range(4))
    seq = (a | b) | (c | d)
    assert isinstance(seq, RunnableSequence)
    assert seq.steps == [a, b, c, d]
    assert seq.first is a and seq.last is d and seq.middle == [b, c]
    assert a.pipe(b, c | d).steps == [a, b, c, d]
    assert seq.invoke([]) == [0, 1, 2, 3]


def test_a_sequence_needs_two_steps() -> None:
    with pytest.raises(InvalidInputError):
        RunnableSequence(RunnableLambda(lambda x: x))


class Recorder(Runnable[Any, Any]):
    """Records the kwargs of each call."""

    def __init__(self) -> None:
        self.kwargs: list[dict[str, Any]] = []

    def invoke(self, input: Any, config: Any = None, **kwargs: Any) -> Any:
        self.kwargs.append(kwargs)
        return input


def test_call_kwargs_reach_the_first_step_only(flavour: str) -> None:
    first, second = Recorder(), Recorder()
    seq = first | second
    invoke_of(seq, flavour, "x", foo=1)
    collect(stream_of(seq, flavour, "x", foo=2))
    assert first.kwargs == [{"foo": 1}, {"foo": 2}]
    assert second.kwargs == [{}, {}]


def test_call_kwargs_reach_a_model_that_comes_first(flavour: str) -> None:
    seq = FakeLLM(["hello"]) | StrOutputParser()
    assert invoke_of(seq, flavour, "p", max_tokens=2) == "he"
    assert collect(stream_of(seq, flavour, "p", max_tokens=3)) == ["h", "e", "l"]


def shout(chunks: Iterator[str]) -> Iterator[str]:
    for chunk in chunks:
        yield chunk.upper()


async def ashout(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
    async for chunk in chunks:
        yield chunk.upper()


@pytest.mark.parametrize("gen", [shout, ashout], ids=["sync_gen", "async_gen"])
def test_prompt_llm_parser_generator_streams_through_every_step(flavour: str, gen: Any) -> None:
    llm = FakeLLM([TEXT])
    seq = chain(llm) | gen
    assert isinstance(seq.last, RunnableGenerator)
    first, produced = first_and_count(stream_of(seq, flavour, {"q": "x"}), llm)
    assert first == "T"
    # the model had barely started when the first chunk came out of the last step
    # (a thread bridge may run a few chunks ahead; it never buffers the whole stream)
    limit = 1 if (gen is shout) == is_sync(flavour) else 10
    assert produced <= limit < len(TEXT)
    assert collect(stream_of(seq, flavour, {"q": "x"})) == list(TEXT.upper())
    assert invoke_of(seq, flavour, {"q": "x"}) == TEXT.upper()


def test_closing_a_chain_stops_the_model(flavour: str) -> None:
    llm = FakeLLM([TEXT * 4], delay=0.001)
    stream = stream_of(chain(llm) | shout, flavour, {"q": "x"})
    items, produced = take_then(stream, 3, lambda: llm.tokens_produced)
    assert items == ["T", "H", "E"]
    assert produced <= 3 + 10
    settle()
    assert llm.tokens_produced == produced


# -- coercion -------------------------------------------------------------------------------


def plain(x: Any) -> Any:
    return x


async def aplain(x: Any) -> Any:
    return x


def test_pipe_coerces_functions_and_dicts() -> None:
    base = RunnableLambda(plain)
    assert type((base | plain).last) is RunnableLambda
    assert type((base | aplain).last) is RunnableLambda
    assert type((base | shout).last) is RunnableGenerator
    assert type((base | ashout).last) is RunnableGenerator
    mapped = (base | {"a": plain, "b": {"c": shout}}).last
    assert isinstance(mapped, RunnableParallel)
    assert type(mapped.steps["a"]) is RunnableLambda
    assert isinstance(mapped.steps["b"], RunnableParallel)


def test_pipe_from_the_left_coerces_too() -> None:
    base = RunnableLambda(lambda x: x + 1)
    seq = plain | base
    assert isinstance(seq, RunnableSequence) and type(seq.first) is RunnableLambda
    assert seq.last is base and seq.invoke(1) == 2
    assert type((shout | StrOutputParser()).first) is RunnableGenerator
    mapped = {"a": plain, "b": lambda x: x * 2} | RunnableLambda(lambda d: d["a"] + d["b"])
    assert isinstance(mapped.first, RunnableParallel)
    assert mapped.invoke(3) == 9


@pytest.mark.parametrize("bad", [1, "text", None, 2.5, [plain]])
def test_pipe_refuses_other_types(bad: Any) -> None:
    base = RunnableLambda(plain)
    with pytest.raises(InvalidInputError, match="unsupported type"):
        base | bad
    with pytest.raises(InvalidInputError, match="unsupported type"):
        bad | base


# -- parallel -------------------------------------------------------------------------------


def test_parallel_invoke_runs_branches_at_once(flavour: str) -> None:
    if is_sync(flavour):
        barrier = threading.Barrier(3, timeout=WAIT)  # breaks unless all three wait together

        def branch(x: int) -> int:
            barrier.wait()
            return x

        par = RunnableParallel(a=branch, b=lambda x: branch(x) + 1, c=lambda x: branch(x) + 2)
        assert par.invoke(1) == {"a": 1, "b": 2, "c": 3}
        return

    async def main() -> dict[str, Any]:
        arrived: list[str] = []
        everyone = asyncio.Event()

        def branch(key: str, offset: int) -> Any:
            async def run(x: int) -> int:
                arrived.append(key)
                if len(arrived) == 3:
                    everyone.set()
                await asyncio.wait_for(everyone.wait(), WAIT)
                return x + offset

            return run

        par = RunnableParallel(a=branch("a", 0), b=branch("b", 1), c=branch("c", 2))
        return await par.ainvoke(1)

    assert asyncio.run(main()) == {"a": 1, "b": 2, "c": 3}


def test_parallel_sync_branches_run_at_once_on_the_async_path() -> None:
    barrier = threading.Barrier(2, timeout=WAIT)

    def branch(x: int) -> int:
        barrier.wait()
        return x

    par = RunnableParallel(a=branch, b=branch)
    assert asyncio.run(par.ainvoke(5)) == {"a": 5, "b": 5}


def test_parallel_streams_key_chunks_that_add_up_to_invoke(flavour: str) -> None:
    par = RunnableParallel(a=FakeLLM(["abc"]), b=FakeLLM(["wxyz"]), c=lambda x: x.upper())
    chunks = collect(stream_of(par, flavour, "p"))
    assert all(len(chunk) == 1 for chunk in chunks)
    assert [c["a"] for c in chunks if "a" in c] == ["a", "b", "c"]
    assert [c["b"] for c in chunks if "b" in c] == ["w", "x", "y", "z"]
    assert [c["c"] for c in chunks if "c" in c] == ["P"]
    assert aggregate(chunks) == invoke_of(par, flavour, "p") == {"a": "abc", "b": "wxyz", "c": "P"}


def test_parallel_streams_each_branch_as_it_produces(flavour: str) -> None:
    # branch "late" waits until the consumer has seen a chunk of branch "early":
    # a parallel step that waited for every branch would time out
    seen_early = threading.Event()

    def late(chunks: Iterator[str]) -> Iterator[str]:
        for _ in chunks:
            pass
        if not seen_early.wait(WAIT):
            raise TimeoutError("branch output was held back")
        yield "late"

    par = RunnableParallel(early=FakeLLM(["ab"]), late=late)

    def on_chunk(chunk: dict[str, Any]) -> None:
        if "early" in chunk:
            seen_early.set()

    if is_sync(flavour):
        chunks = []
        for chunk in par.stream("p"):
            on_chunk(chunk)
            chunks.append(chunk)
    else:

        async def main() -> list[Any]:
            out = []
            async for chunk in par.astream("p"):
                on_chunk(chunk)
                out.append(chunk)
            return out

        chunks = asyncio.run(main())
    keys = [next(iter(chunk)) for chunk in chunks]
    assert keys.index("early") < keys.index("late")
    assert aggregate(chunks) == {"early": "ab", "late": "late"}


def test_an_error_in_one_branch_propagates(flavour: str) -> None:
    def broken(x: Any) -> Any:
        raise KeyError("branch failed")

    par = RunnableParallel(ok=FakeLLM(["abc"]), broken=broken)
    with pytest.raises(KeyError, match="branch failed"):
        invoke_of(par, flavour, "p")
    with pytest.raises(KeyError, match="branch failed"):
        collect(stream_of(par, flavour, "p"))


def test_closing_a_parallel_stream_closes_every_branch(flavour: str) -> None:
    closed: list[str] = []

    def endless(name: str) -> Any:
        def gen(chunks: Iterator[Any]) -> Iterator[str]:
            try:
                for _ in chunks:
                    pass
                while True:
                    yield name
            finally:
                closed.append(name)

        return gen

    llms = [FakeLLM([TEXT * 4]), FakeLLM([TEXT * 4])]
    par = RunnableParallel(a=llms[0], b=llms[1], c=endless("c"), d=endless("d"))

    def probe() -> tuple[list[str], list[int]]:
        return sorted(closed), [llm.tokens_produced for llm in llms]

    items, (closed_then, produced) = take_then(stream_of(par, flavour, "p"), 5, probe)
    assert len(items) == 5
    assert closed_then == ["c", "d"]  # closed before close()/aclose() returned
    assert all(n < len(TEXT * 4) for n in produced)
    settle()
    assert [llm.tokens_produced for llm in llms] == produced


def test_a_parallel_step_streams_inside_a_chain(flavour: str) -> None:
    llm = FakeLLM([TEXT])
    seq = chain(llm) | {"upper": shout, "same": RunnablePassthrough()}
    chunks = collect(stream_of(seq, flavour, {"q": "x"}))
    assert aggregate(chunks) == {"upper": TEXT.upper(), "same": TEXT}
    assert len(chunks) == 2 * len(TEXT)


# -- passthrough and assign -----------------------------------------------------------------


def test_passthrough_passes_chunks_through(flavour: str) -> None:
    seq = FakeLLM(["abc"]) | RunnablePassthrough()
    assert collect(stream_of(seq, flavour, "p")) == ["a", "b", "c"]
    assert invoke_of(RunnablePassthrough(), flavour, {"k": 1}) == {"k": 1}


def test_passthrough_calls_its_function_with_the_whole_input(flavour: str) -> None:
    seen: list[Any] = []
    seq = FakeLLM(["abc"]) | RunnablePassthrough(seen.append)
    assert collect(stream_of(seq, flavour, "p")) == ["a", "b", "c"]
    assert invoke_of(seq, flavour, "p") == "abc"
    assert seen == ["abc", "abc"]


def test_passthrough_calls_async_functions_and_gives_them_the_config(flavour: str) -> None:
    seen: list[Any] = []

    async def record(value: Any, config: Any) -> None:
        seen.append((value, config["metadata"].get("who")))

    runnable = RunnablePassthrough(record)
    config = {"metadata": {"who": "me"}}
    assert invoke_of(runnable, flavour, "x", config) == "x"
    assert collect(stream_of(runnable, flavour, "y", config)) == ["y"]
    assert seen == [("x", "me"), ("y", "me")]


def test_assign_after_any_runnable(flavour: str) -> None:
    seq = RunnableLambda(lambda x: {"x": x}).assign(double=lambda d: d["x"] * 2)
    assert invoke_of(seq, flavour, 4) == {"x": 4, "double": 8}
    assert aggregate(collect(stream_of(seq, flavour, 4))) == {"x": 4, "double": 8}


def test_assign_adds_keys(flavour: str) -> None:
    assign = RunnablePassthrough.assign(n=lambda d: len(d["s"]), up=lambda d: d["s"].upper())
    assert invoke_of(assign, flavour, {"s": "abc"}) == {"s": "abc", "n": 3, "up": "ABC"}
    chunks = collect(stream_of(assign, flavour, {"s": "abc"}))
    assert aggregate(chunks) == {"s": "abc", "n": 3, "up": "ABC"}


def test_assign_streams_its_input_through_first(flavour: str) -> None:
    llm = FakeLLM(["abc"])
    seq = ({"s": llm | StrOutputParser()} | RunnablePassthrough()).assign(
        up=lambda d: d["s"].upper()
    )
    chunks = collect(stream_of(seq, flavour, "p"))
    assert chunks[:3] == [{"s": "a"}, {"s": "b"}, {"s": "c"}]
    assert chunks[3:] == [{"up": "ABC"}]
    assert invoke_of(seq, flavour, "p") == {"s": "abc", "up": "ABC"}


def test_assign_needs_a_dict(flavour: str) -> None:
    assign = RunnablePassthrough.assign(n=len)
    with pytest.raises(InvalidInputError, match="dict"):
        invoke_of(assign, flavour, "not a dict")
    with pytest.raises(InvalidInputError, match="dict"):
        collect(stream_of(assign, flavour, "not a dict"))


async def test_a_failing_branch_cancels_the_others_on_the_async_path() -> None:
    cancelled = asyncio.Event()

    async def slow(x: Any) -> Any:
        try:
            await asyncio.sleep(WAIT)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return x

    async def broken(x: Any) -> Any:
        await asyncio.sleep(0)
        raise KeyError("branch failed")

    with pytest.raises(KeyError, match="branch failed"):
        await RunnableParallel(slow=slow, broken=broken).ainvoke(1)
    assert cancelled.is_set()


# -- steps of one's own -----------------------------------------------------------------------


class Exploding(StreamingStep[Any, Any]):
    """A streaming step whose transformer fails as soon as it is called."""

    def _transform(self, source: Iterator[Any], run: Any, config: Any, **kw: Any) -> Any:
        raise KeyError("at once")

    def _atransform(self, source: AsyncIterator[Any], run: Any, config: Any, **kw: Any) -> Any:
        raise KeyError("at once")


class Ends(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[str] = []

    def on_chain_start(self, serialized: Any, inputs: Any, **kw: Any) -> None:
        self.events.append(f"start:{kw['name']}")

    def on_chain_end(self, outputs: Any, **kw: Any) -> None:
        self.events.append("end")

    def on_chain_error(self, error: BaseException, **kw: Any) -> None:
        self.events.append(f"error:{type(error).__name__}")


def test_a_step_that_fails_at_once_still_ends_its_run(flavour: str) -> None:
    closed: list[bool] = []

    def source() -> Iterator[str]:
        try:
            yield from "abc"
        finally:
            closed.append(True)

    async def asource() -> AsyncIterator[str]:
        try:
            for char in "abc":
                yield char
        finally:
            closed.append(True)

    handler = Ends()
    config = {"callbacks": [handler]}
    step = Exploding()

    async def arun() -> list[bool]:
        with pytest.raises(KeyError, match="at once"):
            await step.atransform(asource(), config).__anext__()
        return list(closed)  # before the loop's own clean-up at its end

    if is_sync(flavour):
        with pytest.raises(KeyError, match="at once"):
            list(step.transform(source(), config))
        assert closed == [True]
    else:
        assert asyncio.run(arun()) == [True]
    assert handler.events == ["start:Exploding", "error:KeyError"]


@pytest.mark.parametrize(
    "make",
    [  # streams stopped after their second chunk
        lambda: chain(FakeLLM([TEXT])) | shout,
        lambda: chain(FakeLLM([TEXT])) | {"a": shout, "b": RunnablePassthrough()},
        lambda: PromptTemplate.from_template("{q}") | {"a": FakeLLM([TEXT]), "b": FakeLLM([TEXT])},
        lambda: {"s": chain(FakeLLM([TEXT]))} | RunnablePassthrough.assign(n=lambda d: 1),
    ],
    ids=["sequence", "parallel_after_model", "parallel_of_models", "assign"],
)
def test_closing_ends_every_run_children_first(flavour: str, make: Any) -> None:
    handler = Outcomes()
    stream = stream_of(make(), flavour, {"q": "x"}, {"callbacks": [handler]})
    _, (order, unended) = take_then(stream, 2, handler.snapshot)
    assert not unended  # every run had ended, one way or the other, when close() returned
    assert len(order) >= 2
    handler.assert_children_first(order)


def test_a_failing_input_fails_every_branch_of_a_parallel_step(flavour: str) -> None:
    upstream = FakeLLM(["abcdef"], error_after=3)
    seen: list[Any] = []

    def record(x: str) -> str:
        seen.append(x)
        return x

    par = upstream | {"copy": RunnablePassthrough(), "record": record}
    with pytest.raises(ProviderError):
        collect(stream_of(par, flavour, "p"))
    assert seen == []  # never called on the input cut short


def failing_input() -> Iterator[str]:
    yield "a"
    raise KeyError("input failed")


async def afailing_input() -> AsyncIterator[str]:
    yield "a"
    raise KeyError("input failed")


def test_a_tee_fails_every_copy_when_its_input_fails() -> None:
    tee = Tee(failing_input(), 2)
    first, second = tee.branch(0), tee.branch(1)
    assert next(first) == "a"
    with pytest.raises(KeyError):
        next(first)
    assert next(second) == "a"
    with pytest.raises(KeyError):  # not a quiet end: that would be a cut input
        next(second)


async def test_an_async_tee_fails_every_copy_when_its_input_fails() -> None:
    tee = ATee(afailing_input(), 2)
    first, second = tee.branch(0), tee.branch(1)
    assert await anext(first) == "a"
    with pytest.raises(KeyError):
        await anext(first)
    assert await anext(second) == "a"
    with pytest.raises(KeyError):
        await anext(second)
