"""The embedded model behind the server: same text as in-process, and a client that
leaves stops it within a token or two."""

from __future__ import annotations

from typing import Any

import httpx
import openai
from helpers import wait_until

from lmstream import BaseCallbackHandler
from lmstream.providers.llamacpp import LlamaCpp

PROMPT = "Write me a 1 verse song about sparkling water."


def test_served_text_equals_in_process_text(serve: Any) -> None:
    llm = LlamaCpp(temperature=0, seed=7)
    local = llm.invoke(PROMPT, max_tokens=24)
    with serve({"smollm2": llm}) as server:
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        chunks = list(
            sdk.completions.create(model="smollm2", prompt=PROMPT, max_tokens=24, stream=True)
        )
    texts = [c.choices[0].text for c in chunks if c.choices]
    assert "".join(texts) == local
    assert len([t for t in texts if t]) > 5  # token by token


class Cancels(BaseCallbackHandler):
    def __init__(self) -> None:
        self.cancelled = 0

    def on_llm_cancel(self, response: Any, **kwargs: Any) -> None:
        self.cancelled += 1


def test_a_client_leaving_stops_the_embedded_model(serve: Any) -> None:
    cancels = Cancels()
    llm = LlamaCpp(temperature=0, seed=7, callbacks=[cancels])
    body = {"model": "m", "prompt": "Write a long story about the sea.", "stream": True,
            "max_tokens": 300}  # fmt: skip
    with serve({"m": llm}) as server:
        start = llm.tokens_generated
        with httpx.stream("POST", server.url + "/v1/completions", json=body) as response:
            next(response.iter_lines())
            at_close = llm.tokens_generated
        assert wait_until(lambda: cancels.cancelled == 1)
        settled = llm.tokens_generated
        assert wait_until(lambda: False, timeout=0.3) is False
        assert llm.tokens_generated == settled  # nothing runs on after the stop
    assert settled - start < 300 // 4
    assert settled - at_close <= 3  # in flight when the disconnect was seen
