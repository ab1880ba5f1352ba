"""The routers' requests carry the routed call's trace: every request a text or chat router
sends to a backend (a retry on another backend too) names the router's model span as its
parent in a W3C ``traceparent``, as the HTTP providers' requests do."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from helpers import collect, stream_of
from otel_support import Telemetry, installed
from servers.scripted import ScriptedServer, error

from lmstream import Router

Make = Callable[..., Router]


@pytest.fixture
def otel(monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    yield from installed(monkeypatch)


def key_for(router: Router, url: str) -> str:
    """A session id that the router sends to ``url`` first."""
    return next(f"s{i}" for i in range(10_000) if router.backend_for(f"s{i}") == url)


def parent_of(headers: dict[str, str]) -> tuple[str, str]:
    """(trace id, parent span id) of a request's ``traceparent``; it must be sampled."""
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert version == "00" and int(flags, 16) & 1
    return trace_id, span_id


def routed_text(router: Router, kind: str, flavour: str, session: str) -> str:
    """The answer to "one two" through the text router or its chat model."""
    model = router if kind == "text" else router.chat_model()
    chunks = collect(stream_of(model, flavour, "one two", session_id=session))
    return "".join(c if isinstance(c, str) else c.text for c in chunks)


@pytest.mark.parametrize("kind", ["text", "chat"])
def test_each_backend_request_carries_the_router_span_s_traceparent(
    otel: Telemetry, backends: list[ScriptedServer], make_router: Make, flavour: str, kind: str
) -> None:
    a, b = backends[:2]
    router = make_router([a.url, b.url])
    a.script(error(503))  # the first attempt fails before its first chunk: b answers
    assert routed_text(router, kind, flavour, key_for(router, a.url)) == "one two "
    span = otel.span()  # the router's call is the one model span
    assert span.name.startswith("chat" if kind == "chat" else "text_completion")
    expected = (f"{span.context.trace_id:032x}", f"{span.context.span_id:016x}")
    sent = [*a.requests, *b.requests]
    assert [r.path for r in sent] == ["/v1/" + ("completions" if kind == "text" else
                                               "chat/completions")] * 2  # fmt: skip
    assert [parent_of(r.headers) for r in sent] == [expected, expected]


@pytest.mark.parametrize("kind", ["text", "chat"])
def test_no_traceparent_without_a_tracer(
    backends: list[ScriptedServer], make_router: Make, flavour: str, kind: str
) -> None:
    a = backends[0]
    router = make_router([a.url])
    assert routed_text(router, kind, flavour, "s0") == "one two "
    assert len(a.requests) == 1 and "traceparent" not in a.requests[0].headers
