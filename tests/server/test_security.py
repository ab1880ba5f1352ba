"""What a request can and cannot reach: only the configured models, within the limits."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import pytest
from servers.scripted import ScriptedServer, error

from lmstream import FakeLLM
from lmstream import registry as registry_module

HOSTILE_NAMES = ["../../etc/passwd", "llamacpp:/etc/passwd", "/etc/passwd", "openai:x", "fake:pwn"]


@pytest.fixture
def no_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if anything tries to load a model while requests are served."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a request tried to load a model: {args} {kwargs}")

    monkeypatch.setattr(registry_module, "load_llm", refuse)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_model_name_never_loads_anything(serve: Any, no_loading: None, name: str) -> None:
    with serve({"served": FakeLLM(["safe"])}) as server:
        single = httpx.post(server.url + "/v1/completions", json={"model": name, "prompt": "p"})
        remote = httpx.post(server.url + "/invoke", json={"input": "p", "model": name})
    assert single.json()["model"] == "served"  # answered by the configured model, named
    assert single.json()["choices"][0]["text"] == "safe"
    assert remote.json()["output"] == "safe"


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_with_several_models_an_unknown_name_is_404(
    serve: Any, no_loading: None, name: str
) -> None:
    with serve({"a": FakeLLM(["a"]), "b": FakeLLM(["b"])}) as server:
        answer = httpx.post(server.url + "/v1/completions", json={"model": name, "prompt": "p"})
        invoked = httpx.post(server.url + "/invoke", json={"input": "p", "model": name})
    assert answer.status_code == 404 and answer.json()["error"]["code"] == "model_not_found"
    assert invoked.status_code == 404
    assert "/etc/passwd" not in answer.json()["error"]["message"].replace(name, "")


def test_batches_over_the_limit_are_refused(serve: Any) -> None:
    with serve({"m": FakeLLM(["x"])}, max_batch=4) as server:
        answer = httpx.post(server.url + "/batch", json={"inputs": ["p"] * 5})
    assert answer.status_code == 400
    assert answer.json()["error"]["param"] == "inputs"


def test_the_interactive_docs_need_the_key_too(serve: Any) -> None:
    with serve({"m": FakeLLM(["x"])}, api_keys=["sk-docs"]) as server:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert httpx.get(server.url + path).status_code == 401
            headers = {"Authorization": "Bearer sk-docs"}
            assert httpx.get(server.url + path, headers=headers).status_code == 200


def _routes(server: Any) -> list[tuple[str, str]]:
    """Every (method, path) the app answers, path parameters filled in."""
    app = server.app
    while not hasattr(app, "routes"):  # the middleware, down to FastAPI
        app = app.app
    out, routes = [], list(app.routes)
    while routes:
        route = routes.pop(0)
        if hasattr(route, "original_router"):  # an included router: its own routes
            routes += route.original_router.routes
            continue
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        out += [(method, path) for method in sorted(getattr(route, "methods", None) or ["GET"])]
    return out


def test_every_route_the_app_has_needs_a_key(serve: Any) -> None:
    with serve({"m": FakeLLM(["x"])}, api_keys=["sk-route"]) as server:
        routes = _routes(server)
        assert len(routes) >= 10  # the OpenAI, runnable, docs and health routes
        for method, path in routes:
            answer = httpx.request(method, server.url + path, json={})
            expected = 200 if path == "/health" else 401
            assert answer.status_code == expected, (method, path)


def test_keys_never_reach_an_answer_or_the_log(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from lmstream.providers.openai import OpenAI

    upstream = ScriptedServer()
    with upstream, caplog.at_level(logging.DEBUG):
        upstream.handler = lambda body: error(401, "Incorrect API key provided")
        far = OpenAI("m", base_url=upstream.url, api_key="sk-upstream-secret", max_retries=0)
        assert "sk-upstream-secret" not in repr(far) + str(far)
        with serve({"m": far}, api_keys=["sk-client-secret"]) as server:
            headers = {"Authorization": "Bearer sk-client-secret"}
            client = httpx.Client(base_url=server.url, headers=headers)
            completions = [{"model": "m", "prompt": "p", "stream": s} for s in (False, True)]
            answers = [client.post("/v1/completions", json=body) for body in completions]
            for path in ("/invoke", "/stream", "/batch"):
                body = {"inputs": ["p"]} if path == "/batch" else {"input": "p"}
                answers.append(client.post(path, json=body))
            answers += [client.get(path) for path in ("/v1/models", "/health")]
            client.close()
        assert upstream.requests[0].headers["authorization"] == "Bearer sk-upstream-secret"
    assert answers[0].status_code == 502  # the upstream refused: a gateway error, typed
    for answer in answers:
        assert "secret" not in answer.text, answer.request.url
    assert "secret" not in caplog.text
