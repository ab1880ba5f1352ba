"""Chat models: streaming message chunks with every guarantee of text models, both flavours."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import collect, events_of, invoke_of, is_sync, stream_of, take
from hypothesis import given, settings
from hypothesis import strategies as st

from lmstream import (
    AIMessage,
    AIMessageChunk,
    BaseCallbackHandler,
    BaseChatModel,
    ChatGeneration,
    ChatPromptTemplate,
    ChatResult,
    FakeChatModel,
    HumanMessage,
    InvalidInputError,
    LLMResult,
    ProviderError,
    RunnableLambda,
    SimpleChatModel,
    StreamingUnsupportedError,
    StrOutputParser,
    SystemMessage,
    load_chat_model,
)
from lmstream.messages import BaseMessage, add_chunks

REASONED = AIMessage(
    [{"type": "reasoning", "reasoning": "2+2"}, {"type": "text", "text": "It is 4."}],
    tool_calls=[{"name": "add", "args": {"a": 2, "b": 2}, "id": "call_1", "type": "tool_call"}],
)


def _merged(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    return add_chunks(chunks)


def test_stream_yields_message_chunks_that_add_up_to_the_script(flavour: str) -> None:
    chunks = collect(stream_of(FakeChatModel([REASONED]), flavour, "What is 2+2?"))
    assert all(type(c) is AIMessageChunk for c in chunks)
    assert len(chunks) > 10  # streamed piece by piece
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("lc_run--")
    assert chunks[-1].chunk_position == "last"
    merged = _merged(chunks)
    assert merged.text == "It is 4."
    assert merged.reasoning == "2+2"
    assert merged.tool_calls == REASONED.tool_calls
    assert merged.response_metadata["finish_reason"] == "tool_calls"
    assert merged.usage_metadata is not None
    assert merged.usage_metadata["output_tokens"] == len(chunks) - 1


def test_tool_call_arguments_are_visible_while_they_stream(flavour: str) -> None:
    chunks = collect(stream_of(FakeChatModel([REASONED]), flavour, "hi"))
    seen = []
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
        if total.tool_calls:
            seen.append(total.tool_calls[0]["args"])
    assert {"a": 2} in seen  # a partial object before the whole one
    assert seen[-1] == {"a": 2, "b": 2}


def test_invoke_returns_the_whole_message(flavour: str) -> None:
    message = invoke_of(FakeChatModel([REASONED]), flavour, [("human", "What is 2+2?")])
    assert type(message) is AIMessage
    assert message.text == "It is 4."
    assert message.reasoning == "2+2"
    assert message.tool_calls == REASONED.tool_calls
    assert message.usage_metadata["total_tokens"] > 0
    assert message.response_metadata["model_name"] == "fake-chat"


def test_a_chat_model_accepts_strings_tuples_dicts_and_prompt_values(flavour: str) -> None:
    seen: list[list[BaseMessage]] = []

    class Echo(SimpleChatModel):
        def _call(self, messages: list[BaseMessage], stop: Any = None, **kw: Any) -> str:
            seen.append(messages)
            return messages[-1].text

    prompt = ChatPromptTemplate.from_messages([("system", "s"), ("human", "{q}")])
    for value in ("a", [("human", "b")], [{"role": "user", "content": "c"}]):
        assert (
            invoke_of(Echo(), flavour, value).content == value[-1]
            if isinstance(value, str)
            else True
        )
    assert invoke_of(Echo(), flavour, prompt.invoke({"q": "d"})).content == "d"
    assert seen[0] == [HumanMessage("a")]
    assert seen[-1] == [SystemMessage("s"), HumanMessage("d")]


def test_bad_input_is_a_typed_error(flavour: str) -> None:
    with pytest.raises(InvalidInputError):
        invoke_of(FakeChatModel(["x"]), flavour, 42)
    with pytest.raises(InvalidInputError):
        collect(stream_of(FakeChatModel(["x"]), flavour, [("wizard", "hi")]))


# -- usage ----------------------------------------------------------------------------------


@pytest.mark.parametrize("usage", ["last", "running"])
def test_usage_is_counted_once_whether_deltas_or_running_totals(flavour: str, usage: str) -> None:
    chunks = collect(stream_of(FakeChatModel(["abcd"], usage=usage), flavour, "hi"))
    merged = _merged(chunks)
    assert merged.usage_metadata["output_tokens"] == 4
    assert merged.usage_metadata["total_tokens"] == merged.usage_metadata["input_tokens"] + 4
    assert "usage_estimated" not in merged.response_metadata


def test_usage_is_estimated_and_flagged_when_the_provider_sends_none(flavour: str) -> None:
    chunks = collect(stream_of(FakeChatModel(["abcd"], usage="none"), flavour, "hi"))
    last = chunks[-1]
    assert last.usage_metadata == {"input_tokens": len("Human: hi"), "output_tokens": 4,
                                   "total_tokens": len("Human: hi") + 4}  # fmt: skip
    assert last.response_metadata["usage_estimated"] is True
    assert _merged(chunks).response_metadata["finish_reason"] == "stop"


# -- stop sequences, failures, cancellation ---------------------------------------------------


@pytest.mark.parametrize("chunking", ["char", "word"])
def test_stop_sequences_are_held_back_across_chunks(flavour: str, chunking: str) -> None:
    model = FakeChatModel(["Hello STOP world"], chunking=chunking)
    chunks = collect(stream_of(model, flavour, "hi", stop=["STOP"]))
    assert "".join(c.text for c in chunks) == "Hello "
    assert all("S" not in c.text for c in chunks)
    assert _merged(chunks).response_metadata["finish_reason"] == "stop"


def test_a_failed_stream_carries_the_partial_message(flavour: str) -> None:
    model = FakeChatModel([REASONED], error_after=5)
    got: list[AIMessageChunk] = []

    async def aconsume() -> None:
        async for chunk in model.astream("hi"):
            got.append(chunk)

    def consume() -> None:
        got.extend(model.stream("hi")) if is_sync(flavour) else asyncio.run(aconsume())

    with pytest.raises(ProviderError) as info:
        consume()
    partial = info.value.partial_message
    assert isinstance(partial, AIMessageChunk)
    assert partial.reasoning == "2+2"
    assert partial.text == "It"
    assert info.value.partial_text == "It"
    assert partial.response_metadata["finish_reason"] == "error"
    assert partial.usage_metadata is not None
    assert len(got) == 5


def test_stopping_early_stops_the_model_within_one_chunk(flavour: str) -> None:
    model = FakeChatModel(["abcdefghij"])
    assert [c.text for c in take(stream_of(model, flavour, "hi"), 3)] == ["a", "b", "c"]
    assert model.chunks_produced == 3


def test_an_unstreamable_model_gives_one_chunk_or_refuses_in_strict_mode(flavour: str) -> None:
    model = FakeChatModel(["abc"], streaming=False)
    chunks = collect(stream_of(model, flavour, "hi"))
    assert [c.text for c in chunks] == ["abc", ""]
    with pytest.raises(StreamingUnsupportedError):
        collect(stream_of(model, flavour, "hi", config={"strict": True}))


@pytest.mark.parametrize("disable", [True, "tool_calling"])
def test_disable_streaming(flavour: str, disable: Any) -> None:
    model = FakeChatModel(["abc"], disable_streaming=disable)
    tools = model.bind_tools([{"title": "f", "type": "object", "properties": {}}])
    assert len(collect(stream_of(tools, flavour, "hi"))) == 1
    plain = collect(stream_of(model, flavour, "hi"))
    assert len(plain) == (1 if disable is True else 4)
    assert plain[-1].chunk_position == "last"


# -- hooks ------------------------------------------------------------------------------------


class _LangChainStyle(BaseChatModel):
    """A provider written LangChain's way: ``_generate`` returns a ``ChatResult``."""

    def _generate(self, messages: list[BaseMessage], stop: Any = None, **kw: Any) -> ChatResult:
        return ChatResult([ChatGeneration(AIMessage("from generate"))])


