"""Real langchain-core chat models both ways: lmstream chat models inside LangChain chains,
tools and events; LangChain chat models inside lmstream, streaming and stopping."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import collect, invoke_of, stream_of, take
from langchain_core.language_models import BaseChatModel as LangChainChat
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage as LangChainAIMessage
from langchain_core.messages import AIMessageChunk as LangChainChunk
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGenerationChunk
from langchain_core.prompts import ChatPromptTemplate

from lmstream import InvalidInputError, ProviderError, load_chat_model
from lmstream.chat_model import BaseChatModel
from lmstream.langchain import LangChainLLM, from_langchain, to_langchain
from lmstream.messages import AIMessage, AIMessageChunk
from lmstream.providers.fake_chat import FakeChatModel

TEXT = "the quick brown fox jumps over the lazy dog"
WORDS = TEXT.split(" ")


def words(text: str = TEXT) -> FakeChatModel:
    return FakeChatModel([text], chunking="word")


def added(chunks: list[Any]) -> Any:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


# -- lmstream chat models inside LangChain ----------------------------------------------------


def test_to_langchain_gives_a_langchain_chat_model_streaming_token_by_token(flavour: str) -> None:
    chat = to_langchain(words())
    assert isinstance(chat, LangChainChat)
    chunks = collect(stream_of(chat, flavour, "hi"))
    assert all(isinstance(c, LangChainChunk) for c in chunks)
    assert [c.content for c in chunks if c.content] == [w + " " for w in WORDS[:-1]] + ["dog"]
    message = added(chunks)
    assert message.content == TEXT and message.response_metadata["finish_reason"] == "stop"
    usage = message.usage_metadata
    assert usage is not None and usage["total_tokens"] == usage["input_tokens"] + len(WORDS)
    answer = invoke_of(chat, flavour, "hi")
    assert isinstance(answer, LangChainAIMessage) and answer.content == TEXT
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] == 9


def test_a_langchain_chat_chain_streams_from_lmstream_in_astream_events() -> None:
    prompt = ChatPromptTemplate.from_messages([("system", "be brief"), ("human", "{q}")])
    chain = prompt | to_langchain(words()) | StrOutputParser()

    async def run() -> list[dict[str, Any]]:
        return [e async for e in chain.astream_events({"q": "x"}, version="v2")]

    events = asyncio.run(run())
    streamed = [e["data"]["chunk"] for e in events if e["event"] == "on_chat_model_stream"]
    assert all(isinstance(c, LangChainChunk) for c in streamed)
    assert [c.content for c in streamed if c.content] == [w + " " for w in WORDS[:-1]] + ["dog"]
    end = [e for e in events if e["event"] == "on_chat_model_end"]
    assert len(end) == 1 and end[0]["data"]["output"].usage_metadata["output_tokens"] == 9
    parsed = [e["data"]["chunk"] for e in events if e["event"] == "on_parser_stream"]
    assert "".join(parsed) == TEXT and len(parsed) >= len(WORDS)
    assert events[-1]["event"] == "on_chain_end" and events[-1]["data"]["output"] == TEXT


def test_tool_call_chunks_assemble_on_the_langchain_side(flavour: str) -> None:
    call = {"name": "add", "args": {"a": 1, "b": 2}, "id": "call-1"}
    model = FakeChatModel([AIMessage("", tool_calls=[call])])  # type: ignore[list-item]
    chat = to_langchain(model).bind_tools([add], tool_choice="add")
    assert isinstance(chat, LangChainChat)
    chunks = collect(stream_of(chat, flavour, "1 + 2?"))
    assert sum(1 for c in chunks if c.tool_call_chunks) > 1  # streamed in fragments
    message = added(chunks)
    assert message.tool_calls == [{**call, "type": "tool_call"}]
    assert message.response_metadata["finish_reason"] == "tool_calls"
    tools = model.last_kwargs["tools"]  # passed through to the lmstream model
    assert [t["function"]["name"] for t in tools] == ["add"]
    assert model.last_kwargs["tool_choice"]["function"]["name"] == "add"


def test_reasoning_reaches_langchain_as_reasoning_blocks(flavour: str) -> None:
    reply = AIMessage([{"type": "reasoning", "reasoning": "think it over"}, "fine"])
    chunks = collect(stream_of(to_langchain(FakeChatModel([reply], chunking="word")), flavour, "?"))
    blocks = [b for c in chunks for b in c.content_blocks if b["type"] == "reasoning"]
    assert len(blocks) == 3 and "".join(b["reasoning"] for b in blocks) == "think it over"
    assert added(chunks).text == "fine"


def test_a_langchain_consumer_that_stops_early_stops_the_lmstream_chat_model(flavour: str) -> None:
    model = words(TEXT * 20)
    got = take(stream_of(to_langchain(model), flavour, "hi"), 3)
    assert [c.content for c in got] == ["the ", "quick ", "brown "]
    assert model.chunks_produced < len((TEXT * 20).split()) // 2


def test_an_lmstream_chat_failure_reaches_langchain_with_its_partial_text(flavour: str) -> None:
    chat = to_langchain(FakeChatModel([TEXT], chunking="word", error_after=2))
    with pytest.raises(ProviderError) as info:
        collect(stream_of(chat, flavour, "hi"))
    assert info.value.partial_text == "the quick "


# -- LangChain chat models inside lmstream ----------------------------------------------------


class CountingFake(GenericFakeChatModel):
    """LangChain's fake chat model, counting the chunks it produced."""

    produced: int = 0

    def _stream(self, *args: Any, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for chunk in super()._stream(*args, **kwargs):
            self.produced += 1
            yield chunk


def test_from_langchain_streams_a_langchain_chat_model_as_message_chunks(flavour: str) -> None:
    chat = GenericFakeChatModel(messages=iter([LangChainAIMessage(content="hello there")] * 2))
    model = from_langchain(chat)
    assert isinstance(model, BaseChatModel) and model.can_stream
    chunks = collect(stream_of(model, flavour, [("system", "s"), ("human", "hi")]))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert [c.content for c in chunks] == ["hello", " ", "there", ""]
    assert chunks[-1].chunk_position == "last" and chunks[-1].usage_metadata is not None
    answer = invoke_of(model, flavour, "hi")
    assert isinstance(answer, AIMessage) and answer.content == "hello there"


def test_breaking_out_of_lmstream_stops_the_langchain_chat_model(flavour: str) -> None:
    chat = CountingFake(messages=iter([LangChainAIMessage(content=TEXT * 20)]))
    got = take(stream_of(from_langchain(chat), flavour, "hi"), 3)
    assert [c.content for c in got] == ["the", " ", "quick"]
    assert 3 <= chat.produced < len(TEXT * 20) // 10


def test_langchain_chat_model_ids_build_the_class(flavour: str) -> None:
    path = "langchain:langchain_core.language_models.fake_chat_models.GenericFakeChatModel"
    model = load_chat_model(path, messages=iter([LangChainAIMessage(content="zz")]))
    assert isinstance(model, BaseChatModel) and isinstance(model.chat, GenericFakeChatModel)
    assert invoke_of(model, flavour, "hi").content == "zz"
    for bad in ("langchain:", "langchain:nowhere.Nothing", "langchain:json.JSONDecoder"):
        with pytest.raises(InvalidInputError):
            load_chat_model(bad)


def test_chat_wrapping_refuses_round_trips_and_text_reads_stay() -> None:
    with pytest.raises(InvalidInputError, match="already"):
        from_langchain(to_langchain(words()))
    chat = GenericFakeChatModel(messages=iter([LangChainAIMessage(content="a b")]))
    with pytest.raises(InvalidInputError, match="already"):
        to_langchain(from_langchain(chat))
    as_text = LangChainLLM(GenericFakeChatModel(messages=iter([LangChainAIMessage("a b")])))
    assert as_text.invoke("hi") == "a b"
