"""The LLM base: hook detection, the fallback chain, input conversion, kwargs and fields."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from helpers import chunks_of, collect, invoke_of, is_sync, stream_of

from lmstream import (
    LLM,
    ChatPromptValue,
    GenerationChunk,
    InvalidInputError,
    StringPromptValue,
)


class CallOnly(LLM):
    def _call(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> str:
        return f"call:{prompt}"


class StreamOnly(LLM):
    def _stream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        self.thread = threading.current_thread()
        for piece in ("a", "b", "c"):
            yield GenerationChunk(piece)


class AStreamOnly(LLM):
    async def _astream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[GenerationChunk]:
        for piece in ("x", "y"):
            yield GenerationChunk(piece)


class ACallOnly(LLM):
    async def _acall(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> str:
        await asyncio.sleep(0)
        return f"acall:{prompt}"


class Recorder(LLM):
    """Records what reaches each hook."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, Any, dict[str, Any]]] = []

    def _call(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> str:
        self.seen.append(("call", stop, kwargs))
        return "r"

    def _stream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        self.seen.append(("stream", stop, kwargs))
        yield GenerationChunk("r")

    async def _astream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[GenerationChunk]:
        self.seen.append(("astream", stop, kwargs))
        yield GenerationChunk("r")

    async def _acall(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> str:
        self.seen.append(("acall", stop, kwargs))
        return "r"


def test_capabilities_follow_the_hooks() -> None:
    assert (CallOnly.can_stream, StreamOnly.can_stream, AStreamOnly.can_stream) == (
        False,
        True,
        True,
    )
    assert (CallOnly.native_async, AStreamOnly.native_async, ACallOnly.native_async) == (
        False,
        True,
        True,
    )


def test_a_class_without_hooks_is_refused() -> None:
    class Nothing(LLM):
        pass

    with pytest.raises(TypeError, match="must implement"):
        Nothing()


def test_call_only_streams_one_honest_chunk(flavour: str) -> None:
    assert collect(stream_of(CallOnly(), flavour, "p")) == ["call:p"]


def test_stream_only_streams_on_both_paths(flavour: str) -> None:
    llm = StreamOnly()
    assert collect(stream_of(llm, flavour, "p")) == ["a", "b", "c"]
    # the async path runs the sync hook in a worker thread, never on the loop's thread
    expected_main = is_sync(flavour)
    assert (llm.thread is threading.main_thread()) == expected_main


def test_astream_only_streams_async_and_invokes_both(flavour: str) -> None:
    llm = AStreamOnly()
    if is_sync(flavour):
        # stream() has no sync token source: one chunk from the non-streaming path
        assert collect(llm.stream("p")) == ["xy"]
    else:
        assert collect(llm.astream("p")) == ["x", "y"]
    assert invoke_of(llm, flavour, "p") == "xy"


def test_acall_only_works_on_both_paths(flavour: str) -> None:
    assert invoke_of(ACallOnly(), flavour, "q") == "acall:q"
    assert collect(stream_of(ACallOnly(), flavour, "q")) == ["acall:q"]


def test_stream_only_invokes_by_joining(flavour: str) -> None:
    assert invoke_of(StreamOnly(), flavour, "p") == "abc"


def test_stop_and_kwargs_reach_the_hooks_unchanged(flavour: str) -> None:
    llm = Recorder()
    invoke_of(llm, flavour, "p", stop=["\n"], foo=1)
    collect(stream_of(llm, flavour, "p", stop=["END"], bar=[2]))
    kinds = ("call", "stream") if is_sync(flavour) else ("acall", "astream")
    assert llm.seen == [(kinds[0], ["\n"], {"foo": 1}), (kinds[1], ["END"], {"bar": [2]})]


def test_run_manager_is_passed_only_to_hooks_that_accept_it(flavour: str) -> None:
    seen: list[Any] = []

    class WithManager(LLM):
        def _call(self, prompt: str, stop: Any = None, run_manager: Any = None, **kw: Any) -> str:
            seen.append(run_manager)
            return "m"

    assert invoke_of(WithManager(), flavour, "p") == "m"
    assert seen and seen[0] is not None and hasattr(seen[0], "on_llm_new_token")


def test_a_hook_returning_a_non_string_is_a_typed_failure() -> None:
    class Bad(LLM):
        def _call(self, prompt: str, stop: Any = None, **kw: Any) -> Any:
            return 42

    from lmstream import ProviderError

    with pytest.raises(ProviderError, match="expected str") as info:
        Bad().invoke("p")
    assert isinstance(info.value.__cause__, TypeError)


@pytest.mark.parametrize(
    ("value", "prompt"),
    [
        ("plain", "plain"),
        (StringPromptValue("pv"), "pv"),
        ([("system", "sys"), ("human", "hu"), ("ai", "x")], "System: sys\nHuman: hu\nAI: x"),
        (
            [{"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}],
            "Human: u\nAI: a",
        ),
        (ChatPromptValue(messages=(("tool", "t"), ("critic", "c"))), "Tool: t\ncritic: c"),
    ],
)
def test_inputs_become_one_prompt_string(value: Any, prompt: str, flavour: str) -> None:
    assert invoke_of(CallOnly(), flavour, value) == f"call:{prompt}"


def test_message_objects_with_type_and_content_are_read() -> None:
    class Message:
        def __init__(self, type: str, content: str) -> None:
            self.type, self.content = type, content

    assert (
        CallOnly().invoke([Message("human", "hi"), Message("ai", "yo")]) == "call:Human: hi\nAI: yo"
    )


@pytest.mark.parametrize("bad", [42, {"q": 1}, None, b"bytes", [object()]])
def test_bad_input_is_a_clear_typed_error(bad: Any, flavour: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        invoke_of(CallOnly(), flavour, bad)
    # usable as the reference's ValueError and as a TypeError
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)
    with pytest.raises(InvalidInputError):
        stream_of(CallOnly(), flavour, bad)


@pytest.mark.parametrize(
    "kwargs", [{"max_tokens": -1}, {"temperature": -0.5}, {"max_tokens": "9"}, {"stop": 3}]
)
def test_bad_parameters_are_refused_before_the_call(kwargs: dict[str, Any], flavour: str) -> None:
    llm = Recorder()
    with pytest.raises(InvalidInputError):
        invoke_of(llm, flavour, "p", **kwargs)
    with pytest.raises(InvalidInputError):
        stream_of(llm, flavour, "p", **kwargs)
    assert llm.seen == []


def test_stop_may_be_one_string(flavour: str) -> None:
    llm = Recorder()
    invoke_of(llm, flavour, "p", stop="x")
    assert llm.seen[0][1] == ["x"]


class Echo(LLM):
    """The custom LLM of the reference's guide: fields declared as annotations."""

    n: int
    prefix: str = ""

    def _call(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> str:
        return self.prefix + prompt[: self.n]

    def _stream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        for char in self.prefix + prompt[: self.n]:
            yield GenerationChunk(text=char)

    @property
    def _llm_type(self) -> str:
        return "custom"


def test_declared_fields_are_keyword_arguments(flavour: str) -> None:
    llm = Echo(n=3, prefix=">")
    assert invoke_of(llm, flavour, "hello") == ">hel"
    assert collect(stream_of(llm, flavour, "hello")) == [">", "h", "e", "l"]
    assert llm.asdict() == {"n": 3, "prefix": ">", "_type": "custom"}


def test_declared_fields_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="requires the argument 'n'"):
        Echo()
    with pytest.raises(InvalidInputError, match="unexpected arguments"):
        Echo(n=1, nope=2)


def test_stream_chunks_end_with_outcome_data(flavour: str) -> None:
    chunks = chunks_of(StreamOnly(), flavour, "prompt text")
    assert "".join(c.text for c in chunks) == "abc"
    last = chunks[-1]
    assert last.finish_reason == "stop"
    assert last.usage is not None and last.usage.estimated
    assert last.usage.completion_tokens == StreamOnly().get_num_tokens("abc")
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
