"""Real langchain-core objects both ways: lmstream models inside LangChain chains and
events, LangChain models inside lmstream (events, batch, ``langchain:`` ids, the server)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from helpers import collect, events_of, free_port, invoke_of, is_sync, stream_of, take
from langchain_core.callbacks import BaseCallbackHandler as LangChainHandler
from langchain_core.language_models import BaseLLM as LangChainBaseLLM
from langchain_core.language_models import (
    FakeListLLM,
    FakeStreamingListLLM,
    GenericFakeChatModel,
)
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser as LangChainParser
from langchain_core.prompts import PromptTemplate as LangChainPrompt

from lmstream import FakeLLM, InvalidInputError, ProviderError, load_llm
from lmstream.langchain import LangChainLLM, from_langchain, to_langchain

TEXT = "the quick brown fox jumps over the lazy dog"


def words() -> FakeLLM:
    return FakeLLM([TEXT], chunking="word")


class Tokens(LangChainHandler):
    """LangChain's callbacks: the tokens reported."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
        self.tokens.append(token)


# -- lmstream models inside LangChain ---------------------------------------------------------


def test_to_langchain_is_a_real_langchain_llm_that_streams_token_by_token(flavour: str) -> None:
    llm = to_langchain(words())
    assert isinstance(llm, LangChainBaseLLM)
    assert invoke_of(llm, flavour, "p") == TEXT
    chunks = collect(stream_of(llm, flavour, "p"))
    assert len(chunks) == len(TEXT.split()) and "".join(chunks) == TEXT
    tokens = Tokens()
    collect(stream_of(llm, flavour, "p", {"callbacks": [tokens]}))
    assert "".join(tokens.tokens) == TEXT and len(tokens.tokens) == len(chunks)


def test_to_langchain_hands_on_usage_and_finish_reason(flavour: str) -> None:
    llm = to_langchain(words())
    result = llm.generate(["a", "b"]) if is_sync(flavour) else asyncio.run(llm.agenerate(["a"]))
    info = result.generations[0][0].generation_info
    assert info is not None and info["finish_reason"] == "stop"
    assert info["usage"]["total_tokens"] == info["usage"]["prompt_tokens"] + 9
    assert result.llm_output is not None and result.llm_output["token_usage"]["total_tokens"] > 0


def test_a_langchain_chain_streams_from_an_lmstream_model_in_astream_events() -> None:
    chain = LangChainPrompt.from_template("Q: {q}") | to_langchain(words()) | LangChainParser()

    async def run() -> list[dict[str, Any]]:
        return [e async for e in chain.astream_events({"q": "x"}, version="v2")]

    events = asyncio.run(run())
    streamed = [e["data"]["chunk"].text for e in events if e["event"] == "on_llm_stream"]
    assert "".join(streamed) == TEXT and len(streamed) == len(TEXT.split())
    assert [e["name"] for e in events if e["event"] == "on_llm_start"] == ["FakeLLM"]
    assert events[-1]["event"] == "on_chain_end" and events[-1]["data"]["output"] == TEXT


def test_a_langchain_consumer_that_stops_early_stops_the_lmstream_model(flavour: str) -> None:
    model = FakeLLM([TEXT * 20], chunking="word")
    got = take(stream_of(to_langchain(model), flavour, "p"), 3)
    assert got == ["the ", "quick ", "brown "]
    assert model.tokens_produced < len((TEXT * 20).split()) // 2


def test_an_lmstream_failure_reaches_langchain_with_its_partial_text(flavour: str) -> None:
    llm = to_langchain(FakeLLM([TEXT], chunking="word", error_after=2))
    with pytest.raises(ProviderError) as info:
        collect(stream_of(llm, flavour, "p"))
    assert info.value.partial_text == "the quick "


# -- LangChain models inside lmstream ---------------------------------------------------------


def test_from_langchain_streams_a_langchain_llm_with_lmstreams_guarantees(flavour: str) -> None:
    model = from_langchain(FakeStreamingListLLM(responses=["abc"]))
    assert model.can_stream
    assert collect(stream_of(model, flavour, "p")) == ["a", "b", "c"]
    assert invoke_of(model, flavour, "p") == "abc"
    assert invoke_of(model, flavour, "p", stop=["b"]) == "a"  # stop enforced by lmstream
    last = collect(model.stream_chunks("p") if is_sync(flavour) else model.astream_chunks("p"))
    assert last[-1].finish_reason == "stop" and last[-1].usage is not None
    batched = model.batch(["p", "q"]) if is_sync(flavour) else asyncio.run(model.abatch(["p"]))
    assert set(batched) == {"abc"}


def test_a_langchain_chat_model_can_still_be_read_as_text(flavour: str) -> None:
    chat = GenericFakeChatModel(messages=iter([AIMessage(content="hello there")]))
    assert collect(stream_of(LangChainLLM(chat), flavour, "hi")) == ["hello", " ", "there"]


def test_a_langchain_model_in_lmstream_events() -> None:
    model = from_langchain(FakeStreamingListLLM(responses=["xyz"]))
    events = events_of(model, "p")
    assert [e["data"]["chunk"] for e in events if e["event"] == "on_llm_stream"] == ["x", "y", "z"]
    assert events[-1]["event"] == "on_llm_end"


def test_langchain_model_ids_build_the_class_from_its_path(flavour: str) -> None:
    model = load_llm("langchain:langchain_core.language_models.FakeListLLM", responses=["zz"])
    assert isinstance(model, LangChainLLM) and isinstance(model.llm, FakeListLLM)
    assert invoke_of(model, flavour, "p") == "zz"
    for bad in ("langchain:", "langchain:nowhere.Nothing", "langchain:json.JSONDecoder"):
        with pytest.raises(InvalidInputError):
            load_llm(bad)


def test_wrapping_refuses_what_is_not_a_model_of_the_other_side() -> None:
    with pytest.raises(InvalidInputError):
        from_langchain(words())
    with pytest.raises(InvalidInputError):
        to_langchain(FakeListLLM(responses=["x"]))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="already"):  # a round trip: unwrap instead
        from_langchain(to_langchain(words()))
    with pytest.raises(InvalidInputError, match="already"):
        to_langchain(from_langchain(FakeListLLM(responses=["x"])))


@contextmanager
def served(*args: str) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "lmstream", "serve", "--port", str(port), *args]
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_lmstream_serve_serves_a_langchain_model_token_by_token() -> None:
    model = "langchain:langchain_core.language_models.FakeStreamingListLLM"
    with served("-m", model, "--option", 'responses=["hello"]') as url:
        body = {"model": "m", "prompt": "p", "stream": True}
        with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as response:
            data = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    texts = [json.loads(d)["choices"][0]["text"] for d in data[:-1]]
    assert "".join(texts) == "hello" and texts.count("") <= 1 and len(texts) >= 5
