"""The router over real loopback backends: balancing, retry before the first chunk on
another backend, typed errors after it, cancellation reaching the backend, usage."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from helpers import chunks_of, collect, free_port, is_sync, stream_of, take
from servers.scripted import Reply, Reset, ScriptedServer, error, stream

from lmstream import (
    APIConnectionError,
    APIError,
    BadRequestError,
    GenerationChunk,
    InvalidInputError,
    Router,
    ServerError,
)

Make = Callable[..., Router]


def key_for(router: Router, url: str) -> str:
    """A session id that the router sends to ``url`` first."""
    return next(f"s{i}" for i in range(10_000) if router.backend_for(f"s{i}") == url)


def text_of(router: Router, flavour: str, prompt: str, **kwargs: Any) -> str:
    return "".join(collect(stream_of(router, flavour, prompt, **kwargs)))


def until_error(router: Router, flavour: str, prompt: str, **kwargs: Any) -> tuple[list[str], Any]:
    """The chunks a stream gave, and the error that ended it (``None``: it finished)."""
    got: list[str] = []
    if is_sync(flavour):
        try:
            got.extend(router.stream(prompt, **kwargs))
        except APIError as exc:
            return got, exc
        return got, None

    async def run() -> Any:
        try:
            async for chunk in router.astream(prompt, **kwargs):
                got.append(chunk)
        except APIError as exc:
            return exc
        return None

    return got, asyncio.run(run())


def held_open(router: Router, flavour: str, n: int) -> None:
    """Open ``n`` streams at once, each past its first chunk, then close them."""
    if is_sync(flavour):
        streams = [router.stream("one two three") for _ in range(n)]
        for s in streams:
            next(s)
        for s in streams:
            s.close()
        return

    async def run() -> None:
        streams = [router.astream("one two three") for _ in range(n)]
        for s in streams:
            await s.__anext__()
        for s in streams:
            await s.aclose()

    asyncio.run(run())


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


# -- balancing ------------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "n"), [("p2c", 2), ("least", 3)])
def test_streams_in_flight_go_to_the_least_busy_backends(
    backends: list[ScriptedServer], make_router: Make, flavour: str, policy: str, n: int
) -> None:
    router = make_router([s.url for s in backends[:n]], policy=policy)
    held_open(router, flavour, n)
    assert [len(s.requests) for s in backends[:n]] == [1] * n
    assert all(v["outstanding"] == 0 and v["cancelled"] == 1 for v in router.stats().values())


def test_a_session_keeps_its_backend(
    backends: list[ScriptedServer], make_router: Make, flavour: str
) -> None:
    router = make_router([s.url for s in backends])
    for _ in range(4):
        assert text_of(router, flavour, "hi there", session_id="alice") == "hi there "
    assert sorted(len(s.requests) for s in backends) == [0, 0, 4]


def test_prompts_with_one_prefix_keep_their_backend(
    backends: list[ScriptedServer], make_router: Make, flavour: str
) -> None:
    router = make_router([s.url for s in backends], affinity="prefix", prefix_chars=12)
    for tail in ("a", "b", "c", "d"):
        assert text_of(router, flavour, f"You are kind. {tail}") == f"You are kind. {tail} "
    assert sorted(len(s.requests) for s in backends) == [0, 0, 4]


def test_the_queue_a_backend_reports_in_its_metrics_steers_requests_away(
    backends: list[ScriptedServer], make_router: Make, flavour: str
) -> None:
    a, b = backends[:2]
    a.metrics = '# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{m="x"} 50\n'
    b.metrics = '# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting{m="x"} 0\n'
    router = make_router([a.url, b.url], policy="least", metrics=True, probe_interval=0.02)
    text_of(router, flavour, "start the probes")
    assert a.wait(lambda: router.stats()[a.url]["waiting"] == 50)
    before = len(a.requests)
    for _ in range(4):
        assert text_of(router, flavour, "x y") == "x y "
    assert len(a.requests) == before and "/metrics" in a.probes


# -- retries before the first chunk -------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [error(500), error(503), error(429, headers={"retry-after": "30"}), Reply(steps=[Reset()])],
    ids=["500", "503", "429", "reset"],
)
def test_a_failure_before_the_first_chunk_is_retried_on_another_backend(
    backends: list[ScriptedServer], make_router: Make, flavour: str, failure: Reply
) -> None:
    a, b = backends[:2]
    router = make_router([a.url, b.url])
    a.script(failure)
    assert text_of(router, flavour, "one two", session_id=key_for(router, a.url)) == "one two "
    assert (len(a.requests), len(b.requests)) == (1, 1)
    stats = router.stats()
    assert stats[a.url]["retried_elsewhere"] == 1 and stats[b.url]["completed"] == 1


def test_a_refused_connection_is_retried_on_another_backend(
    backends: list[ScriptedServer], make_router: Make, flavour: str
) -> None:
    dead, b = dead_url(), backends[1]
    router = make_router([dead, b.url])
    assert text_of(router, flavour, "still here", session_id=key_for(router, dead)) == "still here "
    assert router.stats()[dead]["failed"] == 1 and len(b.requests) == 1


def test_a_429_keeps_its_backend_aside_for_its_retry_after(
    backends: list[ScriptedServer], make_router: Make, flavour: str
) -> None:
    a, b = backends[:2]
    router = make_router([a.url, b.url])
    a.script(error(429, headers={"retry-after": "30"}))
    session = key_for(router, a.url)
    for _ in range(3):
        assert text_of(router, flavour, "ok", session_id=session) == "ok "
    assert (len(a.requests), len(b.requests)) == (1, 3)


def test_with_one_backend_a_429_is_waited_out(
    backends: list[ScriptedServer], make_router: Make, flavour: str
) -> None:
    a = backends[0]
    router = make_router([a.url])
    a.script(error(429, headers={"retry-after": "0.05"}))
    assert text_of(router, flavour, "later") == "later "
    assert len(a.requests) == 2


def test_when_every_attempt_fails_the_last_error_names_its_backend(
    backends: list[ScriptedServer], make_router: Make, flavour: str
) -> None:
    a, b = backends[:2]
    router = make_router([a.url, b.url], max_retries=2)
    a.script(*[error(503)] * 3)
    b.script(*[error(503)] * 3)
    got, exc = until_error(router, flavour, "p")
    assert got == [] and isinstance(exc, ServerError)
    assert exc.backend in (a.url, b.url) and exc.backend in str(exc)
    assert len(a.requests) + len(b.requests) == 3  # the first try and two retries


def test_a_refused_request_is_not_retried_and_not_held_against_the_backend(
    backends: list[ScriptedServer], make_router: Make, flavour: str
) -> None:
    a, b = backends[:2]
    router = make_router([a.url, b.url])
    a.script(error(400, "bad prompt", type="invalid_request_error"))
    got, exc = until_error(router, flavour, "p", session_id=key_for(router, a.url))
    assert got == [] and isinstance(exc, BadRequestError) and exc.backend == a.url
    assert len(b.requests) == 0 and router.stats()[a.url]["consecutive_failures"] == 0


# -- after the first chunk ------------------------------------------------------------


def test_a_stream_cut_after_its_first_chunk_ends_in_a_typed_error_with_its_text(
    backends: list[ScriptedServer], make_router: Make, flavour: str
) -> None:
    a, b = backends[:2]
    router = make_router([a.url, b.url])
    cut = stream(["one ", "two "], finish_reason=None, usage=None, done=False, then=[Reset()])
    a.script(cut)
    got, exc = until_error(router, flavour, "p", session_id=key_for(router, a.url))
    assert got == ["one ", "two "]
    assert isinstance(exc, APIError) and exc.partial_text == "one two "
    assert exc.backend == a.url and a.url in str(exc)
    assert len(b.requests) == 0  # never retried: the text would repeat
    assert router.stats()[a.url]["failed"] == 1


def test_a_backend_killed_mid_stream_ends_it_in_a_typed_error_and_the_next_go_elsewhere(
    backends: list[ScriptedServer], make_router: Make, flavour: str, serve_process: Any
) -> None:
    survivor = backends[0]
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa"
    args = ("-m", f"fake:{words}", "--option", "chunking=word", "--option", "delay=0.2")
    with serve_process(*args) as (url, proc):
        router = make_router([url, survivor.url], eject_after=1)
        session = key_for(router, url + "/v1")
        if is_sync(flavour):
            chunks = router.stream("p", session_id=session)
            first = next(chunks)
            proc.kill()
            got, exc = until_error_of(chunks)
        else:
            first, got, exc = asyncio.run(_first_then_kill(router, session, proc))
    assert isinstance(exc, APIError) and exc.backend == url + "/v1"
    assert exc.partial_text == first + "".join(got) and words.startswith(exc.partial_text)
    assert text_of(router, flavour, "next one", session_id=session) == "next one "
    assert router.stats()[url + "/v1"]["ejected"]


def until_error_of(chunks: Any) -> tuple[list[str], APIError | None]:
    got: list[str] = []
    try:
        got.extend(chunks)
    except APIError as exc:
        return got, exc
    return got, None


async def _first_then_kill(router: Router, session: str, proc: Any) -> tuple[str, list[str], Any]:
    chunks = router.astream("p", session_id=session)
    first = await chunks.__anext__()
    proc.kill()
    got: list[str] = []
    try:
        async for chunk in chunks:
            got.append(chunk)
    except APIError as exc:
        return first, got, exc
    return first, got, None


# -- cancellation and usage -----------------------------------------------------------


def test_a_consumer_that_stops_closes_the_backends_stream(
    backends: list[ScriptedServer], make_router: Make, flavour: str
) -> None:
    a = backends[0]
    router = make_router([a.url])
    a.script(stream([f"w{i} " for i in range(100)], delay=0.02))
    assert take(stream_of(router, flavour, "p"), 2) == ["w0 ", "w1 "]
    assert a.wait(lambda: a.requests[-1].disconnected is not None)
    stats = router.stats()[a.url]
    assert stats["cancelled"] == 1 and stats["outstanding"] == 0


def test_usage_is_on_the_last_chunk_and_in_the_stats(
    backends: list[ScriptedServer], make_router: Make, flavour: str
) -> None:
    a, b = backends[:2]
    router = make_router([a.url, b.url])
    a.script(stream(["x"], usage=None))
    session = key_for(router, a.url)
    uncounted = chunks_of(router, flavour, "p", session_id=session)  # no usage from the server
    counted = chunks_of(router, flavour, "three word prompt", session_id=session)
    for chunks in (counted, uncounted):
        assert isinstance(chunks[-1], GenerationChunk)
        assert chunks[-1].generation_info and chunks[-1].generation_info["usage"] is not None
    assert counted[-1].generation_info["usage"].prompt_tokens == 3
    assert uncounted[-1].generation_info["usage"].estimated
    stats = router.stats()[a.url]
    assert stats["prompt_tokens"] >= 3 and stats["completed"] == 2


# -- health -------------------------------------------------------------------------


def test_failed_probes_eject_a_backend_and_a_good_one_admits_it_again(
    backends: list[ScriptedServer], make_router: Make, flavour: str
) -> None:
    a, b = backends[:2]
    router = make_router([a.url, b.url], eject_after=2, probe_interval=0.02)
    a.health = error(503)
    text_of(router, flavour, "start the probes")
    assert a.wait(lambda: router.stats()[a.url]["ejected"])
    before = len(a.requests)
    for _ in range(4):
        assert text_of(router, flavour, "x") == "x "
    assert len(a.requests) == before
    a.health = None
    assert a.wait(lambda: not router.stats()[a.url]["ejected"])
    assert router.stats()[a.url]["readmissions"] == 1
    assert text_of(router, flavour, "back", session_id=key_for(router, a.url)) == "back "
    assert len(a.requests) == before + 1


def test_consecutive_failures_eject_a_backend_without_probes(
    backends: list[ScriptedServer], make_router: Make, flavour: str
) -> None:
    dead, b = dead_url(), backends[1]
    router = make_router([dead, b.url], eject_after=2)
    session = key_for(router, dead)
    for _ in range(4):
        assert text_of(router, flavour, "fine", session_id=session) == "fine "
    stats = router.stats()[dead]
    assert stats["ejected"] and stats["requests"] == 2 and stats["ejections"] == 1


def test_with_every_backend_ejected_a_request_fails_at_once(
    make_router: Make, flavour: str
) -> None:
    dead = dead_url()
    router = make_router([dead], eject_after=1, max_retries=0)
    _, first = until_error(router, flavour, "p")
    _, second = until_error(router, flavour, "p")
    assert isinstance(first, APIConnectionError) and first.backend == dead
    assert isinstance(second, APIConnectionError) and "no backend" in str(second)


# -- bad input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        {"upstreams": "http://one"},
        {"upstreams": []},
        {"upstreams": ["http://one"], "policy": "random"},
        {"upstreams": ["http://one"], "affinity": "user"},
        {"upstreams": ["http://one"], "eject_after": 0},
        {"upstreams": ["ftp://one"]},
    ],
)
def test_bad_settings_are_a_typed_error(settings: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        Router(**settings)


def test_a_session_id_must_be_text(backends: list[ScriptedServer], make_router: Make) -> None:
    router = make_router([backends[0].url])
    with pytest.raises(InvalidInputError, match="session_id"):
        router.invoke("p", session_id=7)