class _Streamer(SimpleChatModel):
    def _call(self, messages: list[BaseMessage], stop: Any = None, **kw: Any) -> str:
        return "called"

    def _stream(self, messages: list[BaseMessage], stop: Any = None, **kw: Any) -> Iterator[Any]:
        yield AIMessageChunk("str")
        yield ChatGeneration(AIMessageChunk("eamed"))  # LangChain hooks yield generations


def test_hooks_written_langchains_way_work(flavour: str) -> None:
    assert invoke_of(_LangChainStyle(), flavour, "hi").content == "from generate"
    assert _LangChainStyle.can_stream is False
    assert _Streamer.can_stream is True
    assert [c.text for c in collect(stream_of(_Streamer(), flavour, "hi"))] == ["str", "eamed", ""]
    assert invoke_of(_Streamer(), flavour, "hi").content == "called"


def test_a_model_without_hooks_is_refused() -> None:
    class Empty(BaseChatModel):
        pass

    with pytest.raises(TypeError):
        Empty()


# -- the rest of the Runnable interface -------------------------------------------------------


def test_batch_keeps_order_and_each_error(flavour: str) -> None:
    model = FakeChatModel(["a", "b", "c"], usage="none")
    inputs = ["x", "y", "z"]
    if is_sync(flavour):
        out = model.batch(inputs)
        done = dict(FakeChatModel(["a"]).batch_as_completed(inputs))
    else:
        out = asyncio.run(model.abatch(inputs))

        async def completed() -> dict[int, Any]:
            return {i: m async for i, m in FakeChatModel(["a"]).abatch_as_completed(inputs)}

        done = asyncio.run(completed())
    assert sorted(m.content for m in out) == ["a", "b", "c"]
    assert sorted(done) == [0, 1, 2] and all(m.content == "a" for m in done.values())


