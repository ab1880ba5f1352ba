"""Generated requests against the server's own OpenAPI document: no input makes it fail.

Every answer is below 500, and every error is in OpenAI's shape, with and without keys.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings

from lmstream import FakeLLM
from lmstream.server import ServerSettings, create_app

KEY = "sk-fuzz"
OPEN = create_app(  # the in-process client names its host "testserver"
    {"m": FakeLLM(["fuzzed"])}, ServerSettings(max_tokens_cap=64, allowed_hosts=["testserver"])
)
LOCKED = create_app({"m": FakeLLM(["fuzzed"])}, ServerSettings(max_tokens_cap=64, api_keys=[KEY]))
open_schema = schemathesis.openapi.from_asgi("/openapi.json", OPEN)
AUTH = {"Authorization": f"Bearer {KEY}"}
locked_schema = schemathesis.openapi.from_asgi("/openapi.json", LOCKED, headers=AUTH)
for schema in (open_schema, locked_schema):  # valid and invalid requests alike
    schema.config.generation.update(modes=list(schemathesis.GenerationMode))
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def check(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str) and error["message"]


@open_schema.parametrize()
@FUZZ
def test_generated_requests_never_fail_the_server(case: Any) -> None:
    check(case.call())


@locked_schema.parametrize()
@FUZZ
def test_generated_requests_with_keys(case: Any) -> None:
    response = case.call(headers=AUTH)
    check(response)
    assert response.status_code != 401  # the key was given


@locked_schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_without_a_key_are_refused(case: Any) -> None:
    response = case.call(headers={"Authorization": ""})
    check(response)
    if case.path != "/health":
        assert response.status_code == 401
