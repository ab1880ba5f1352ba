"""A provider's own exceptions keep their type (as in LangChain), while lmstream's promise
holds: the error is also a ``ProviderError`` carrying the partial text and usage."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import collect, invoke_of, stream_of

from lmstream import LLM, FakeLLM, GenerationChunk, ProviderError, RunnableLambda
from lmstream.errors import as_provider_error


class QuotaError(Exception):
    """A provider's own error, with a constructor of its own."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class Sealed(Exception):
    """An error class that refuses subclasses."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        raise TypeError("sealed")


class Failing(LLM):
    """Streams ``ab``, then raises a fresh ``make()``; ``invoke`` raises at once."""

    def __init__(self, make: Any) -> None:
        super().__init__()
        self.make = make

    @property
    def _llm_type(self) -> str:
        return "failing"

    def _call(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> str:
        raise self.make()

    def _stream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        yield GenerationChunk("ab")
        raise self.make()


def test_a_providers_own_exception_keeps_its_type_and_its_partial_text(flavour: str) -> None:
    raised: list[QuotaError] = []

    def make() -> QuotaError:
        raised.append(QuotaError(429, "over quota"))
        return raised[-1]

    with pytest.raises(QuotaError) as info:
        collect(stream_of(Failing(make), flavour, "p"))
    error = info.value
    assert error is raised[-1]  # the same object, not a copy
    assert isinstance(error, ProviderError)
    assert error.code == 429 and str(error) == "over quota"
    assert type(error).__name__ == "QuotaError"
    assert error.partial_text == "ab"
    assert error.usage is not None and error.usage.completion_tokens > 0
    with pytest.raises(ProviderError) as again:
        invoke_of(Failing(make), flavour, "p")
    assert isinstance(again.value, QuotaError) and again.value.partial_text == ""


def test_a_built_in_exception_keeps_its_type_as_a_copy(flavour: str) -> None:
    original = ValueError("bad value")
    with pytest.raises(ValueError, match="bad value") as info:
        collect(stream_of(Failing(lambda: original), flavour, "p"))
    assert isinstance(info.value, ProviderError)
    assert info.value.partial_text == "ab"
    assert info.value.__cause__ is original


def test_fallbacks_and_retries_match_a_providers_own_exception(flavour: str) -> None:
    def quota() -> QuotaError:
        return QuotaError(429, "over quota")

    class FailsFirst(Failing):
        def _stream(self, prompt: str, stop: Any = None, **kw: Any) -> Iterator[GenerationChunk]:
            raise self.make()

    fallback = FailsFirst(quota).with_fallbacks(
        [RunnableLambda(lambda p: "fallback")], exceptions_to_handle=(QuotaError,)
    )
    assert invoke_of(fallback, flavour, "p") == "fallback"
    assert collect(stream_of(fallback, flavour, "p")) == ["fallback"]  # before a chunk
    calls: list[int] = []

    class Flaky(Failing):
        def _call(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> str:
            calls.append(1)
            if len(calls) < 3:
                raise quota()
            return "ok"

    retried = Flaky(quota).with_retry(
        retry_if_exception_type=(QuotaError,), wait_exponential_jitter=False
    )
    assert invoke_of(retried, flavour, "p") == "ok" and len(calls) == 3


def test_raising_the_same_exception_again_carries_the_new_partial_text(flavour: str) -> None:
    error = QuotaError(1, "again")
    with pytest.raises(QuotaError):
        collect(stream_of(Failing(lambda: error), flavour, "p"))
    assert error.partial_text == "ab"  # type: ignore[attr-defined]
    with pytest.raises(QuotaError):
        invoke_of(Failing(lambda: error), flavour, "p")
    assert error.partial_text == ""  # type: ignore[attr-defined]


def test_a_class_that_cannot_be_subclassed_is_wrapped_with_its_cause(flavour: str) -> None:
    with pytest.raises(ProviderError) as info:
        collect(stream_of(Failing(lambda: Sealed("no")), flavour, "p"))
    assert isinstance(info.value.__cause__, Sealed)
    assert info.value.partial_text == "ab"


def test_kept_type_errors_pickle_with_their_type_and_partial_text() -> None:
    error = as_provider_error(QuotaError(7, "q"), "partial", None)
    copy = pickle.loads(pickle.dumps(error))
    assert isinstance(copy, QuotaError) and isinstance(copy, ProviderError)
    assert copy.code == 7 and copy.partial_text == "partial" and str(copy) == "q"


def test_lmstream_errors_are_not_retyped(flavour: str) -> None:
    llm = FakeLLM(["abc"], error_after=1)
    with pytest.raises(ProviderError) as info:
        collect(stream_of(llm, flavour, "p"))
    assert type(info.value) is ProviderError and info.value.partial_text == "a"
