"""How every LlamaCpp run ends: finish_reason and usage on the last chunk and the end event."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from helpers import chunks_of, collect, events_of, is_sync, stream_of, take

from lmstream import BaseCallbackHandler, RunnableGenerator
from lmstream.chunks import Usage
from lmstream.errors import ProviderError
from lmstream.providers.llamacpp import LlamaCpp

Info = Callable[[list[Any]], dict[str, Any]]
Count = Callable[[LlamaCpp, str], int]


def test_the_token_limit_ends_with_length(
    llm: LlamaCpp, flavour: str, long_prompt: str, info_of: Info, chat_tokens: Count
) -> None:
    chunks = chunks_of(llm, flavour, long_prompt, max_tokens=5)
    info = info_of(chunks)
    assert info["finish_reason"] == "length"
    assert info["usage"] == Usage.of(chat_tokens(llm, long_prompt), 5)


def test_the_end_of_the_answer_ends_with_stop(
    llm: LlamaCpp, flavour: str, prompt: str, info_of: Info, chat_tokens: Count
) -> None:
    before = llm.tokens_generated
    chunks = chunks_of(llm, flavour, prompt, max_tokens=80)
    info = info_of(chunks)
    assert info["finish_reason"] == "stop"
    produced = llm.tokens_generated - before
    assert 0 < produced < 80
    assert info["usage"] == Usage.of(chat_tokens(llm, prompt), produced)
    assert chunks[-1].text == ""  # the end-of-text token adds no text


def test_zero_max_tokens_is_an_empty_completion(
    llm: LlamaCpp, flavour: str, prompt: str, info_of: Info
) -> None:
    chunks = chunks_of(llm, flavour, prompt, max_tokens=0)
    assert "".join(c.text for c in chunks) == ""
    info = info_of(chunks)
    assert (info["finish_reason"], info["usage"].completion_tokens) == ("length", 0)


def test_the_end_event_carries_reason_and_usage(
    llm: LlamaCpp, long_prompt: str, chat_tokens: Count
) -> None:
    events = events_of(llm, long_prompt, version="v2", max_tokens=4)
    [end] = [e for e in events if e["event"] == "on_llm_end"]
    info = end["data"]["output"]["generations"][0][0]["generation_info"]
    assert info["finish_reason"] == "length"
    assert info["usage"] == Usage.of(chat_tokens(llm, long_prompt), 4)
    assert len([e for e in events if e["event"] == "on_llm_stream"]) == 4


def test_v1_events_stream_every_token(llm: LlamaCpp, long_prompt: str) -> None:
    events = events_of(llm, long_prompt, version="v1", max_tokens=4)
    streamed = [e["data"]["chunk"] for e in events if e["event"] == "on_llm_stream"]
    assert len(streamed) == 4
    [end] = [e for e in events if e["event"] == "on_llm_end"]
    assert end["data"]["output"] == "".join(streamed)


class _Cancels(BaseCallbackHandler):
    def __init__(self) -> None:
        self.responses: list[Any] = []

    def on_llm_cancel(self, response: Any, **kwargs: Any) -> None:
        self.responses.append(response)


def test_a_stream_stopped_early_ends_cancelled(
    flavour: str, long_prompt: str, chat_tokens: Count
) -> None:
    seen = _Cancels()
    llm = LlamaCpp(temperature=0, seed=7, max_tokens=40, callbacks=[seen])
    got = take(stream_of(llm, flavour, long_prompt), 3)
    [response] = seen.responses
    generation = response.generations[0][0]
    assert generation.text == "".join(got)
    info = generation.generation_info
    assert info["finish_reason"] == "cancelled"
    assert info["usage"].prompt_tokens == chat_tokens(llm, long_prompt)
    assert info["usage"].completion_tokens == 3


def _first(n: int) -> RunnableGenerator:
    def cut(chunks: Iterator[str]) -> Iterator[str]:
        for i, chunk in enumerate(chunks):
            yield chunk
            if i + 1 == n:
                return

    async def acut(chunks: AsyncIterator[str]) -> AsyncIterator[str]:
        i = 0
        async for chunk in chunks:
            yield chunk
            i += 1
            if i == n:
                return

    return RunnableGenerator(cut, acut)


def test_the_end_event_of_a_cancelled_run(
    llm: LlamaCpp, flavour: str, long_prompt: str, chat_tokens: Count
) -> None:
    chain = llm.bind(max_tokens=40) | _first(3)
    if is_sync(flavour):  # no event stream in sync code: the callbacks see the outcome
        seen = _Cancels()
        assert len(collect(chain.stream(long_prompt, {"callbacks": [seen]}))) == 3
        info = seen.responses[0].generations[0][0].generation_info
        assert info["finish_reason"] == "cancelled"
        assert info["usage"].prompt_tokens == chat_tokens(llm, long_prompt)
        return
    events = events_of(chain, long_prompt, version="v2")
    [end] = [e for e in events if e["event"] == "on_llm_end"]
    assert end["data"]["cancelled"] is True
    info = end["data"]["output"]["generations"][0][0]["generation_info"]
    assert info["finish_reason"] == "cancelled"
    assert info["usage"].prompt_tokens == chat_tokens(llm, long_prompt)
    assert info["usage"].completion_tokens >= 3


def test_an_engine_failure_is_a_provider_error_with_the_partial_text(
    flavour: str, long_prompt: str, monkeypatch: Any
) -> None:
    llm = LlamaCpp(temperature=0, seed=7, max_tokens=20)
    real = llm.client.generate

    def failing(*args: Any, **kwargs: Any) -> Iterator[int]:
        for i, token in enumerate(real(*args, **kwargs)):
            if i == 3:
                raise RuntimeError("llama_decode returned -1")
            yield token

    monkeypatch.setattr(llm.client, "generate", failing)
    got: list[str] = []
    stream = stream_of(llm, flavour, long_prompt)
    read = (lambda: got.extend(stream)) if is_sync(flavour) else lambda: _run(_extend(got, stream))
    with pytest.raises(ProviderError, match="llama_decode") as caught:
        read()
    assert len(got) == 3
    assert caught.value.partial_text == "".join(got)
    assert caught.value.usage is not None and caught.value.usage.completion_tokens == 3
    monkeypatch.undo()
    assert llm.invoke(long_prompt, max_tokens=3)  # the model is free again


def _run(coro: Any) -> None:
    asyncio.run(coro)


async def _extend(out: list[str], stream: AsyncIterator[str]) -> None:
    async for chunk in stream:
        out.append(chunk)
