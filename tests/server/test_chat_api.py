"""``/v1/chat/completions`` driven by the official ``openai`` SDK (sync and async), and chat
models on the other endpoints."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import openai
import pytest
from helpers import is_sync, wait_until

from lmstream import AIMessage, FakeChatModel, FakeLLM

CALL = AIMessage(
    "", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}]
)
THINKING = AIMessage([{"type": "reasoning", "reasoning": "Hmm."}, {"type": "text", "text": "Hi!"}])
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}
HI = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]


def _run(url: str, flavour: str, stream: bool, **kwargs: Any) -> Any:
    if is_sync(flavour):
        with openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as sdk:
            answer = sdk.chat.completions.create(stream=stream, **kwargs)
            return list(answer) if stream else answer

    async def run() -> Any:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as sdk:
            answer = await sdk.chat.completions.create(stream=stream, **kwargs)
            return [c async for c in answer] if stream else answer

    return asyncio.run(run())


def test_non_streamed_chat_answer(serve: Any, flavour: str) -> None:
    with serve({"chat": FakeChatModel(["Hello there!"])}) as server:
        result = _run(server.url, flavour, False, model="chat", messages=HI)
    assert result.object == "chat.completion"
    assert result.choices[0].message.role == "assistant"
    assert result.choices[0].message.content == "Hello there!"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage.completion_tokens == 12 and result.usage.total_tokens > 12


def test_streamed_chat_answer_with_usage(serve: Any, flavour: str) -> None:
    with serve({"chat": FakeChatModel(["Hello there!"], chunking="word")}) as server:
        chunks = _run(
            server.url, flavour, True, model="chat", messages=HI,
            stream_options={"include_usage": True},
        )  # fmt: skip
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    assert [d.content for d in deltas if d.content] == ["Hello ", "there!"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 2
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1


def test_tool_calls_stream_as_openai_deltas(serve: Any, flavour: str) -> None:
    with serve({"chat": FakeChatModel([CALL], chunking="word")}) as server:
        chunks = _run(server.url, flavour, True, model="chat", messages=HI, tools=[WEATHER])
        whole = _run(server.url, flavour, False, model="chat", messages=HI, tools=[WEATHER])
    calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert len(calls) > 1  # the arguments come in pieces
    assert (calls[0].id, calls[0].function.name) == ("call_1", "get_weather")
    assert all(t.index == 0 for t in calls) and all(t.id is None for t in calls[1:])
    assert json.loads("".join(t.function.arguments for t in calls)) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    (call,) = whole.choices[0].message.tool_calls
    assert (call.id, call.type, call.function.name) == ("call_1", "function", "get_weather")
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert whole.choices[0].finish_reason == "tool_calls"


def test_tools_reach_the_model(serve: Any, flavour: str) -> None:
    model = FakeChatModel(["ok"])
    with serve({"chat": model}) as server:
        _run(server.url, flavour, False, model="chat", messages=HI, tools=[WEATHER],
             tool_choice="required", parallel_tool_calls=True)  # fmt: skip
    assert model.last_kwargs["tools"] == [WEATHER]
    assert model.last_kwargs["tool_choice"] == "required"
    assert model.last_kwargs["parallel_tool_calls"] is True


def test_reasoning_goes_out_under_both_names(serve: Any, flavour: str) -> None:
    with serve({"chat": FakeChatModel([THINKING], chunking="none")}) as server:
        chunks = _run(server.url, flavour, True, model="chat", messages=HI)
        whole = _run(server.url, flavour, False, model="chat", messages=HI)
    deltas = [c.choices[0].delta.model_dump() for c in chunks if c.choices]
    assert [d["reasoning_content"] for d in deltas if d.get("reasoning_content")] == ["Hmm."]
    assert [d["reasoning"] for d in deltas if d.get("reasoning")] == ["Hmm."]
    message = whole.choices[0].message.model_dump()
    assert (message["reasoning_content"], message["reasoning"]) == ("Hmm.", "Hmm.")
    assert message["content"] == "Hi!"


def test_a_text_model_answers_chat_requests(serve: Any, flavour: str) -> None:
    with serve({"text": FakeLLM(["Plain text"])}) as server:
        whole = _run(server.url, flavour, False, model="text", messages=HI)
        chunks = _run(server.url, flavour, True, model="text", messages=HI,
                      stream_options={"include_usage": True})  # fmt: skip
    assert whole.choices[0].message.content == "Plain text"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Plain text"
    assert chunks[-1].usage.completion_tokens > 0


def test_a_chat_model_answers_completions(serve: Any, flavour: str) -> None:
    with serve({"chat": FakeChatModel(["From chat"])}) as server:
        sdk_kind = openai.OpenAI if is_sync(flavour) else None
        body = {"model": "chat", "prompt": "hi", "max_tokens": 20}
        whole = httpx.post(server.url + "/v1/completions", json=body).json()
        if sdk_kind is not None:
            with sdk_kind(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as sdk:
                chunks = list(sdk.completions.create(stream=True, **body))  # type: ignore[call-overload]
        else:

            async def run() -> list[Any]:
                async with openai.AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x") as sdk:
                    stream = await sdk.completions.create(stream=True, **body)  # type: ignore[call-overload]
                    return [c async for c in stream]

            chunks = asyncio.run(run())
    assert whole["choices"][0]["text"] == "From chat"
    assert whole["choices"][0]["finish_reason"] == "stop"
    assert whole["usage"]["completion_tokens"] == 9
    assert "".join(c.choices[0].text for c in chunks) == "From chat"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages"),
    ],
)
def test_what_cannot_be_honoured_is_a_clear_400(
    serve: Any, extra: dict[str, Any], param: str
) -> None:
    with serve({"chat": FakeChatModel(["x"])}) as server:
        body = {"model": "chat", "messages": HI, **extra}
        response = httpx.post(server.url + "/v1/chat/completions", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and error["message"]


def test_a_text_model_takes_no_tools(serve: Any) -> None:
    with serve({"text": FakeLLM(["x"])}) as server:
        body = {"model": "text", "messages": HI, "tools": [WEATHER]}
        response = httpx.post(server.url + "/v1/chat/completions", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "tools"


def test_the_same_auth_guards_chat(serve: Any) -> None:
    with serve({"chat": FakeChatModel(["x"])}, api_keys=["k"]) as server:
        body = {"model": "chat", "messages": HI}
        refused = httpx.post(server.url + "/v1/chat/completions", json=body)
        allowed = httpx.post(
            server.url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer k"}
        )
    assert refused.status_code == 401 and allowed.status_code == 200


def test_runnable_endpoints_take_messages_and_return_message_chunks(serve: Any) -> None:
    with serve({"chat": FakeChatModel([CALL, "Sunny."], chunking="word")}) as server:
        invoked = httpx.post(server.url + "/invoke", json={"input": HI}).json()
        with httpx.stream("POST", server.url + "/stream", json={"input": HI}) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert invoked["output"]["tool_calls"][0]["name"] == "get_weather"
    assert invoked["finish_reason"] == "tool_calls"
    frames = [json.loads(line[5:]) for line in lines]
    chunks, end = frames[1:-1], frames[-1]
    assert all(c["type"] == "ai" and "tool_call_chunks" in c for c in chunks)
    assert "".join(c["content"] for c in chunks) == "Sunny."
    assert end["finish_reason"] == "stop" and end["usage"]["completion_tokens"] == 1


def test_batch_and_events_of_a_chat_model(serve: Any) -> None:
    with serve({"chat": FakeChatModel(["One.", "Two."], chunking="word")}) as server:
        batch = httpx.post(server.url + "/batch", json={"inputs": [HI, "hi"]}).json()
        body = {"input": HI, "version": "v2"}
        with httpx.stream("POST", server.url + "/stream_events", json=body) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert sorted(r["output"]["content"] for r in batch["results"]) == ["One.", "Two."]
    events = [json.loads(line[5:]) for line in lines[:-1]]
    streamed = [e["data"]["chunk"] for e in events if e["event"] == "on_chat_model_stream"]
    assert streamed and all(c["type"] == "ai" for c in streamed)


CHAT_STREAM = {"model": "chat", "messages": HI, "stream": True}


def _leave_mid_answer(url: str, flavour: str) -> None:
    """Read until the answer has begun, then hang up."""
    path = url + "/v1/chat/completions"
    if is_sync(flavour):
        with httpx.stream("POST", path, json=CHAT_STREAM) as response:
            for line in response.iter_lines():
                if '"content":"x"' in line:
                    return
        return

    async def run() -> None:
        client = httpx.AsyncClient()
        async with client, client.stream("POST", path, json=CHAT_STREAM) as response:
            async for line in response.aiter_lines():
                if '"content":"x"' in line:
                    return

    asyncio.run(run())


def test_a_client_leaving_a_chat_stream_stops_the_model(serve: Any, flavour: str) -> None:
    model = FakeChatModel(["x" * 400], delay=0.01)
    with serve({"chat": model}) as server:
        _leave_mid_answer(server.url, flavour)
        at_close = model.chunks_produced
        assert wait_until(lambda: False, timeout=0.3) is False  # let a runaway show itself
        stopped = model.chunks_produced
        assert wait_until(lambda: False, timeout=0.2) is False
    assert model.chunks_produced == stopped
    assert stopped <= at_close + 40 < 400


def test_a_busy_chat_model_turns_away_the_overflow(serve: Any) -> None:
    model = FakeChatModel(["abcdefghij"], delay=0.03)
    model.thread_safe = False

    async def run(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            tasks = []
            for _ in range(6):
                body = {"model": "chat", "messages": HI}
                tasks.append(asyncio.ensure_future(client.post("/v1/chat/completions", json=body)))
                await asyncio.sleep(0.02)
            return await asyncio.gather(*tasks)

    with serve({"chat": model}, max_waiting=2) as server:
        codes = [a.status_code for a in asyncio.run(run(server.url))]
    assert codes[:3] == [200] * 3 and 429 in codes[3:]