def test_bind_tools_converts_once_to_the_openai_schema(flavour: str) -> None:
    from pydantic import BaseModel, Field

    class Weather(BaseModel):
        """Weather in a city."""

        city: str = Field(description="the city")

    def add(a: int, b: int = 0) -> int:
        """Add two numbers."""
        return a + b

    schema = {"title": "lookup", "description": "Look up", "type": "object",
              "properties": {"q": {"type": "string"}}}  # fmt: skip
    model = FakeChatModel(["ok"])
    bound = model.bind_tools([Weather, add, schema], tool_choice="add")
    invoke_of(bound, flavour, "hi")
    tools = model.last_kwargs["tools"]
    assert [t["function"]["name"] for t in tools] == ["Weather", "add", "lookup"]
    assert all(t["type"] == "function" for t in tools)
    assert tools[0]["function"]["description"] == "Weather in a city."
    assert tools[0]["function"]["parameters"]["properties"]["city"]["type"] == "string"
    assert tools[1]["function"]["parameters"] == {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a"],
    }
    assert tools[2]["function"]["parameters"]["properties"] == {"q": {"type": "string"}}
    assert model.last_kwargs["tool_choice"] == {"type": "function", "function": {"name": "add"}}
    with pytest.raises(InvalidInputError):
        model.bind_tools([add], tool_choice="nope")
    with pytest.raises(InvalidInputError):
        model.bind_tools([42])


def test_retry_fallbacks_bind_and_config(flavour: str) -> None:
    broken = FakeChatModel(["never"], error_after=0)
    assert invoke_of(broken.with_fallbacks([FakeChatModel(["backup"])]), flavour, "hi").content == (
        "backup"
    )
    flaky = FakeChatModel(["x"], error_after=0)
    with pytest.raises(ProviderError):
        invoke_of(
            flaky.with_retry(stop_after_attempt=2, wait_exponential_jitter=False), flavour, "hi"
        )
    assert flaky.calls == 2
    model = FakeChatModel(["bound"])
    invoke_of(model.bind(temperature=0.5).with_config(tags=["t"]), flavour, "hi")
    assert model.last_kwargs == {"temperature": 0.5}


def test_load_chat_model_builds_the_fake(flavour: str) -> None:
    model = load_chat_model("fake:hello there")
    assert isinstance(model, FakeChatModel)
    assert invoke_of(model, flavour, "hi").content == "hello there"
    with pytest.raises(InvalidInputError):
        load_chat_model("nosuch:x")


# -- callbacks and events -----------------------------------------------------------------------


class _Recorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def on_chat_model_start(self, serialized: Any, messages: Any, **kw: Any) -> None:
        self.calls.append(("start", (messages, kw["metadata"])))

    def on_llm_new_token(self, token: str, **kw: Any) -> None:
        self.calls.append(("token", kw["chunk"]))

    def on_llm_end(self, response: Any, **kw: Any) -> None:
        self.calls.append(("end", response))


