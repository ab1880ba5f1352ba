"""The chat endpoint from LangChain's ``ChatOpenAI`` (usage, assembled tool calls), and the
embedded chat model served: same text as in-process, response formats, tool calls
through the grammar, and a client that leaves stops the model."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
from helpers import is_sync, wait_until
from langchain_openai import ChatOpenAI

from lmstream import AIMessage, FakeChatModel
from lmstream.providers.llamacpp_chat import ChatLlamaCpp

CALL = AIMessage(
    "", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}]
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


def _langchain(url: str) -> ChatOpenAI:
    return ChatOpenAI(base_url=f"{url}/v1", api_key="x", model="chat", stream_usage=True,  # type: ignore[arg-type]
                      max_retries=0)  # fmt: skip


def _collect(model: Any, flavour: str, value: Any) -> list[Any]:
    if is_sync(flavour):
        return list(model.stream(value))

    async def run() -> list[Any]:
        return [c async for c in model.astream(value)]

    return asyncio.run(run())


def test_langchain_chat_openai_gets_text_and_usage(serve: Any, flavour: str) -> None:
    with serve({"chat": FakeChatModel(["Hello there!"], chunking="word")}) as server:
        chunks = _collect(_langchain(server.url), flavour, "Hi")
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole = whole + chunk
    assert whole.content == "Hello there!"
    assert whole.usage_metadata is not None
    assert whole.usage_metadata["output_tokens"] == 2


def test_langchain_chat_openai_assembles_tool_calls(serve: Any, flavour: str) -> None:
    with serve({"chat": FakeChatModel([CALL], chunking="char")}) as server:
        model = _langchain(server.url).bind_tools([WEATHER])
        chunks = _collect(model, flavour, "Weather in Paris?")
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole = whole + chunk
    assert [(c["name"], c["args"], c["id"]) for c in whole.tool_calls] == [
        ("get_weather", {"city": "Paris"}, "call_1")
    ]


def _sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)


def test_served_embedded_chat_equals_in_process(serve: Any) -> None:
    chat = ChatLlamaCpp(temperature=0, seed=7)
    local = chat.invoke("Tell me about the sea.", max_tokens=24)
    with serve({"smol": chat}) as server, _sdk(server.url) as sdk:
        chunks = list(sdk.chat.completions.create(
            model="smol", messages=[{"role": "user", "content": "Tell me about the sea."}],
            max_tokens=24, stream=True,
        ))  # fmt: skip
    texts = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(texts) == local.text
    assert len([t for t in texts if t]) > 5


def test_response_format_and_tools_reach_the_embedded_model(serve: Any) -> None:
    chat = ChatLlamaCpp(temperature=0, seed=7)
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    ask = [{"role": "user", "content": "Invent a pirate."}]
    with serve({"smol": chat}) as server, _sdk(server.url) as sdk:
        formatted = sdk.chat.completions.create(
            model="smol", messages=ask, max_tokens=40,  # type: ignore[arg-type]
            response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
        )  # fmt: skip
        called = sdk.chat.completions.create(
            model="smol", max_tokens=60, tools=[WEATHER],  # type: ignore[list-item]
            messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        )  # fmt: skip
    assert isinstance(json.loads(formatted.choices[0].message.content or "")["name"], str)
    (call,) = called.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert isinstance(json.loads(call.function.arguments)["city"], str)  # type: ignore[union-attr]
    assert called.choices[0].finish_reason == "tool_calls"


def test_a_client_leaving_stops_the_embedded_chat_model(serve: Any) -> None:
    chat = ChatLlamaCpp(temperature=0, seed=7)
    engine = chat._engine
    ask = [{"role": "user", "content": "Write a long story about the sea."}]
    body = {"model": "m", "stream": True, "max_tokens": 300, "messages": ask}
    with serve({"m": chat}) as server:
        start = engine.tokens_generated
        with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as response:
            for line in response.iter_lines():  # until the answer has begun
                if '"content":"' in line and '"content":""' not in line:
                    break
        assert wait_until(lambda: not engine.lock._owner)
        counts = [engine.tokens_generated]
        while len(counts) < 2 or counts[-1] != counts[-2]:  # a token in flight may land
            assert wait_until(lambda: False, timeout=0.2) is False
            counts.append(engine.tokens_generated)
        settled = counts[-1]
        assert wait_until(lambda: False, timeout=0.3) is False
        assert engine.tokens_generated == settled  # nothing runs on after the stop
        assert len(counts) <= 4
    assert settled - start < 300 // 4
