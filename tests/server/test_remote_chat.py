"""RemoteChatModel: a chat model served by a real ``lmstream serve`` (uvicorn on loopback),
the whole chat interface, sync and async, against the same model in process."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import Outcomes, collect, events_of, invoke_of, is_sync, stream_of, take, wait_until

from lmstream import (
    AIMessage,
    AuthenticationError,
    BadRequestError,
    ChatPromptTemplate,
    ContextLengthError,
    FakeChatModel,
    FakeLLM,
    InvalidInputError,
    NotFoundError,
    ProviderError,
    RateLimitError,
    RemoteChatModel,
    StrOutputParser,
    load_chat_model,
)
from lmstream.errors import APITimeoutError, GenerationError
from lmstream.messages import AIMessageChunk, add_chunks

CALL = AIMessage(
    "", tool_calls=[{"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}]
)
THINKING = AIMessage(
    [{"type": "reasoning", "reasoning": "Think twice."}, {"type": "text", "text": "Hi there!"}]
)
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}
HI = [("system", "Be brief."), ("human", "Hello")]


def _ask(remote: Any, flavour: str, stream: bool) -> Any:
    """The remote model's answer to ``HI``: its streamed chunks or its whole message."""
    return collect(stream_of(remote, flavour, HI)) if stream else invoke_of(remote, flavour, HI)


def _what(message: AIMessageChunk | AIMessage) -> tuple[Any, ...]:
    """What a chat model said: text, reasoning, tool calls and usage."""
    return message.text, message.reasoning, message.tool_calls, message.usage_metadata


@pytest.mark.parametrize("response", ["Hello there, friend!", THINKING, CALL])
def test_a_stream_says_what_the_model_in_process_says(
    serve: Any, flavour: str, response: Any
) -> None:
    local = FakeChatModel([response], chunking="word").bind_tools([WEATHER])
    near = collect(stream_of(local, flavour, HI))
    with serve({"m": FakeChatModel([response], chunking="word")}) as server:
        remote = RemoteChatModel(server.url).bind_tools([WEATHER])
        far = collect(stream_of(remote, flavour, HI))
        whole = invoke_of(remote, flavour, HI)
    assert all(isinstance(c, AIMessageChunk) for c in far)
    assert [c.text for c in far if c.text] == [c.text for c in near if c.text]
    assert _what(add_chunks(far)) == _what(add_chunks(near))
    assert _what(whole) == _what(add_chunks(near))
    assert far[-1].chunk_position == "last"
    reasons = [add_chunks(c).response_metadata["finish_reason"] for c in (far, near)]
    assert reasons[0] == reasons[1] == ("tool_calls" if response is CALL else "stop")
    if response is CALL:  # the arguments came in pieces, keyed by the call's index
        fragments = [t for c in far for t in c.tool_call_chunks]
        assert len(fragments) > 1 and fragments[0]["id"] == "call_1"


def test_settings_tools_and_stop_reach_the_served_model(serve: Any, flavour: str) -> None:
    served = FakeChatModel(["Hello world"])
    with serve({"m": served}) as server:
        remote = RemoteChatModel(server.url, temperature=0.5, stop=["w"])
        assert invoke_of(remote, flavour, HI).text == "Hello "  # the instance's stop
        assert served.last_kwargs["temperature"] == 0.5
        tooled = remote.bind_tools([WEATHER], tool_choice="auto")
        text = "".join(c.text for c in collect(stream_of(tooled, flavour, HI, seed=7, stop=["r"])))
        assert text == "Hello wo"  # the call's stop over the instance's
    assert served.last_kwargs["seed"] == 7 and served.last_kwargs["temperature"] == 0.5
    assert served.last_kwargs["tools"][0]["function"]["name"] == "get_weather"
    assert served.last_kwargs["tool_choice"] == "auto"