def test_callback_handlers_see_messages_tokens_and_the_result(flavour: str) -> None:
    recorder = _Recorder()
    collect(stream_of(FakeChatModel(["ab"]), flavour, "hi", config={"callbacks": [recorder]}))
    kinds = [k for k, _ in recorder.calls]
    assert kinds == ["start", "token", "token", "token", "end"]
    messages, metadata = recorder.calls[0][1]
    assert messages == [[HumanMessage("hi")]]
    assert metadata["ls_model_type"] == "chat"
    assert isinstance(recorder.calls[1][1], AIMessageChunk)
    result = recorder.calls[-1][1]
    assert isinstance(result, LLMResult)
    assert result.generations[0][0].message.text == "ab"


def test_handlers_that_only_know_text_models_get_the_prompt_as_text() -> None:
    prompts: list[Any] = []

    class TextOnly(BaseCallbackHandler):
        def on_llm_start(self, serialized: Any, p: list[str], **kw: Any) -> None:
            prompts.append(p)

    FakeChatModel(["x"]).invoke([("system", "s"), ("human", "h")], {"callbacks": [TextOnly()]})
    assert prompts == [["System: s\nHuman: h"]]


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_events_are_chat_model_events(version: str) -> None:
    events = events_of(FakeChatModel(["ab"]), "hi", version=version)
    names = [e["event"] for e in events]
    assert names == ["on_chat_model_start"] + ["on_chat_model_stream"] * 3 + ["on_chat_model_end"]
    if version == "v2":  # v1 gives a root run the call's own metadata, as the reference does
        assert all(e["metadata"]["ls_model_type"] == "chat" for e in events)
    streamed = [e["data"]["chunk"] for e in events if e["event"] == "on_chat_model_stream"]
    assert all(isinstance(c, AIMessageChunk) for c in streamed)
    output = events[-1]["data"]["output"]
    assert isinstance(output, AIMessageChunk) and output.text == "ab"
    assert output.usage_metadata is not None
    assert len({e["run_id"] for e in events}) == 1


def test_a_failed_run_ends_with_an_error_event_carrying_the_partial_message() -> None:
    events: list[dict[str, Any]] = []

    async def run() -> None:
        async for event in FakeChatModel(["abcdef"], error_after=2).astream_events("hi"):
            events.append(event)

    with pytest.raises(ProviderError) as info:
        asyncio.run(run())
    names = [e["event"] for e in events]
    assert names[-1] == "on_chat_model_error"
    data = events[-1]["data"]
    assert data["error"] is info.value
    assert info.value.partial_message.text == "ab"
    assert data["output"].text == "ab"
    assert data["output"].response_metadata["finish_reason"] == "error"


def test_prompt_chat_parser_streams_token_by_token(flavour: str) -> None:
    chain = (
        ChatPromptTemplate.from_messages([("human", "{q}")])
        | FakeChatModel([REASONED])
        | StrOutputParser()
    )
    out = collect(stream_of(chain, flavour, {"q": "2+2?"}))
    assert "".join(out) == "It is 4."
    assert len([t for t in out if t]) == len("It is 4.")
    events = events_of(chain, {"q": "2+2?"}, version="v2")
    kinds = {e["event"] for e in events}
    assert {"on_prompt_start", "on_chat_model_stream", "on_parser_stream"} <= kinds
    parents = {e["name"]: e["parent_ids"] for e in events if e["event"].endswith("_start")}
    assert parents["FakeChatModel"] == parents["StrOutputParser"] != []


def test_a_chat_model_invoked_inside_a_chain_streams_when_events_are_consumed() -> None:
    model = FakeChatModel(["hello"])

    def step(q: str) -> str:
        return model.invoke(q).text

    async def astep(q: str) -> str:
        return (await model.ainvoke(q)).text

    for fn in (step, astep):
        events = events_of(RunnableLambda(fn), "hi", version="v2")
        streamed = [e for e in events if e["event"] == "on_chat_model_stream"]
        assert "".join(e["data"]["chunk"].text for e in streamed) == "hello"
        assert len(streamed) >= 5
    events = events_of(RunnableLambda(lambda q: FakeChatModel(["hi"], disable_streaming=True)
                                      .invoke(q).text), "x", version="v2")  # fmt: skip
    assert not [e for e in events if e["event"] == "on_chat_model_stream"]


