"""Connections between streams: a stream read to its end marker leaves its connection in
the pool for the next call (no new connection, and no connect, per request), and a server
that does not end the body after the marker loses the connection instead of holding the
stream up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from helpers import is_sync
from servers.scripted import ScriptedServer, Send, Stall, stream
from servers.scripted_chat import chat_stream

from lmstream.providers._reads import DRAIN_BYTES
from lmstream.providers.openai import OpenAI


def _texts(model: Any, flavour: str, calls: int) -> list[str]:
    """The text of ``calls`` streams in a row, async ones on one event loop (an async
    client's connections belong to its loop)."""
    if is_sync(flavour):
        return ["".join(c.text for c in model.stream_chunks("hi")) for _ in range(calls)]

    async def run() -> list[str]:
        return ["".join([c.text async for c in model.astream_chunks("hi")]) for _ in range(calls)]

    return asyncio.run(run())


def _connections(scripted: ScriptedServer) -> list[tuple[Any, ...]]:
    return [r.client for r in scripted.requests]


@pytest.mark.parametrize(
    ("model", "script"), [("make_llm", stream), ("make_chat", chat_stream)], ids=["text", "chat"]
)
def test_streams_in_a_row_share_one_connection(
    scripted: ScriptedServer,
    request: pytest.FixtureRequest,
    flavour: str,
    model: str,
    script: Callable[[list[str]], Any],
) -> None:
    scripted.script(*[script(["a", "b"])] * 3)
    assert _texts(request.getfixturevalue(model)(), flavour, 3) == ["ab"] * 3
    clients = _connections(scripted)
    assert len(clients) == 3 and len(set(clients)) == 1


def test_a_body_left_open_after_the_marker_ends_the_stream_all_the_same(
    scripted: ScriptedServer, make_llm: Callable[..., OpenAI], flavour: str
) -> None:
    scripted.script(stream(["a", "b"], then=[Stall()]), stream(["c"]))
    assert _texts(make_llm(), flavour, 2) == ["ab", "c"]
    first, second = scripted.requests
    assert scripted.wait(lambda: first.disconnected is not None)  # given up, not kept
    assert first.client != second.client


@pytest.mark.parametrize(("extra", "kept"), [(100, True), (4 * DRAIN_BYTES, False)])
def test_bytes_after_the_marker_are_read_up_to_a_limit(
    scripted: ScriptedServer,
    make_llm: Callable[..., OpenAI],
    flavour: str,
    extra: int,
    kept: bool,
) -> None:
    scripted.script(stream(["a"], then=[Send(b"x" * extra)]), stream(["b"]))
    assert _texts(make_llm(), flavour, 2) == ["a", "b"]
    first, second = scripted.requests
    assert (first.client == second.client) is kept