@pytest.mark.parametrize(
    ("error", "kind"),
    [(None, ProviderError), (RateLimitError("slow down", retry_after=30), RateLimitError)],
)
def test_a_failure_mid_stream_is_the_typed_error_with_the_partial_message(
    serve: Any, flavour: str, error: Any, kind: type[GenerationError]
) -> None:
    served = FakeChatModel(["abcdef"], error_after=3, error=error)
    with serve({"m": served}) as server:
        remote = RemoteChatModel(server.url, retry_backoff=0)
        with pytest.raises(kind) as streamed:
            collect(stream_of(remote, flavour, HI))
        assert served.calls == 1  # a stream that handed chunks on is never tried again
        with pytest.raises(kind) as invoked:
            invoke_of(remote, flavour, HI, max_retries=0)
    assert type(streamed.value) is kind
    assert streamed.value.partial_message.text == "abc"
    assert streamed.value.partial_text == "abc"
    assert invoked.value.partial_text == "abc"  # the server's word: nothing came here
    told, usage = invoked.value.partial_message, invoked.value.usage
    assert isinstance(told, AIMessageChunk) and told.text == "abc"  # the server's word too
    assert usage is not None and usage.completion_tokens == 3  # counted over there
    assert told.usage_metadata == {"input_tokens": usage.prompt_tokens, "output_tokens": 3,
                                   "total_tokens": usage.total_tokens}  # fmt: skip
    if kind is RateLimitError:  # the wait the model asked for came along
        assert streamed.value.retry_after == invoked.value.retry_after == 30


def test_errors_that_are_no_generation_error_come_back_as_themselves(
    serve: Any, flavour: str
) -> None:
    served = FakeChatModel(["abc"], error_after=0, error=ContextLengthError("far too long"))
    with serve({"m": served}) as server:
        remote = RemoteChatModel(server.url)
        for stream in (True, False):
            with pytest.raises(ContextLengthError, match="far too long"):
                _ask(remote, flavour, stream)


def test_bad_requests_are_typed_errors_not_server_failures(serve: Any, flavour: str) -> None:
    with serve({"text": FakeLLM(["x"]), "chat": FakeChatModel(["y"])}) as server:
        tooled = RemoteChatModel(server.url, model="text").bind_tools([WEATHER])
        shaped = RemoteChatModel(server.url, model="text", response_format={"type": "json_object"})
        for remote, stream in [(m, s) for m in (tooled, shaped) for s in (True, False)]:
            with pytest.raises(BadRequestError) as caught:
                _ask(remote, flavour, stream)
            assert caught.value.status_code == 400
        with pytest.raises(NotFoundError, match="does not exist"):
            invoke_of(RemoteChatModel(server.url, model="nope"), flavour, HI)
        assert invoke_of(RemoteChatModel(server.url, model="chat"), flavour, HI).text == "y"


class FailsOnce(FakeChatModel):
    """Refuses its first call with a rate limit, before any chunk; answers the others."""

    def _produce(self, i: int, chunk: AIMessageChunk) -> AIMessageChunk:
        if self.calls == 1:
            raise RateLimitError("busy")
        return super()._produce(i, chunk)


def test_a_failure_before_the_first_chunk_is_tried_again(serve: Any, flavour: str) -> None:
    for stream in (True, False):
        served = FailsOnce(["fine"])
        with serve({"m": served}) as server:
            remote = RemoteChatModel(server.url, max_retries=1, retry_backoff=0)
            answer = _ask(remote, flavour, stream)
            text = add_chunks(answer).text if stream else answer.text
        assert (text, served.calls) == ("fine", 2)


def test_time_limits_keep_the_partial_message(serve: Any, flavour: str) -> None:
    with serve({"m": FakeChatModel(["z" * 2000], delay=0.01)}) as server:
        remote = RemoteChatModel(server.url, timeout=0.5, max_retries=0)
        with pytest.raises(APITimeoutError) as caught:
            collect(stream_of(remote, flavour, HI))
    assert caught.value.phase == "total"
    assert set(caught.value.partial_message.text) <= {"z"}


def test_closing_a_remote_stream_stops_the_model_over_there(serve: Any, flavour: str) -> None:
    cancels = Outcomes()
    served = FakeChatModel(["z" * 400], delay=0.01, callbacks=[cancels])
    with serve({"m": served}) as server:
        assert [c.text for c in take(stream_of(RemoteChatModel(server.url), flavour, HI), 2)] == [
            "z",
            "z",
        ]
        assert wait_until(lambda: cancels.outcomes.count("cancelled") == 1)
        stopped = served.chunks_produced
        assert not wait_until(lambda: served.chunks_produced > stopped, timeout=0.3)
    assert stopped < 400


