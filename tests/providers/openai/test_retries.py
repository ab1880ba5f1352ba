"""Retries happen before the first chunk only: on connection errors, 429 and 5xx, at most
``max_retries`` times, honouring Retry-After, and never past the total time limit."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import collect, invoke_of, stream_of
from servers.scripted import Reply, Reset, ScriptedServer, Send, completion, error, stream

from lmstream import APIConnectionError, BadRequestError, RateLimitError, ServerError
from lmstream.providers.openai import OpenAI

Make = Callable[..., OpenAI]


def _run(llm: OpenAI, flavour: str, how: str) -> str:
    if how == "stream":
        return "".join(collect(stream_of(llm, flavour, "hi")))
    return str(invoke_of(llm, flavour, "hi"))


def _ok(how: str) -> Reply:
    return stream(["fine"]) if how == "stream" else completion("fine")


@pytest.mark.parametrize("how", ["stream", "invoke"])
@pytest.mark.parametrize(
    "failure",
    [
        error(429, headers={"retry-after": "0"}),
        error(429, headers={"retry-after-ms": "1"}),
        error(500),
        error(502),
        error(503, headers={"retry-after": "0"}),
        Reply(steps=[Reset()]),  # dropped before any byte of the body
    ],
    ids=["429", "429-ms", "500", "502", "503", "reset"],
)
def test_transient_failures_are_retried(
    scripted: ScriptedServer, make_llm: Make, flavour: str, how: str, failure: Reply
) -> None:
    scripted.script(failure, failure, _ok(how))
    assert _run(make_llm(max_retries=2), flavour, how) == "fine"
    assert len(scripted.requests) == 3


@pytest.mark.parametrize("how", ["stream", "invoke"])
def test_retries_are_bounded_by_max_retries(
    scripted: ScriptedServer, make_llm: Make, flavour: str, how: str
) -> None:
    scripted.script(*[error(503)] * 4, _ok(how))
    with pytest.raises(ServerError):
        _run(make_llm(max_retries=3), flavour, how)
    assert len(scripted.requests) == 4


def test_max_retries_zero_sends_once(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(error(500), stream(["x"]))
    with pytest.raises(ServerError):
        _run(make_llm(max_retries=0), flavour, "stream")
    assert len(scripted.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(
    scripted: ScriptedServer, make_llm: Make, flavour: str, status: int
) -> None:
    scripted.script(error(status), stream(["x"]))
    with pytest.raises(Exception, match=str(status)):
        _run(make_llm(), flavour, "stream")
    assert len(scripted.requests) == 1


def test_nothing_is_retried_after_the_first_chunk(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    cut = stream(["a", "b"], finish_reason=None, usage=None, done=False, then=[Reset()])
    scripted.script(cut, stream(["never"]))
    with pytest.raises(APIConnectionError) as info:
        _run(make_llm(max_retries=5), flavour, "stream")
    assert info.value.partial_text == "ab"
    assert len(scripted.requests) == 1


def test_an_in_band_server_error_before_any_text_is_retried(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    inband = Reply(steps=[Send(b'data: {"error": {"message": "busy", "code": 503}}\n\n')])
    scripted.script(inband, stream(["ok"]))
    assert _run(make_llm(), flavour, "stream") == "ok"
    assert len(scripted.requests) == 2


def test_a_retry_after_past_the_total_limit_fails_at_once(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(error(429, headers={"retry-after": "30"}), stream(["x"]))
    with pytest.raises(RateLimitError) as info:
        _run(make_llm(timeout=5), flavour, "stream")
    assert info.value.retry_after == 30
    assert len(scripted.requests) == 1


def test_a_retry_after_over_a_minute_is_not_waited_for(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(error(503, headers={"retry-after": "3600"}), stream(["x"]))
    with pytest.raises(ServerError):
        _run(make_llm(), flavour, "stream")
    assert len(scripted.requests) == 1


def test_call_arguments_override_the_retry_settings(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(error(500), error(500), stream(["x"]))
    llm = make_llm(max_retries=0)
    assert "".join(collect(stream_of(llm, flavour, "hi", max_retries=2))) == "x"
    assert len(scripted.requests) == 3


def test_a_bad_request_after_retries_is_still_typed(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(error(502), error(400, "bad"))
    with pytest.raises(BadRequestError, match="bad"):
        _run(make_llm(), flavour, "invoke")
    assert len(scripted.requests) == 2
