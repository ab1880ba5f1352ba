"""The pure protocol pieces: whatever a server sends, the result is chunks or a typed
error (never another exception), and the time limits and retry rules on their own."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lmstream import APIError, GenerationChunk, ProtocolError, RateLimitError, ServerError
from lmstream.errors import APITimeoutError, BadRequestError
from lmstream.providers._http import RetryPolicy
from lmstream.providers._openai_errors import retry_after_of, status_failure
from lmstream.providers._openai_wire import CompletionStream, parse_completion

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
_choice = st.fixed_dictionaries(
    {},
    optional={"text": _json | st.text(), "index": _json, "finish_reason": _json,
              "logprobs": _json},
)  # fmt: skip
_usage = st.fixed_dictionaries(
    {}, optional={"prompt_tokens": _json, "completion_tokens": _json, "total_tokens": _json}
)
_error = st.fixed_dictionaries(
    {}, optional={"message": _json, "code": _json, "status": _json, "type": _json}
)
_payload = st.fixed_dictionaries(
    {},
    optional={"choices": st.lists(_choice, max_size=2) | _json, "usage": _usage | _json,
              "error": _error | _json},
)  # fmt: skip
_frame = st.one_of(
    _payload.map(lambda p: b"data: " + json.dumps(p).encode() + b"\n\n"),
    st.just(b"data: [DONE]\n\n"),
    st.binary(max_size=20),
    _json.map(lambda j: b"event: error\ndata: " + json.dumps(j).encode() + b"\n\n"),
)


@given(st.lists(_frame, max_size=6))
@example([b'data: {"usage": {"prompt_tokens": Infinity}}\n\n'])
@example([b'data: {"usage": {"total_tokens": -1}}\n\n'])
@example([b'data: {"error": {"code": true}}\n\n'])
def test_any_body_gives_chunks_or_a_typed_error(frames: list[bytes]) -> None:
    state = CompletionStream()
    try:
        for frame in frames:
            for chunk in state.feed(frame):
                assert isinstance(chunk, GenerationChunk)
            if state.done:
                break
        last = state.end()
    except APIError:
        return
    assert last.generation_info is not None and "finish_reason" in last.generation_info


@given(_payload)
def test_any_whole_answer_gives_a_generation_or_a_typed_error(payload: dict[str, Any]) -> None:
    with contextlib.suppress(APIError):
        parse_completion(json.dumps(payload).encode())


def test_chunks_before_a_bad_frame_are_handed_on_first() -> None:
    state = CompletionStream()
    good = b'data: {"choices": [{"text": "a", "index": 0}]}\n\n'
    assert [c.text for c in state.feed(good + b"data: nope\n\n")] == ["a"]
    assert state.done
    with pytest.raises(ProtocolError):
        state.end()


def test_whatever_follows_done_is_ignored() -> None:
    state = CompletionStream()
    body = b'data: {"choices": [{"text": "a", "index": 0, "finish_reason": "stop"}]}\n\n'
    assert [c.text for c in state.feed(body + b"data: [DONE]\n\ndata: \xff\n\n")] == ["a"]
    assert state.end().generation_info == {"finish_reason": "stop"}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"retry-after": "2"}, 2.0), ({"retry-after-ms": "250"}, 0.25),
     ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0), ({"retry-after": "soon"}, None),
     ({}, None)],
)  # fmt: skip
def test_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after_of(headers) == expected


def test_status_bodies_that_are_not_json_still_map() -> None:
    error = status_failure(503, {}, b"<html>busy</html>")
    assert isinstance(error, ServerError) and error.body == "<html>busy</html>"
    assert isinstance(status_failure(429, {"retry-after": "1"}, b""), RateLimitError)
    assert type(status_failure(400, {}, b'{"detail": "bad"}')) is BadRequestError


def test_the_retry_policy() -> None:
    policy = RetryPolicy(max_retries=2, backoff=1.0)
    server = ServerError("x", status_code=500)
    assert policy.delay(0, server, None) is not None
    assert 0.5 <= policy.delay(1, server, None) <= 2.0  # type: ignore[operator]
    assert policy.delay(2, server, None) is None  # out of retries
    assert policy.delay(0, server, 3.0) == 3.0  # the server's word
    assert policy.delay(0, server, 61.0) is None
    assert policy.delay(0, BadRequestError("x", status_code=400), None) is None
    assert policy.delay(0, APITimeoutError("x", phase="connect"), None) is not None
    assert policy.delay(0, APITimeoutError("x", phase="first_token"), None) is None
