"""The chat router over real loopback backends (``/v1/chat/completions``): balancing,
retry before the first chunk on another backend, typed errors with the partial message
after it, cancellation reaching the backend, reasoning under either name, tool-call
fragments by index, usage once, and one pool shared with the text router."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from helpers import chunks_of, collect, free_port, is_sync, stream_of, take
from servers.scripted import Reply, Reset, ScriptedServer, error
from servers.scripted_chat import chat_stream, tool_delta

from lmstream import (
    AIMessageChunk,
    APIError,
    ChatRouter,
    HumanMessage,
    InvalidInputError,
    Router,
    ServerError,
)
from lmstream.messages import add_chunks

Make = Callable[..., ChatRouter]


def key_for(router: ChatRouter, url: str) -> str:
    """A session id that the router sends to ``url`` first."""
    return next(f"s{i}" for i in range(10_000) if router.backend_for(f"s{i}") == url)


def message_of(router: ChatRouter, flavour: str, text: str, **kwargs: Any) -> AIMessageChunk:
    return add_chunks(collect(stream_of(router, flavour, [HumanMessage(text)], **kwargs)))


def until_error(chunks: Any) -> tuple[list[AIMessageChunk], Any]:
    """The chunks a sync or async stream gave, and the error that ended it."""
    got: list[AIMessageChunk] = []
    if not hasattr(chunks, "__anext__"):
        try:
            got.extend(chunks)
        except APIError as exc:
            return got, exc
        return got, None

    async def run() -> Any:
        try:
            async for chunk in chunks:
                got.append(chunk)
        except APIError as exc:
            return exc
        return None

    return got, asyncio.run(run())


def held_open(router: ChatRouter, flavour: str, n: int) -> None:
    """Open ``n`` streams at once, each past its first chunk, then close them."""
    messages = [HumanMessage("one two three")]
    if is_sync(flavour):
        streams = [router.stream(messages) for _ in range(n)]
        for s in streams:
            next(s)
        for s in streams:
            s.close()
        return

    async def run() -> None:
        streams = [router.astream(messages) for _ in range(n)]
        for s in streams:
            await s.__anext__()
        for s in streams:
            await s.aclose()

    asyncio.run(run())


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


# -- balancing ------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "n"), [("p2c", 2), ("least", 3)])
def test_chat_streams_in_flight_go_to_the_least_busy_backends(
    backends: list[ScriptedServer], make_chat_router: Make, flavour: str, policy: str, n: int
) -> None:
    router = make_chat_router([s.url for s in backends[:n]], policy=policy)
    held_open(router, flavour, n)
    assert [len(s.requests) for s in backends[:n]] == [1] * n
    assert all(s.requests[0].path == "/v1/chat/completions" for s in backends[:n])
    assert all(v["outstanding"] == 0 and v["cancelled"] == 1 for v in router.stats().values())


def test_a_chat_session_keeps_its_backend(
    backends: list[ScriptedServer], make_chat_router: Make, flavour: str
) -> None:
    router = make_chat_router([s.url for s in backends])
    for _ in range(4):
        assert message_of(router, flavour, "hi there", session_id="bob").text == "hi there "
    assert sorted(len(s.requests) for s in backends) == [0, 0, 4]


def test_conversations_opening_alike_keep_their_backend(
    backends: list[ScriptedServer], make_chat_router: Make, flavour: str
) -> None:
    router = make_chat_router([s.url for s in backends], affinity="prefix")
    for question in ("a b", "c d", "e f", "g h"):
        conversation = [("system", "You are kind."), ("human", question)]
        assert add_chunks(chunks_of(router, flavour, conversation)).text == question + " "
    assert sorted(len(s.requests) for s in backends) == [0, 0, 4]


# -- before and after the first chunk -------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [error(500), error(503), error(429, headers={"retry-after": "30"}), Reply(steps=[Reset()])],
    ids=["500", "503", "429", "reset"],
)
def test_a_chat_failure_before_the_first_chunk_is_retried_on_another_backend(
    backends: list[ScriptedServer], make_chat_router: Make, flavour: str, failure: Reply
) -> None:
    a, b = backends[:2]
    router = make_chat_router([a.url, b.url])
    a.script(failure)
    chunks = chunks_of(router, flavour, "one two", session_id=key_for(router, a.url))
    assert "".join(c.text for c in chunks) == "one two "  # once: nothing repeated
    assert (len(a.requests), len(b.requests)) == (1, 1)
    stats = router.stats()
    assert stats[a.url]["retried_elsewhere"] == 1 and stats[b.url]["completed"] == 1


def test_a_refused_chat_connection_is_retried_on_another_backend(
    backends: list[ScriptedServer], make_chat_router: Make, flavour: str
) -> None:
    dead, b = dead_url(), backends[1]
    router = make_chat_router([dead, b.url])
    message = message_of(router, flavour, "still here", session_id=key_for(router, dead))
    assert message.text == "still here " and router.stats()[dead]["failed"] == 1


def test_when_every_chat_attempt_fails_the_error_names_its_backend(
    backends: list[ScriptedServer], make_chat_router: Make, flavour: str
) -> None:
    a, b = backends[:2]
    router = make_chat_router([a.url, b.url], max_retries=1)
    a.script(*[error(503)] * 2)
    b.script(*[error(503)] * 2)
    got, exc = until_error(stream_of(router, flavour, "p"))
    assert got == [] and isinstance(exc, ServerError)
    assert exc.backend in (a.url, b.url) and exc.backend in str(exc)


def test_a_chat_stream_cut_after_its_first_chunk_keeps_its_partial_message(
    backends: list[ScriptedServer], make_chat_router: Make, flavour: str
) -> None:
    a, b = backends[:2]
    router = make_chat_router([a.url, b.url])
    a.script(chat_stream(["one ", "two "], finish_reason=None, usage=None, done=False,
                         then=[Reset()]))  # fmt: skip
    got, exc = until_error(stream_of(router, flavour, "p", session_id=key_for(router, a.url)))
    assert [c.text for c in got] == ["one ", "two "]
    assert isinstance(exc, APIError) and exc.backend == a.url and a.url in str(exc)
    assert isinstance(exc.partial_message, AIMessageChunk)
    assert exc.partial_message.text == exc.partial_text == "one two "
    assert len(b.requests) == 0  # never retried: the text would repeat
    assert router.stats()[a.url]["failed"] == 1


def test_a_chat_backend_killed_mid_stream_ends_it_in_a_typed_error(
    backends: list[ScriptedServer], make_chat_router: Make, flavour: str, serve_process: Any
) -> None:
    survivor = backends[0]
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    args = ("--chat", "-m", f"fake:{words}", "--option", "chunking=word", "--option", "delay=0.2")
    with serve_process(*args) as (url, proc):
        router = make_chat_router([url, survivor.url], eject_after=1)
        session = key_for(router, url + "/v1")
        if is_sync(flavour):
            chunks = router.stream("p", session_id=session)
            first = next(c for c in chunks if c.text)
            proc.kill()
            got, exc = until_error(chunks)
        else:
            first, got, exc = asyncio.run(_first_then_kill(router, session, proc))
    assert isinstance(exc, APIError) and exc.backend == url + "/v1"
    text = first.text + "".join(c.text for c in got)
    assert exc.partial_message.text == exc.partial_text == text and words.startswith(text)
    assert message_of(router, flavour, "next one", session_id=session).text == "next one "
    assert router.stats()[url + "/v1"]["ejected"]


async def _first_then_kill(router: ChatRouter, session: str, proc: Any) -> tuple[Any, ...]:
    chunks = router.astream("p", session_id=session)
    first = await chunks.__anext__()
    while not first.text:
        first = await chunks.__anext__()
    proc.kill()
    got: list[AIMessageChunk] = []
    try:
        async for chunk in chunks:
            got.append(chunk)
    except APIError as exc:
        return first, got, exc
    return first, got, None


# -- cancellation ---------------------------------------------------------------------


def test_a_chat_consumer_that_stops_closes_the_backends_stream(
    backends: list[ScriptedServer], make_chat_router: Make, flavour: str
) -> None:
    a = backends[0]
    router = make_chat_router([a.url])
    a.script(chat_stream([f"w{i} " for i in range(100)], delay=0.02))
    assert [c.text for c in take(stream_of(router, flavour, "p"), 2)] == ["w0 ", "w1 "]
    assert a.wait(lambda: a.requests[-1].disconnected is not None)
    stats = router.stats()[a.url]
    assert stats["cancelled"] == 1 and stats["outstanding"] == 0


# -- what passes through --------------------------------------------------------------


NAMES = [("reasoning_content",), ("reasoning",), ("reasoning_content", "reasoning")]


@pytest.mark.parametrize("names", NAMES, ids=["reasoning_content", "reasoning", "both"])
def test_reasoning_under_either_name_arrives_as_reasoning(
    backends: list[ScriptedServer], make_chat_router: Make, flavour: str, names: tuple[str, ...]
) -> None:
    a = backends[0]
    router = make_chat_router([a.url])
    thoughts = [dict.fromkeys(names, t) for t in ("Let me ", "think.")]
    a.script(chat_stream([*thoughts, "Four."]))
    message = message_of(router, flavour, "2+2?")
    assert message.reasoning == "Let me think." and message.text == "Four."


def test_tool_call_fragments_pass_through_by_index(
    backends: list[ScriptedServer], make_chat_router: Make, flavour: str
) -> None:
    a = backends[0]
    router = make_chat_router([a.url])
    fragments = [tool_delta(0, "add", '{"a": ', id="c0"), tool_delta(1, "neg", '{"x"', id="c1"),
                 tool_delta(0, None, "1}"), tool_delta(1, None, ": 2}")]  # fmt: skip
    a.script(chat_stream([{"tool_calls": [f]} for f in fragments], finish_reason="tool_calls"))
    message = message_of(router, flavour, "sum", tools=[_TOOL])
    assert [(c["name"], c["args"], c["id"]) for c in message.tool_calls] == [
        ("add", {"a": 1}, "c0"), ("neg", {"x": 2}, "c1")]  # fmt: skip
    assert a.requests[-1].body["tools"] == [_TOOL]


_TOOL = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


@pytest.mark.parametrize("every", [False, True], ids=["at-the-end", "running-totals"])
def test_chat_usage_passes_through_once(
    backends: list[ScriptedServer], make_chat_router: Make, flavour: str, every: bool
) -> None:
    a = backends[0]
    router = make_chat_router([a.url])
    a.script(chat_stream(["a ", "b "], usage=(7, 2), usage_every=every))
    chunks = chunks_of(router, flavour, "p")
    assert add_chunks(chunks).usage_metadata == {
        "input_tokens": 7, "output_tokens": 2, "total_tokens": 9}  # fmt: skip
    assert a.requests[-1].body["stream_options"] == {"include_usage": True}
    stats = router.stats()[a.url]
    assert (stats["prompt_tokens"], stats["completion_tokens"]) == (7, 2)


def test_a_text_router_and_its_chat_model_share_one_pool(
    backends: list[ScriptedServer], make_router: Callable[..., Router], flavour: str
) -> None:
    a, b = backends[:2]
    text = make_router([a.url, b.url], temperature=0.5)
    chat = text.chat_model()
    assert chat is text.chat_model() and isinstance(chat, ChatRouter)
    a.script(error(503))
    session = key_for(chat, a.url)
    assert message_of(chat, flavour, "x y", session_id=session).text == "x y "
    assert "".join(collect(stream_of(text, flavour, "u v", session_id=session))) == "u v "
    stats = text.stats()
    assert stats == chat.stats() and stats[a.url]["retried_elsewhere"] == 1
    assert stats[a.url]["completed"] + stats[b.url]["completed"] == 2
    bodies = [r.body for r in [*a.requests, *b.requests]]
    assert {("messages" in body, body["temperature"]) for body in bodies} == {
        (True, 0.5), (False, 0.5)}  # fmt: skip


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"upstreams": "http://one"},
        {"upstreams": []},
        {"upstreams": ["http://one"], "policy": "random"},
        {"upstreams": ["ftp://one"]},
        {"upstreams": ["http://one"], "tools": []},
    ],
)
def test_bad_chat_router_settings_are_a_typed_error(settings: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        ChatRouter(**settings)


def test_a_router_sharing_anothers_backends_takes_its_settings(
    make_router: Callable[..., Router],
) -> None:
    text = make_router(["http://127.0.0.1:1"], temperature=0.5, policy="least")
    chat = ChatRouter(text, name="chat")
    assert (chat.temperature, chat.policy, chat.name) == (0.5, "least", "chat")
    with pytest.raises(InvalidInputError, match="temperature"):
        ChatRouter(text, temperature=0.1)