class _AsyncOnly(BaseChatModel):
    async def _astream(self, messages: list[BaseMessage], stop: Any = None, **kw: Any) -> Any:
        for word in ("native ", "async"):
            yield AIMessageChunk(word)


def test_an_async_native_model_streams_async_and_answers_sync(flavour: str) -> None:
    model = _AsyncOnly()
    assert model.native_async is True
    texts = [c.text for c in collect(stream_of(model, flavour, "hi"))]
    assert "".join(texts) == "native async"
    assert len(texts) == (2 if is_sync(flavour) else 3)  # sync: one chunk, plus the last
    assert invoke_of(model, flavour, "hi").content == "native async"


def test_a_stopped_stream_is_cancelled_not_failed(flavour: str) -> None:
    outcomes: list[str] = []

    class Outcomes(BaseCallbackHandler):
        def on_llm_cancel(self, response: Any, **kw: Any) -> None:
            outcomes.append(f"cancel:{response.generations[0][0].message.text}")

        def on_llm_error(self, error: BaseException, **kw: Any) -> None:
            outcomes.append("error")

    model = FakeChatModel(["abcdef"])
    stream = stream_of(model, flavour, "hi", config={"callbacks": [Outcomes()]})
    assert [c.text for c in take(stream, 2)] == ["a", "b"]
    assert outcomes == ["cancel:ab"]
    assert model.chunks_produced == 2


def test_events_v1_in_a_chain_carry_message_chunks() -> None:
    chain = ChatPromptTemplate.from_messages([("human", "{q}")]) | FakeChatModel(["ok"])
    events = events_of(chain, {"q": "x"}, version="v1")
    streamed = [e["data"]["chunk"] for e in events if e["event"] == "on_chat_model_stream"]
    assert [c.text for c in streamed] == ["o", "k", ""]
    end = next(e for e in events if e["event"] == "on_chat_model_end")
    assert end["data"]["output"].text == "ok"
    assert end["data"]["input"] == {"messages": [[HumanMessage("x")]]}


def test_stop_sequences_cut_the_text_channel_only(flavour: str) -> None:
    message = AIMessage(
        [
            {"type": "reasoning", "reasoning": "say 4. then stop"},
            {"type": "text", "text": "4. Done"},
        ]
    )
    chunks = collect(
        stream_of(FakeChatModel([message], chunking="word"), flavour, "hi", stop=["."])
    )
    merged = _merged(chunks)
    assert merged.reasoning == "say 4. then stop"  # reasoning is not cut
    assert merged.text == "4"
    assert merged.response_metadata["finish_reason"] == "stop"
    assert chunks[-1].chunk_position == "last"


@settings(max_examples=40, deadline=None)
@given(
    text=st.text(max_size=20),
    reasoning=st.text(max_size=20),
    args=st.dictionaries(st.text(max_size=4), st.integers() | st.text(max_size=6), max_size=3),
    chunking=st.sampled_from(["char", "word", "none"]),
    usage=st.sampled_from(["last", "running", "none"]),
)
def test_any_chunking_of_a_streamed_message_adds_up_to_it(
    text: str, reasoning: str, args: dict[str, Any], chunking: str, usage: str
) -> None:
    blocks = [{"type": "reasoning", "reasoning": reasoning}] if reasoning else []
    call = {"name": "f", "args": args, "id": "c1", "type": "tool_call"}
    message = AIMessage([*blocks, {"type": "text", "text": text}], tool_calls=[call])
    for flavour in ("sync", "async"):
        model = FakeChatModel([message], chunking=chunking, usage=usage)
        merged = _merged(collect(stream_of(model, flavour, "hi")))
        assert (merged.text, merged.reasoning, merged.tool_calls) == (text, reasoning, [call])
        assert merged.usage_metadata is not None
        if usage != "none":  # the fake counts a token per chunk, once however reported
            assert merged.usage_metadata["output_tokens"] == model.chunks_produced
