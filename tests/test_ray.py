"""``lmstream serve --ray``: the server as a Ray Serve deployment, on a local Ray cluster
(CPU only) that this module starts and shuts down. Streams go through Serve's proxy."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import httpx
import pytest
import ray
from helpers import collect, free_port, stream_of, take
from ray import serve
from servers.scripted import ScriptedServer, stream

from lmstream import APIError, InvalidInputError, OpenAI
from lmstream.cli.serve import _models, parser
from lmstream.ray import DEPLOYMENT, application, run

SLOW = [f"w{i} " for i in range(300)]


@pytest.fixture(scope="module")
def backend() -> Iterator[ScriptedServer]:
    """The server a replica's router relays to (a model that streams slowly)."""
    with ScriptedServer() as server:
        yield server


@pytest.fixture(scope="module")
def proxy(backend: ScriptedServer) -> Iterator[str]:
    """Serve's proxy in front of two replicas of ``lmstream serve --upstream BACKEND
    --extra-model fake:...``, as ``lmstream serve --ray --replicas 2`` builds them."""
    args = parser().parse_args(
        ["-m", "relay", "--upstream", backend.url, "--extra-model", "fake:hello there"]
    )
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False,
        object_store_memory=100 * 2**20,  # the default takes 30% of the machine's memory
    )  # fmt: skip
    port = free_port()
    try:
        run(application(functools.partial(_models, args), replicas=2), port=port, blocking=False)
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture
def client(proxy: str, backend: ScriptedServer) -> Iterator[OpenAI]:
    backend.reset_log()
    with OpenAI("relay", base_url=proxy + "/v1", max_retries=3, retry_backoff=0.2) as llm:
        yield llm


def test_the_openai_routes_answer_through_serves_proxy(proxy: str) -> None:
    names = [m["id"] for m in httpx.get(proxy + "/v1/models").json()["data"]]
    assert names == ["relay", "fake:hello there"]


def test_streams_pass_through_serves_proxy_chunk_by_chunk(client: OpenAI, flavour: str) -> None:
    chunks = collect(stream_of(client, flavour, "p", model="fake:hello there"))
    assert "".join(chunks) == "hello there" and len(chunks) > 1


def test_a_client_that_disconnects_stops_the_model_behind_a_replica(
    client: OpenAI, backend: ScriptedServer, flavour: str
) -> None:
    backend.script(stream(SLOW, delay=0.02))
    assert take(stream_of(client, flavour, "p"), 2) == ["w0 ", "w1 "]
    assert backend.wait(lambda: backend.requests[-1].disconnected is not None, timeout=30)


def test_a_replica_killed_mid_run_leaves_the_next_requests_served(
    client: OpenAI, backend: ScriptedServer
) -> None:
    backend.script(stream(SLOW, delay=0.02))
    chunks = client.stream("p")
    got: list[str] = []
    error: APIError | None = None
    try:
        got.append(next(chunks))
        replicas = [
            a for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith(f"SERVE_REPLICA::{DEPLOYMENT}#")
        ]  # fmt: skip
        assert len(replicas) == 2
        ray.kill(ray.get_actor(replicas[0]["name"], namespace=replicas[0]["namespace"]))
        got.extend(chunks)
    except APIError as exc:  # its replica was the one killed
        error = exc
    finally:
        chunks.close()
    if error is not None:
        assert error.partial_text == "".join(got) and got[0] == "w0 "
    else:
        assert got == SLOW
    for _ in range(4):
        assert client.invoke("p", model="fake:hello there") == "hello there"


def test_replicas_must_be_a_positive_int() -> None:
    with pytest.raises(InvalidInputError, match="replicas"):
        application("fake:x", replicas=0)
