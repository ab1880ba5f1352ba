"""Every way a call can fail ends in a typed error that keeps what was produced, and the
HTTP status and body where there is one; bad input fails before any request."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
from helpers import collect, invoke_of, stream_of
from servers.scripted import Reply, Reset, ScriptedServer, Send, error, sse, stream

from lmstream import (
    APIConnectionError,
    APIError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ContextLengthError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    ProtocolError,
    RateLimitError,
    ServerError,
)
from lmstream.providers.openai import OpenAI

Make = Callable[..., OpenAI]


def _stream_error(llm: OpenAI, flavour: str, prompt: str = "hi", **kw: Any) -> Any:
    with pytest.raises(APIError) as info:
        collect(stream_of(llm, flavour, prompt, **kw))
    return info.value


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, BadRequestError), (401, AuthenticationError), (403, PermissionDeniedError),
     (404, NotFoundError), (422, BadRequestError), (429, RateLimitError), (500, ServerError),
     (503, ServerError), (418, APIStatusError)],
)  # fmt: skip
@pytest.mark.parametrize("how", ["stream", "invoke"])
def test_status_codes_map_to_typed_errors(
    scripted: ScriptedServer, make_llm: Make, flavour: str, status: int, cls: type, how: str
) -> None:
    scripted.script(error(status, "nope", code="c1"))
    llm = make_llm(max_retries=0)
    run = (
        (lambda: collect(stream_of(llm, flavour, "hi")))
        if how == "stream"
        else (lambda: invoke_of(llm, flavour, "hi"))
    )
    with pytest.raises(cls) as info:
        run()
    assert type(info.value) is cls
    assert info.value.status_code == status
    assert info.value.body["error"]["code"] == "c1"
    assert "nope" in str(info.value)


def test_rate_limit_carries_retry_after(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(error(429, headers={"retry-after": "7"}))
    exc = _stream_error(make_llm(max_retries=0), flavour)
    assert isinstance(exc, RateLimitError) and exc.retry_after == 7.0


@pytest.mark.parametrize(
    "message",
    [
        "This model's maximum context length is 512 tokens, however you requested 709 tokens "
        "(701 in your prompt; 8 for the completion).",
        "Requested tokens (709) exceed context window of 512",
    ],
)
def test_context_length_is_recognised(
    scripted: ScriptedServer, make_llm: Make, flavour: str, message: str
) -> None:
    scripted.script(error(400, message, type="invalid_request_error"))
    exc = _stream_error(make_llm(), flavour)
    assert isinstance(exc, ContextLengthError) and isinstance(exc, BadRequestError)
    assert exc.status_code == 400 and exc.n_ctx == 512
    assert exc.prompt_tokens in (701, 709)
    assert len(scripted.requests) == 1  # never retried


def test_an_in_band_error_mid_stream_keeps_the_partial_text(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    head = sse({"choices": [{"text": "par", "index": 0}]},
               {"choices": [{"text": "tial", "index": 0}]}, done=False)  # fmt: skip
    tail = sse({"error": {"message": "overloaded", "code": 503}}, done=False)
    scripted.script(Reply(steps=[Send(head), Send(tail)]))
    exc = _stream_error(make_llm(), flavour)
    assert isinstance(exc, ServerError) and "overloaded" in str(exc)
    assert exc.partial_text == "partial"
    assert exc.usage is not None and exc.usage.estimated
    assert len(scripted.requests) == 1  # text was handed on: no retry


def test_an_error_event_is_an_error(scripted: ScriptedServer, make_llm: Make, flavour: str) -> None:
    scripted.script(Reply(steps=[Send(b'event: error\ndata: {"message": "boom"}\n\n')]))
    exc = _stream_error(make_llm(max_retries=0), flavour)
    assert type(exc) is APIError and "boom" in str(exc)


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        (b'data: {"choices": [{"text": "a", "index": 0}]}\n\ndata: {not json\n\n', "not JSON"),
        (b'data: {"choices": [{"text": "a", "index": 0}]}\n\ndata: [1, 2]\n\n', "JSON object"),
        (b'data: {"choices": [{"text": "a", "index": 0}]}\n\ndata: {"x": 1}\n\n', "choices"),
        (b'data: {"choices": [{"text": "a", "index": 0}]}\n\ndata: {"choices": [{"text": 5}]}\n\n',
         "not a string"),
        (b'data: {"choices": [{"text": "a", "index": 0}]}\n\ndata: \xff\xfe\n\n', "UTF-8"),
        (b'data: {"choices": [{"text": "a", "index": 0, "finish_reason": "stop"}]}\n\n',
         "before [DONE]"),
        (b'data: {"choices": [{"text": "a", "index": 0}]}\n\ndata: [DONE]\n\n',
         "without a finish_reason"),
        (b'data: {"choices": [{"text": "a", "index": 0}]}\n\ndata: {"choi', "middle of an event"),
    ],
)  # fmt: skip
def test_malformed_or_cut_streams_are_protocol_errors(
    scripted: ScriptedServer, make_llm: Make, flavour: str, frames: bytes, expected: str
) -> None:
    scripted.script(Reply(steps=[Send(frames)]))
    exc = _stream_error(make_llm(), flavour)
    assert isinstance(exc, ProtocolError) and expected in str(exc)
    assert exc.partial_text == "a"


def test_an_aborted_generation_is_not_a_success(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    scripted.script(stream(["a", "b"], finish_reason="abort"))
    exc = _stream_error(make_llm(), flavour)
    assert type(exc) is APIError and "abort" in str(exc) and exc.partial_text == "ab"


@pytest.mark.parametrize("rst", [True, False])
def test_a_connection_dropped_mid_stream_is_a_connection_error(
    scripted: ScriptedServer, make_llm: Make, flavour: str, rst: bool
) -> None:
    scripted.script(stream(["a", "b"], done=False, finish_reason=None, then=[Reset(rst)]))
    exc = _stream_error(make_llm(), flavour)
    assert isinstance(exc, APIConnectionError) and exc.partial_text == "ab"
    assert len(scripted.requests) == 1
    assert scripted.wait(lambda: scripted.requests[0].reset)


def test_json_where_a_stream_was_asked_for(
    scripted: ScriptedServer, make_llm: Make, flavour: str
) -> None:
    ok = Reply(headers={"content-type": "application/json"}, steps=[Send(b'{"choices": []}')])
    scripted.script(ok, error(200, "in a 200"))
    assert "not an event stream" in str(_stream_error(make_llm(), flavour))
    assert "in a 200" in str(_stream_error(make_llm(max_retries=0), flavour))


def test_nothing_listening_is_a_connection_error(make_llm: Make, flavour: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    llm = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", retry_backoff=0.001)
    assert isinstance(_stream_error(llm, flavour), APIConnectionError)
    with pytest.raises(APIConnectionError):
        invoke_of(llm, flavour, "hi")
    llm.close()


@pytest.mark.parametrize(
    "settings",
    [{"n": 2}, {"temperature": -1}, {"top_p": 1.5}, {"max_tokens": 0}, {"max_tokens": 1.5},
     {"seed": "x"}, {"model": ""}, {"timeout": 0}, {"idle_timeout": -1}, {"max_retries": -1},
     {"extra_body": [1]}, {"base_url": "ftp://x"}, {"stop": 3}, {"bogus": 1}],
)  # fmt: skip
def test_bad_settings_are_rejected(settings: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        OpenAI(**{"base_url": "http://127.0.0.1:9/v1", **settings})


@pytest.mark.parametrize(
    "kwargs", [{"n": 3}, {"temperature": "hot"}, {"best_of": 2}, {"unknown": 1}, {"echo": 1}]
)
def test_bad_call_arguments_fail_before_any_request(
    scripted: ScriptedServer, make_llm: Make, flavour: str, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(InvalidInputError):
        collect(stream_of(make_llm(), flavour, "hi", **kwargs))
    with pytest.raises(InvalidInputError):
        invoke_of(make_llm(), flavour, "hi", **kwargs)
    assert scripted.requests == []
