"""``lmstream serve --upstream``: one endpoint in front of several backends, as a real
process; clients are lmstream's OpenAI provider, in both flavours."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import collect, stream_of, take
from servers.scripted import Reset, ScriptedServer, error, stream

from lmstream import APIError, OpenAI


@pytest.fixture(scope="module")
def endpoint(scripted_backends: list[ScriptedServer], serve_process: Any) -> Iterator[str]:
    a, b, _ = scripted_backends
    with serve_process("--upstream", a.url, "--upstream", b.url.removesuffix("/v1")) as (url, _):
        yield url


@pytest.fixture
def client(endpoint: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=endpoint + "/v1", max_retries=0) as llm:
        yield llm


def test_the_endpoint_serves_the_model_its_upstreams_list(endpoint: str) -> None:
    models = httpx.get(endpoint + "/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["scripted"]


def test_a_stream_through_the_endpoint_survives_failing_backends(
    backends: list[ScriptedServer], client: OpenAI, flavour: str
) -> None:
    a, b = backends[:2]
    a.script(error(503))
    b.script(error(502))
    assert "".join(collect(stream_of(client, flavour, "one two three"))) == "one two three "
    assert len(a.requests) + len(b.requests) == 3
    assert all(r.body["model"] == "scripted" for r in [*a.requests, *b.requests])


def test_a_cut_backend_stream_reaches_the_client_as_an_error_with_its_text(
    backends: list[ScriptedServer], client: OpenAI, flavour: str
) -> None:
    cut = stream(["one ", "two "], finish_reason=None, usage=None, done=False, then=[Reset()])
    for server in backends[:2]:
        server.script(cut)
    got: list[str] = []
    with pytest.raises(APIError) as caught:
        got.extend(collect(stream_of(client, flavour, "p")))
    assert caught.value.partial_text == "one two "


def test_a_client_that_stops_reading_stops_the_backend(
    backends: list[ScriptedServer], client: OpenAI, flavour: str
) -> None:
    slow = stream([f"w{i} " for i in range(200)], delay=0.02)
    for server in backends[:2]:
        server.script(slow)
    assert take(stream_of(client, flavour, "p"), 2) == ["w0 ", "w1 "]
    used = next(s for s in backends[:2] if s.requests)
    assert used.wait(lambda: used.requests[-1].disconnected is not None)
