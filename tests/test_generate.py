"""``BaseLLM.generate``/``agenerate`` and LangChain's batch hook ``_generate``/``_agenerate``."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import collect, invoke_of, is_sync, stream_of

from lmstream import (
    BaseCallbackHandler,
    BaseLLM,
    FakeLLM,
    Generation,
    InvalidInputError,
    LLMResult,
    ProviderError,
)


def generate_of(llm: Any, flavour: str, *args: Any, **kwargs: Any) -> LLMResult:
    """``llm.generate(...)`` or ``await llm.agenerate(...)``."""
    if is_sync(flavour):
        return llm.generate(*args, **kwargs)  # type: ignore[no-any-return]
    return asyncio.run(llm.agenerate(*args, **kwargs))  # type: ignore[no-any-return]


class Runs(BaseCallbackHandler):
    """Records each LLM run's prompts and result."""

    def __init__(self) -> None:
        self.prompts: list[list[str]] = []
        self.results: list[Any] = []
        self.errors: list[BaseException] = []

    def on_llm_start(self, serialized: Any, prompts: list[str], **kwargs: Any) -> None:
        self.prompts.append(prompts)

    def on_llm_end(self, response: Any, **kwargs: Any) -> None:
        self.results.append(response)

    def on_llm_error(self, error: BaseException, **kwargs: Any) -> None:
        self.errors.append(error)


class Shouting(BaseLLM):
    """Implements only LangChain's batch hook; records every call's prompts."""

    def __init__(self, *, fail: bool = False) -> None:
        super().__init__()
        self.calls: list[list[str]] = []
        self.fail = fail

    def _generate(self, prompts: list[str], stop: Any = None, **kwargs: Any) -> LLMResult:
        self.calls.append(list(prompts))
        if self.fail:
            raise KeyError("backend")
        return LLMResult(
            [[Generation(p.upper())] for p in prompts],
            llm_output={"token_usage": {"total_tokens": len(prompts)}, "model_name": "shout"},
        )


class AsyncShouting(Shouting):
    """Also implements ``_agenerate``, natively."""

    async def _agenerate(self, prompts: list[str], stop: Any = None, **kwargs: Any) -> LLMResult:
        await asyncio.sleep(0)
        self.calls.append(["async", *prompts])
        return LLMResult([[Generation(p[::-1])] for p in prompts])


def test_generate_gives_one_list_of_generations_per_prompt_and_llm_output(flavour: str) -> None:
    llm = FakeLLM(["one", "two"])
    result = generate_of(llm, flavour, ["a", "b"])
    assert [[g.text for g in gens] for gens in result.generations] == [["one"], ["two"]]
    assert result.generations[0][0].generation_info["finish_reason"] == "stop"
    assert result.llm_output is not None
    usage = result.llm_output["token_usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def test_generate_reports_one_run_per_prompt_and_takes_stop_and_tags(flavour: str) -> None:
    runs = Runs()
    llm = FakeLLM(["one, two"])
    result = generate_of(llm, flavour, ["a", "b"], stop=[","], callbacks=[runs], tags=["t"])
    assert [gens[0].text for gens in result.generations] == ["one", "one"]
    assert runs.prompts == [["a"], ["b"]] and len(runs.results) == 2


def test_generate_refuses_a_single_string(flavour: str) -> None:
    with pytest.raises(InvalidInputError, match="list of prompts"):
        generate_of(FakeLLM(["x"]), flavour, "just one")


def test_a_subclass_implementing_only_generate_works_everywhere(flavour: str) -> None:
    llm = Shouting()
    assert invoke_of(llm, flavour, "hi") == "HI"
    assert collect(stream_of(llm, flavour, "ho")) == ["HO"]
    runs = Runs()
    result = generate_of(llm, flavour, ["p", "q"], callbacks=[runs])
    assert [gens[0].text for gens in result.generations] == ["P", "Q"]
    assert result.llm_output == {"token_usage": {"total_tokens": 2}, "model_name": "shout"}
    assert llm.calls[-1] == ["p", "q"]  # one call for every prompt
    assert runs.prompts == [["p"], ["q"]]
    # usage is reported once, on the first prompt's run, as the reference does
    assert runs.results[0].llm_output["token_usage"] == {"total_tokens": 2}
    assert runs.results[1].llm_output["token_usage"] == {}
    assert runs.results[1].generations == [[Generation("Q")]]


def test_agenerate_is_used_natively_when_implemented(flavour: str) -> None:
    llm = AsyncShouting()
    result = generate_of(llm, flavour, ["ab", "cd"])
    expected = ["AB", "CD"] if is_sync(flavour) else ["ba", "dc"]
    assert [gens[0].text for gens in result.generations] == expected
    assert invoke_of(llm, flavour, "xy") == ("XY" if is_sync(flavour) else "yx")


def test_a_failing_generate_fails_every_run_with_the_providers_error(flavour: str) -> None:
    runs = Runs()
    with pytest.raises(KeyError) as info:
        generate_of(Shouting(fail=True), flavour, ["p", "q"], callbacks=[runs])
    assert isinstance(info.value, ProviderError)
    assert runs.errors == [info.value, info.value]
