"""API keys, size limits, malformed requests: clear 4xx answers in OpenAI's shape."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import openai
import pytest

from lmstream import FakeLLM

KEYS = ["sk-first-secret", "sk-second-secret"]
PATHS = [
    ("POST", "/v1/completions", {"model": "m", "prompt": "p"}),
    ("GET", "/v1/models", None),
    ("POST", "/invoke", {"input": "p"}),
    ("POST", "/batch", {"inputs": ["p"]}),
    ("POST", "/stream", {"input": "p"}),
    ("POST", "/stream_events", {"input": "p"}),
    ("GET", "/openapi.json", None),
]


def call(url: str, method: str, path: str, body: Any, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, url + path, json=body, headers=headers)


def test_every_endpoint_but_health_needs_a_key(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    logs = caplog.at_level(logging.INFO, logger="lmstream.server")
    with logs, serve({"m": FakeLLM(["ok"])}, api_keys=KEYS) as server:
        for method, path, body in PATHS:
            for key in (None, "sk-wrong", KEYS[0][:-1]):
                answer = call(server.url, method, path, body, key)
                assert answer.status_code == 401, (path, key)
                assert answer.json()["error"]["code"] == "invalid_api_key"
                assert answer.headers["www-authenticate"] == "Bearer"
            for key in KEYS:
                assert call(server.url, method, path, body, key).status_code == 200, path
        assert httpx.get(server.url + "/health").json()["status"] == "ok"
    assert "sk-first" not in caplog.text and "sk-second" not in caplog.text
    assert "outcome=unauthorized" in caplog.text


def test_the_official_client_authenticates(serve: Any) -> None:
    with serve({"m": FakeLLM(["ok"])}, api_keys=KEYS) as server:
        good = openai.OpenAI(base_url=server.url + "/v1", api_key=KEYS[1], max_retries=0)
        assert good.completions.create(model="m", prompt="p").choices[0].text == "ok"
        bad = openai.OpenAI(base_url=server.url + "/v1", api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.completions.create(model="m", prompt="p")


def test_bodies_over_the_limit_are_413(serve: Any) -> None:
    with serve({"m": FakeLLM(["ok"])}, max_body_bytes=2_000) as server:
        big = {"model": "m", "prompt": "x" * 5_000}
        answer = httpx.post(server.url + "/v1/completions", json=big)
        assert answer.status_code == 413
        assert answer.json()["error"]["code"] == "request_too_large"

        def chunked() -> Any:  # no content-length: counted as it arrives
            yield b'{"model": "m", "prompt": "'
            for _ in range(10):
                yield b"x" * 500
            yield b'"}'

        answer = httpx.post(server.url + "/v1/completions", content=chunked())
        assert answer.status_code == 413


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"",
        b"[]",
        b'{"model": 5, "prompt": "p"}',
        b'{"model": "m"}',
        b'{"model": "m", "prompt": [1, 2, 3]}',
        b'{"model": "m", "prompt": "p", "stream": "maybe"}',
        b'{"model": "m", "prompt": "p", "max_tokens": 1e400}',
        '{"model": "m", "prompt": "\ud800"}'.encode("utf-8", "surrogatepass"),
    ],
)
def test_malformed_requests_are_400_never_500(serve: Any, content: bytes) -> None:
    with serve({"m": FakeLLM(["ok"])}) as server:
        headers = {"content-type": "application/json"}
        answer = httpx.post(server.url + "/v1/completions", content=content, headers=headers)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"


def test_unknown_routes_and_methods_answer_in_openai_shape(serve: Any) -> None:
    with serve({"m": FakeLLM(["ok"])}) as server:
        missing = httpx.get(server.url + "/v1/nothing")
        wrong = httpx.get(server.url + "/v1/completions")
    assert missing.status_code == 404 and "error" in missing.json()
    assert wrong.status_code == 405 and "error" in wrong.json()


def test_the_openapi_document_describes_the_endpoints(serve: Any) -> None:
    with serve({"m": FakeLLM(["ok"])}) as server:
        document = httpx.get(server.url + "/openapi.json").json()
    paths = set(document["paths"])
    assert {
        "/v1/completions",
        "/v1/models",
        "/invoke",
        "/batch",
        "/stream",
        "/stream_events",
    } <= paths
    assert "/health" in paths
