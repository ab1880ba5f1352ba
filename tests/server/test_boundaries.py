"""What a request may ask of the server beyond its model: which hosts and origins it
answers, what it writes in its log, where it redirects, what ``/health`` tells a stranger,
what JSON it emits, and how it treats request fields it does not honour."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from typing import Any

import httpx
import pytest

from lmstream import FakeLLM
from lmstream.server.streaming import frame

KEY = "sk-boundary"
AUTH = {"Authorization": f"Bearer {KEY}"}


def test_without_keys_only_loopback_host_names_are_answered(serve: Any) -> None:
    with serve({"m": FakeLLM(["ok"])}) as server:
        port = server.url.rsplit(":", 1)[1]
        rebound = httpx.get(server.url + "/v1/models", headers={"Host": f"evil.example:{port}"})
        local = [
            httpx.get(server.url + "/v1/models", headers={"Host": f"{name}:{port}"}).status_code
            for name in ("localhost", "127.0.0.1", "[::1]", "app.localhost")
        ]
    assert rebound.status_code == 400
    assert rebound.json()["error"]["code"] == "host_not_allowed"
    assert local == [200] * 4


def test_allowed_hosts_and_keys_open_other_names(serve: Any) -> None:
    with serve({"m": FakeLLM(["ok"])}, allowed_hosts=["models.internal"]) as server:
        named = httpx.get(server.url + "/v1/models", headers={"Host": "models.internal"})
        loopback = httpx.get(server.url + "/v1/models", headers={"Host": "localhost"})
    with serve({"m": FakeLLM(["ok"])}, api_keys=[KEY]) as server:
        keyed = httpx.get(server.url + "/v1/models", headers={"Host": "any.example", **AUTH})
    assert named.status_code == 200 and keyed.status_code == 200
    assert loopback.status_code == 400  # once configured, the list is the list


def test_browser_requests_from_other_origins_are_refused(serve: Any) -> None:
    body = {"model": "m", "prompt": "p"}
    with serve({"m": FakeLLM(["ok"])}) as server:
        answers = {
            origin: httpx.post(
                server.url + "/v1/completions", json=body, headers={"Origin": origin}
            )
            for origin in ("http://evil.example", "null", "http://localhost:3000")
        }
    assert answers["http://evil.example"].status_code == 403
    assert answers["http://evil.example"].json()["error"]["code"] == "origin_not_allowed"
    assert answers["null"].status_code == 403
    assert answers["http://localhost:3000"].status_code == 200


def test_the_request_log_cannot_be_forged(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lmstream.server"), serve({"m": FakeLLM([""])}) as s:
        httpx.get(s.url + "/x%0AGET%20/admin%20200%20outcome=finished")
    lines = [r.getMessage() for r in caplog.records if r.name == "lmstream.server"]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("GET /x%0AGET%20/admin%20200%20outcome=finished 404 ")


def test_a_trailing_slash_never_redirects(serve: Any) -> None:
    with serve({"m": FakeLLM(["ok"])}, api_keys=[KEY]) as server:
        headers = {"Host": "evil.example", **AUTH}
        answer = httpx.post(server.url + "/v1/completions/", json={}, headers=headers)
    assert answer.status_code == 404 and "location" not in answer.headers


def test_health_names_the_models_only_to_a_key_holder(serve: Any) -> None:
    with serve({"/srv/models/secret.gguf": FakeLLM(["ok"])}, api_keys=[KEY]) as server:
        stranger = httpx.get(server.url + "/health")
        holder = httpx.get(server.url + "/health", headers=AUTH)
    assert stranger.json() == {"status": "ok"}
    assert holder.json() == {"status": "ok", "models": ["/srv/models/secret.gguf"]}


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ('{"x": NaN}', "config.metadata"),
        ('{"x": -Infinity}', "config.metadata"),
        ('{"x": ' + _nested(40) + "}", "config.metadata"),
        ('{"x": ' + _nested(5_000) + "}", None),  # deeper than the JSON parser goes
    ],
    ids=["nan", "infinity", "deeper-than-32", "deeper-than-the-parser"],
)
def test_event_streams_refuse_metadata_json_cannot_carry(
    serve: Any, metadata: str, param: str | None
) -> None:
    raw = '{"input": "p", "config": {"metadata": ' + metadata + "}}"
    with serve({"m": FakeLLM(["ok"])}) as server:
        headers = {"content-type": "application/json"}
        answer = httpx.post(server.url + "/stream_events", content=raw, headers=headers)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


def test_frames_are_strict_json() -> None:
    data = frame({"usage": {"score": float("nan"), "top": float("inf"), "ok": 1.5}})
    payload = data.decode().removeprefix("data: ").strip()

    def refuse(name: str) -> Any:
        raise ValueError(name)

    assert json.loads(payload, parse_constant=refuse) == {
        "usage": {"score": None, "top": None, "ok": 1.5}
    }


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/completions", {"model": "m", "prompt": "p", "top_k": 5}, "top_k"),
        ("/v1/completions", {"model": "m", "prompt": "p", "grammar": "root ::= x"}, "grammar"),
        (
            "/v1/completions",
            {"model": "m", "prompt": "p", "response_format": {"type": "json_object"}},
            "response_format",
        ),
        (
            "/v1/completions",
            {"model": "m", "prompt": "p", "frequency_penalty": 1},
            "frequency_penalty",
        ),
        ("/invoke", {"input": "p", "kwargs": {"top_k": 5}}, "kwargs.top_k"),
    ],
)
def test_parameters_the_server_cannot_honour_are_refused_by_name(
    serve: Any, path: str, body: dict[str, Any], param: str
) -> None:
    with serve({"m": FakeLLM(["ok"])}) as server:
        answer = httpx.post(server.url + path, json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == param
    assert param.rpartition(".")[2] in answer.json()["error"]["message"]


def test_unknown_fields_are_ignored_and_logged(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="lmstream.server"),
        serve({"m": FakeLLM(["ok"])}) as s,
    ):
        body = {"model": "m", "prompt": "p", "x_trace\nforged": 1}
        completion = httpx.post(s.url + "/v1/completions", json=body)
        invoked = httpx.post(s.url + "/invoke", json={"input": "p", "kwargs": {"n_threads": 64}})
    assert completion.status_code == 200 and invoked.status_code == 200
    notes = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert notes == [
        "ignored unknown request field(s): 'x_trace\\nforged'",
        "ignored unknown request field(s): 'kwargs.n_threads'",
    ]


def test_serve_help_warns_that_keys_on_the_command_line_are_visible() -> None:
    command = [sys.executable, "-m", "lmstream", "serve", "--help"]
    text = " ".join(
        subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
    )
    assert "LMSTREAM_API_KEYS" in text and "`ps`" in text
    assert "--allowed-hosts" in text and "--send-timeout" in text