def test_events_show_the_remote_model_as_a_chat_model(serve: Any) -> None:
    with serve({"m": FakeChatModel(["one two three"], chunking="word")}) as server:
        remote = RemoteChatModel(server.url)
        chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | remote | StrOutputParser()
        v2 = events_of(chain, {"q": "x"}, version="v2")
        v1 = events_of(remote, HI, version="v1")
    streamed = [e for e in v2 if e["event"] == "on_chat_model_stream"]
    assert [e["data"]["chunk"].text for e in streamed if e["data"]["chunk"].text] == [
        "one ",
        "two ",
        "three",
    ]
    assert all(isinstance(e["data"]["chunk"], AIMessageChunk) for e in streamed)
    (end,) = [e for e in v2 if e["event"] == "on_chat_model_end"]
    assert end["data"]["output"].usage_metadata["output_tokens"] == 3
    assert [e["event"] for e in v2].count("on_chat_model_start") == 1
    kinds = [e["event"] for e in v1]
    assert kinds[0] == "on_chat_model_start" and kinds[-1] == "on_chat_model_end"
    assert kinds.count("on_chat_model_stream") >= 3


def test_batches_both_ways(serve: Any, flavour: str) -> None:
    with serve({"m": FakeChatModel(["a", "b"])}) as server:
        remote = RemoteChatModel(server.url)
        inputs = [[("human", str(i))] for i in range(4)]
        if is_sync(flavour):
            answers = remote.batch(inputs, {"max_concurrency": 2})
            done = dict(remote.batch_as_completed(inputs))
        else:

            async def run() -> tuple[list[AIMessage], dict[int, AIMessage]]:
                answers = await remote.abatch(inputs, {"max_concurrency": 2})
                done = {i: m async for i, m in remote.abatch_as_completed(inputs)}
                await remote.aclose()
                return answers, done

            answers, done = asyncio.run(run())
    assert sorted(m.text for m in answers) == ["a", "a", "b", "b"]
    assert sorted(done) == [0, 1, 2, 3] and all(isinstance(m, AIMessage) for m in done.values())


def test_keys_and_model_ids(serve: Any, flavour: str) -> None:
    with serve({"m": FakeChatModel(["ok"])}, api_keys=["sk-chat"]) as server:
        keyed = load_chat_model(f"remote:{server.url}", api_key="sk-chat")
        assert isinstance(keyed, RemoteChatModel)
        assert invoke_of(keyed, flavour, HI).text == "ok"
        with pytest.raises(AuthenticationError):
            invoke_of(RemoteChatModel(server.url, api_key="wrong"), flavour, HI)


def test_settings_are_checked_and_listed() -> None:
    with pytest.raises(InvalidInputError, match="did you mean 'temperature'"):
        RemoteChatModel("http://127.0.0.1:9", temprature=1)
    with pytest.raises(InvalidInputError, match="requires the argument 'url'"):
        load_chat_model("remote")
    with pytest.raises(InvalidInputError, match=r"per-call settings: .*tool_choice"):
        RemoteChatModel("http://127.0.0.1:9").invoke("hi", logprobs=True)


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "invoke"])
@pytest.mark.parametrize("usage", ["last", "none"])
def test_usage_counted_by_the_server_arrives_marked_estimated(
    serve: Any, flavour: str, stream: bool, usage: str
) -> None:
    local = FakeChatModel(["Hello there, friend!"], usage=usage)
    near = add_chunks(collect(stream_of(local, flavour, HI)))
    with serve({"m": FakeChatModel(["Hello there, friend!"], usage=usage)}) as server:
        answer = _ask(RemoteChatModel(server.url), flavour, stream)
    far = add_chunks(answer) if stream else answer
    assert far.usage_metadata == near.usage_metadata
    estimated = near.response_metadata.get("usage_estimated", False)
    assert estimated is (usage == "none")
    assert far.response_metadata.get("usage_estimated", False) is estimated
