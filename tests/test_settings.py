"""Declared settings: one declaration gives the constructor argument, its check, its
default and whether a call may override it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import collect, invoke_of, stream_of

from lmstream import LLM, GenerationChunk, InvalidInputError, Rule, setting
from lmstream.llm import BaseLLM
from lmstream.settings import STOP, URL, for_call, kind, number, positional, settings_of


class Echo(LLM):
    prefix: str = setting("", kind(str, text="a str"))
    repeat: int = setting(1, number(1, integer=True), per_call=True)
    url: str = setting(rule=URL)
    stop: list[str] | None = setting(None, STOP)
    made: list[str] = setting(factory=list)

    def _stream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        settings = for_call(self, BaseLLM, kwargs)
        for _ in range(settings["repeat"]):
            yield GenerationChunk(self.prefix + prompt)


class LoudEcho(Echo):
    prefix = "!"  # a default overridden without an annotation keeps the rule


def test_settings_are_checked_converted_and_defaulted() -> None:
    llm = Echo(url="http://h/x/", stop="\n", prefix=">")
    assert (llm.url, llm.stop, llm.prefix, llm.repeat) == ("http://h/x", ["\n"], ">", 1)
    assert Echo(url="http://h").made is not Echo(url="http://h").made  # one per instance
    assert Echo.repeat == 1  # read on the class: the default
    assert LoudEcho(url="http://h").prefix == "!"
    with pytest.raises(InvalidInputError, match=r"LoudEcho: prefix must be a str, not 3"):
        LoudEcho(url="http://h", prefix=3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": "ftp://x"}, r"Echo: url must be an http:// or https:// URL, not 'ftp://x'"),
        ({"url": "http://h", "repeat": 0}, r"repeat must be an int >= 1, not 0"),
        ({"url": "http://h", "repeat": True}, r"repeat must be an int >= 1, not True"),
        ({"url": "http://h", "stop": 5}, r"stop must be a str or a list of str or None"),
        ({}, r"Echo requires the argument 'url'; its settings: made, prefix, repeat, stop, url"),
        (
            {"url": "http://h", "prefx": "x"},
            r"unexpected arguments: \['prefx'\] \(did you mean 'prefix'\?\); its settings: "
            r"made, prefix, repeat, stop, url; also callbacks, metadata, name, tags",
        ),
    ],
)
def test_a_constructor_mistake_is_one_clear_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        Echo(**kwargs)


def test_a_call_overrides_only_per_call_settings(flavour: str) -> None:
    llm = Echo(url="http://h")
    assert collect(stream_of(llm, flavour, "a", repeat=2)) == ["a", "a"]
    assert invoke_of(llm, flavour, "a") == "a"
    with pytest.raises(InvalidInputError, match=r"'prefix' for a call; per-call settings: repeat"):
        invoke_of(llm, flavour, "a", prefix="x")
    with pytest.raises(InvalidInputError, match="repeat must be"):
        collect(stream_of(llm, flavour, "a", repeat=-1))


def test_settings_are_listed_in_declaration_order_and_identify_the_model() -> None:
    assert list(settings_of(Echo, BaseLLM)) == ["prefix", "repeat", "url", "stop", "made"]
    assert Echo(url="http://h").asdict()["url"] == "http://h"


def test_positional_settings() -> None:
    assert positional("X", ("a",), (1,), {"b": 2}) == {"a": 1, "b": 2}
    with pytest.raises(InvalidInputError, match="takes 1 positional argument"):
        positional("X", ("a",), (1, 2), {})
    with pytest.raises(InvalidInputError, match="both by position and by name"):
        positional("X", ("a",), (1,), {"a": 2})


def test_rules_say_what_a_valid_value_is() -> None:
    assert number(0, 1).text == "a number from 0 to 1"
    assert number(above=0).text == "a number > 0"
    assert not number(0).test(float("nan")) and not number(0).test(True)
    assert kind(bool, text="a bool").test(False) and not kind(int, text="").test(False)
    rule = Rule(lambda v: v in ("a", "b"), "'a' or 'b'")
    assert Rule(rule.test, rule.text).test("a")


def test_none_given_for_a_setting_with_a_default_means_none_not_the_default() -> None:
    from lmstream import OpenAI

    llm = OpenAI("m", api_key="k", idle_timeout=None, max_body_bytes=None)
    assert (llm.idle_timeout, llm.max_body_bytes) == (None, None)  # no limit
    assert OpenAI("m", api_key="k").idle_timeout == 60.0
