"""Every run ends one way: finished, failed (typed, with what it produced) or cancelled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import chunks_of, collect, invoke_of, is_sync, stream_of, take

from lmstream import (
    LLM,
    BaseCallbackHandler,
    FakeLLM,
    GenerationChunk,
    GenerationError,
    InvalidInputError,
    ProviderError,
)


class Outcomes(BaseCallbackHandler):
    """Records how each LLM run ended."""

    def __init__(self) -> None:
        self.ends: list[Any] = []
        self.errors: list[tuple[BaseException, Any]] = []
        self.cancels: list[Any] = []

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.ends.append(response)

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self.errors.append((error, kwargs["response"]))

    def on_llm_cancel(self, response: Any, **kwargs: Any) -> None:
        self.cancels.append(response)

    def count(self) -> tuple[int, int, int]:
        return len(self.ends), len(self.errors), len(self.cancels)


def test_a_finished_stream_reports_one_end(flavour: str) -> None:
    seen = Outcomes()
    llm = FakeLLM(["hello"], callbacks=[seen])
    assert "".join(collect(stream_of(llm, flavour, "p"))) == "hello"
    assert seen.count() == (1, 0, 0)
    generation = seen.ends[0].generations[0][0]
    assert generation.text == "hello"
    assert generation.finish_reason == "stop"
    assert generation.usage.completion_tokens == 5


@pytest.mark.parametrize("stop_after", [1, 3])
def test_closing_a_stream_cancels_it_and_the_model_stops(flavour: str, stop_after: int) -> None:
    seen = Outcomes()
    llm = FakeLLM(["abcdefghij"], callbacks=[seen])
    got = take(stream_of(llm, flavour, "p"), stop_after)
    assert got == list("abcdefghij"[:stop_after])
    # zero tokens produced after the consumer stopped: the provider iterator was closed
    assert llm.tokens_produced == stop_after
    assert seen.count() == (0, 0, 1)
    partial = seen.cancels[0].generations[0][0]
    assert partial.text == "abcdefghij"[:stop_after]
    assert partial.finish_reason == "cancelled"
    assert partial.usage.completion_tokens == stop_after


def test_break_out_of_a_for_loop_cancels_at_once() -> None:
    seen = Outcomes()
    llm = FakeLLM(["abcdefghij"], callbacks=[seen])
    for chunk in llm.stream("p"):
        if chunk == "c":
            break
    assert llm.tokens_produced == 3
    assert seen.count() == (0, 0, 1)


def test_task_cancellation_cancels_the_run() -> None:
    seen = Outcomes()
    llm = FakeLLM(["abcdefghij"], delay=0.05, callbacks=[seen])

    async def consume(got: list[str], two: asyncio.Event) -> None:
        async for chunk in llm.astream("p"):
            got.append(chunk)
            if len(got) == 2:
                two.set()

    async def main() -> list[str]:
        got: list[str] = []
        two = asyncio.Event()
        task = asyncio.ensure_future(consume(got, two))
        await two.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return got

    got = asyncio.run(main())
    assert llm.tokens_produced <= len(got) + 1
    assert seen.count() == (0, 0, 1)
    assert seen.cancels[0].generations[0][0].text == "".join(got)


def test_cancelling_a_bridged_stream_stops_the_worker(flavour: str) -> None:
    seen = Outcomes()

    class SyncOnly(LLM):
        produced = 0

        def _stream(self, prompt: str, stop: Any = None, **kw: Any) -> Iterator[GenerationChunk]:
            for char in "abcdefghijklmnopqrstuvwxyz":
                time.sleep(0.005)
                self.produced += 1
                yield GenerationChunk(char)

    llm = SyncOnly(callbacks=[seen])
    assert take(stream_of(llm, flavour, "p"), 2) == ["a", "b"]
    # the async path's worker runs at most the bounded buffer ahead, then sees the flag
    assert llm.produced <= 2 + llm.bridge_buffer + 1
    produced = llm.produced
    time.sleep(0.05)
    assert llm.produced == produced  # nothing runs after the stream returned
    assert seen.count() == (0, 0, 1)


def test_an_error_mid_stream_is_typed_and_carries_the_partial_text(flavour: str) -> None:
    seen = Outcomes()
    llm = FakeLLM(["abcdef"], error_after=3, callbacks=[seen])
    got: list[str] = []

    async def drain_async() -> None:
        async for chunk in llm.astream("p"):
            got.append(chunk)

    def drain_sync() -> None:
        for chunk in llm.stream("p"):
            got.append(chunk)

    with pytest.raises(GenerationError) as info:
        drain_sync() if is_sync(flavour) else asyncio.run(drain_async())
    assert got == ["a", "b", "c"]
    assert info.value.partial_text == "abc"
    assert info.value.usage is not None and info.value.usage.completion_tokens == 3
    assert seen.count() == (0, 1, 0)
    error, partial = seen.errors[0]
    assert error is info.value
    assert partial.generations[0][0].text == "abc"
    assert partial.generations[0][0].finish_reason == "error"


def test_foreign_exceptions_keep_their_type_and_are_provider_errors(flavour: str) -> None:
    llm = FakeLLM(["abcdef"], error_after=2, error=KeyError("boom"))
    with pytest.raises(ProviderError) as info:
        collect(stream_of(llm, flavour, "p"))
    assert isinstance(info.value, KeyError)
    assert info.value.partial_text == "ab"
    with pytest.raises(RuntimeError) as caught:
        invoke_of(FakeLLM(["abc"], error_after=0, error=RuntimeError("x")), flavour, "p")
    assert isinstance(caught.value, ProviderError)


def test_lmstream_errors_pass_through_unwrapped(flavour: str) -> None:
    llm = FakeLLM(["abc"], error_after=1, error=InvalidInputError("bad prompt"))
    with pytest.raises(InvalidInputError, match="bad prompt"):
        collect(stream_of(llm, flavour, "p"))


def test_an_empty_completion_is_a_success(flavour: str) -> None:
    seen = Outcomes()
    llm = FakeLLM([""], callbacks=[seen])
    assert collect(stream_of(llm, flavour, "p")) == [""]
    assert invoke_of(llm, flavour, "p") == ""
    assert seen.count() == (2, 0, 0)
    chunks = chunks_of(llm, flavour, "p")
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage.completion_tokens == 0


def test_the_last_chunk_carries_finish_reason_and_usage(flavour: str) -> None:
    llm = FakeLLM(["one two three"], chunking="word")
    chunks = chunks_of(llm, flavour, "a prompt")
    assert [c.text for c in chunks] == ["one ", "two ", "three"]
    assert all(c.generation_info is None for c in chunks[:-1])
    assert chunks[-1].finish_reason == "stop"
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.estimated) == (2, 3, False)


def test_max_tokens_ends_with_length(flavour: str) -> None:
    chunks = chunks_of(FakeLLM(["abcdef"]), flavour, "p", max_tokens=2)
    assert "".join(c.text for c in chunks) == "ab"
    assert chunks[-1].finish_reason == "length"


def test_usage_is_estimated_when_the_provider_gives_none(flavour: str) -> None:
    class Bare(LLM):
        def _stream(self, prompt: str, stop: Any = None, **kw: Any) -> Any:
            yield GenerationChunk("word " * 8)

    last = chunks_of(Bare(), flavour, "prompt!!")[-1]
    assert last.usage.estimated
    assert last.usage.prompt_tokens == Bare().get_num_tokens("prompt!!")
    assert last.usage.completion_tokens == Bare().get_num_tokens("word " * 8)


@pytest.mark.parametrize(
    ("response", "stop", "expected"),
    [
        (["Hello", " wor", "ld", "\nBye"], ["\n"], "Hello world"),
        (["ab", "cE", "ND", "xyz"], ["END"], "abc"),
        (["a", "E", "N", "x", "E", "ND"], ["END"], "aENx"),
        (["one", " two"], ["zzz"], "one two"),
        (["xSTO", "P"], ["STOP", "TO"], "x"),
        (["xST", "O", "Q"], ["STOP", "TO"], "xS"),
        (["END"], ["END"], ""),
    ],
)
def test_stop_sequences_are_cut_exactly_and_never_leak(
    response: list[str], stop: list[str], expected: str, flavour: str
) -> None:
    llm = FakeLLM([response])  # the fake ignores stop: the base enforces it
    chunks = collect(stream_of(llm, flavour, "p", stop=stop))
    assert "".join(chunks) == expected
    for i in range(len(chunks)):
        emitted = "".join(chunks[: i + 1])
        assert not any(s in emitted for s in stop)
    assert invoke_of(FakeLLM([response]), flavour, "p", stop=stop) == expected


def test_a_stop_sequence_ends_the_generation(flavour: str) -> None:
    llm = FakeLLM([list("abc\ndefghij")])
    chunks = chunks_of(llm, flavour, "p", stop=["\n"])
    assert "".join(c.text for c in chunks) == "abc"
    assert chunks[-1].finish_reason == "stop"
    assert llm.tokens_produced == 4  # the model was stopped at the stop sequence


def test_held_back_text_is_released_at_the_end(flavour: str) -> None:
    chunks = collect(stream_of(FakeLLM([["ab", "E"]]), flavour, "p", stop=["EN"]))
    assert chunks == ["ab", "E"]


def test_an_instance_stop_is_enforced_like_a_call_stop(flavour: str) -> None:
    class WithStop(LLM):
        stop = ["STOP"]  # noqa: RUF012 - a provider's default, read per call

        def _stream(self, prompt: str, stop: Any = None, **kw: Any) -> Iterator[GenerationChunk]:
            yield from (GenerationChunk(t) for t in ("a ", "ST", "OP", " b"))

    assert "".join(collect(stream_of(WithStop(), flavour, "p"))) == "a "
    assert invoke_of(WithStop(), flavour, "p") == "a "
    assert invoke_of(WithStop(), flavour, "p", stop=["b"]) == "a STOP "  # a call's stop wins
