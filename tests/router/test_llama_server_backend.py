"""The router with a real ``llama_cpp.server`` (the embedded SmolLM2 model) as one of its
backends, beside a scripted one: text and chat answers at temperature 0 equal the
server's own answers, whether the router goes there directly or after the other backend
failed before its first chunk."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from helpers import collect, stream_of
from servers.scripted import ScriptedServer, error

from lmstream import HumanMessage, Router
from lmstream.messages import add_chunks

PROMPT = "The capital of France is"
QUESTION = "Name three colours."


def key_for(router: Router, url: str) -> str:
    return next(f"s{i}" for i in range(10_000) if router.backend_for(f"s{i}") == url)


def direct(url: str, path: str, body: dict[str, object]) -> str:
    """The server's own non-streamed answer, asked for without lmstream."""
    body = {**body, "temperature": 0, "max_tokens": 16}
    choice = httpx.post(f"{url}{path}", json=body, timeout=120).json()["choices"][0]
    return str(choice["text"] if "text" in choice else choice["message"]["content"])


@pytest.mark.parametrize("via", ["llama", "after-a-failure"])
def test_text_and_chat_through_the_router_equal_the_direct_answers(
    llama_server: str,
    backends: list[ScriptedServer],
    make_router: Callable[..., Router],
    flavour: str,
    via: str,
) -> None:
    other = backends[0]
    router = make_router([llama_server, other.url], temperature=0, max_tokens=16)
    chat = router.chat_model()
    session = key_for(router, llama_server if via == "llama" else other.url)
    if via == "after-a-failure":
        other.script(error(503), error(502))
    text = "".join(collect(stream_of(router, flavour, PROMPT, session_id=session)))
    message = add_chunks(collect(stream_of(chat, flavour, [HumanMessage(QUESTION)],
                                           session_id=session)))  # fmt: skip
    assert text == direct(llama_server, "/completions", {"prompt": PROMPT}) and text
    chat_body = {"messages": [{"role": "user", "content": QUESTION}]}
    assert message.text == direct(llama_server, "/chat/completions", chat_body) and message.text
    assert message.usage_metadata is not None and message.usage_metadata["output_tokens"] > 0
    stats = router.stats()
    assert stats[llama_server]["completed"] == 2
    assert stats[other.url]["retried_elsewhere"] == (2 if via == "after-a-failure" else 0)
