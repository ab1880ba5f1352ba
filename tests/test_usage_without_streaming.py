"""Usage is reachable from ``invoke`` and ``batch`` without streaming, the documented way:
a callback handler's ``on_llm_end`` gets an ``LLMResult`` carrying it."""

from __future__ import annotations

from typing import Any

from helpers import invoke_of, is_sync

from lmstream import BaseCallbackHandler, FakeLLM, Usage


class Usages(BaseCallbackHandler):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.seen.append(response.generations[0][0].generation_info["usage"])


def test_invoke_hands_its_usage_to_on_llm_end(flavour: str) -> None:
    usages = Usages()
    llm = FakeLLM(["one two three"], chunking="word")
    text = invoke_of(llm, flavour, "Count.", config={"callbacks": [usages]}, max_tokens=2)
    assert text == "one two "
    assert usages.seen == [Usage(prompt_tokens=1, completion_tokens=2, total_tokens=3)]


def test_batch_hands_each_input_s_usage_to_on_llm_end(flavour: str) -> None:
    import asyncio

    usages = Usages()
    llm = FakeLLM(["a b", "c d e"], chunking="word")
    config = {"callbacks": [usages]}
    if is_sync(flavour):
        llm.batch(["x", "y"], config)  # type: ignore[arg-type]
    else:
        asyncio.run(llm.abatch(["x", "y"], config))  # type: ignore[arg-type]
    assert sorted(u.completion_tokens for u in usages.seen) == [2, 3]
