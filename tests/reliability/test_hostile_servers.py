"""A server that means harm cannot freeze, flood or fool the HTTP providers, sync or async.

The fault matrix (``test_faults.py``) covers hostile streams; these tests cover the rest:
parsing 1 MB error messages built to make a regular expression backtrack (in a child
process, so that a regression fails on its time limit instead of hanging the suite), the
event-stream decoder's cost per byte, whole answers that inflate or never end, time limits
on a body that ends when its connection closes, and what an error frame may claim.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import invoke_of
from reliability.faults import HEAD, PARTIAL, MiB, Wire, bomb_body
from servers.raw import RawServer
from servers.scripted import Reply, ScriptedServer, Send, Stall, completion, error

from lmstream import APITimeoutError, InvalidInputError, LMStreamError, ProtocolError
from lmstream._sse import SSEDecoder
from lmstream.providers.openai import OpenAI
from lmstream.providers.remote import RemoteLLM

PROVIDERS = ("openai", "remote")


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as scripted:
        yield scripted


@pytest.fixture
def scripted(server: ScriptedServer) -> ScriptedServer:
    server.reset_log()
    return server


def make(provider: str, url: str, **settings: Any) -> OpenAI | RemoteLLM:
    settings = {"retry_backoff": 0.001, "max_retries": 0, **settings}
    if provider == "openai":
        return OpenAI("m", base_url=url, api_key="sk-hostile", **settings)
    return RemoteLLM(url.removesuffix("/v1"), api_key="sk-hostile", **settings)


def read_until_error(llm: Any, flavour: str) -> tuple[list[str], LMStreamError | None]:
    """The texts a stream handed on, and the error that ended it."""
    texts: list[str] = []

    async def consume() -> None:
        async for text in llm.astream("hi"):
            texts.append(text)

    try:
        if flavour == "sync":
            texts.extend(text for text in llm.stream("hi"))
        else:
            asyncio.run(consume())
    except LMStreamError as exc:
        return texts, exc
    return texts, None


def failure(run: Any) -> LMStreamError:
    with pytest.raises(LMStreamError) as info:
        run()
    return info.value


# -- parsing what a server wrote takes time linear in it ------------------------------

_ONE_MB = 1_000_000
_PARSE = """
import asyncio, sys
from lmstream import LMStreamError
from lmstream.providers import _openai_errors as errors
from lmstream.providers.openai import OpenAI
from lmstream.providers.remote import RemoteLLM

url, provider, flavour, answers, n = sys.argv[1:]
texts = ["context size" + " " * n, "maximum context length " + "1" * n, "context size" * (n // 12),
         "requested tokens (" + "9" * n, ("context length is" + " " * 9) * (n // 26)]
for text in texts:  # each pattern on its own, on the whole text
    for pattern in (errors._CONTEXT, errors._N_CTX, errors._PROMPT):
        pattern.search(text)
if provider == "openai":
    llm = OpenAI("m", base_url=url, api_key="k", max_retries=0)
else:
    llm = RemoteLLM(url.removesuffix("/v1"), api_key="k", max_retries=0)
for _ in range(int(answers)):
    try:
        llm.invoke("hi") if flavour == "sync" else asyncio.run(llm.ainvoke("hi"))
    except LMStreamError as exc:
        print(type(exc).__name__, exc.n_ctx, exc.prompt_tokens, len(str(exc)))
""".replace("n //", "int(n) //").replace("* n", "* int(n)")


def test_error_messages_built_to_backtrack_parse_in_linear_time(
    scripted: ScriptedServer, flavour: str
) -> None:
    """Before, "context size" and 16,000 spaces took 2.2 s, and 1 MB would take hours."""
    for provider in PROVIDERS:
        scripted.reset_log()
        messages = ["context size" + " " * _ONE_MB, "maximum context length " + "1" * _ONE_MB]
        scripted.script(*(error(400, m, type="invalid_request_error") for m in messages))
        args = [scripted.url, provider, flavour, str(len(messages)), str(_ONE_MB)]
        done = subprocess.run(
            [sys.executable, "-c", _PARSE, *args], capture_output=True, text=True, timeout=90
        )
        assert done.returncode == 0, done.stderr
        lines = done.stdout.split("\n")
        assert lines[:2] == ["APIContextLengthError None None 2011"] * 2, done.stdout


@pytest.mark.timeout(60)  # the decoder that re-scanned its buffer took hours for this
def test_the_event_stream_decoder_is_linear_in_the_bytes_fed() -> None:
    decoder, piece = SSEDecoder(), b"x" * 256
    for _ in range(64 * 1024):  # 16 MiB of one line, 256 bytes at a time
        assert decoder.feed(piece) == []
    assert decoder.pending
    events = decoder.feed(b"\n\ndata: after\n\n")
    assert [e.data for e in events] == ["after"]  # a line that is not a field is ignored


# -- whole answers are bounded too ----------------------------------------------------


def _gzipped(reply_body: bytes) -> Reply:
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    return Reply(200, headers, [Send(reply_body)])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_gzip_bomb_is_cut_at_the_body_limit(
    scripted: ScriptedServer, flavour: str, provider: str
) -> None:
    """0.5 MB that inflate to 512 MiB: before, the client held all of it (2 GB at peak)."""
    bomb = bomb_body(b"", 512)
    assert len(bomb) < MiB
    scripted.script(_gzipped(bomb))
    llm = make(provider, scripted.url)
    tracemalloc.start()
    try:
        exc = failure(lambda: invoke_of(llm, flavour, "hi"))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        llm.close()
    assert peak < 2 * llm.max_body_bytes  # type: ignore[operator]
    assert isinstance(exc, ProtocolError) and "max_body_bytes" in str(exc)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_stacked_or_unasked_encodings_are_refused(
    scripted: ScriptedServer, flavour: str, provider: str
) -> None:
    """Each layer of gzip can multiply the size by a thousand: only one, as asked."""
    answer = completion("hi") if provider == "openai" else None
    body = answer.steps[0].data if answer else json.dumps({"output": "hi"}).encode()  # type: ignore[union-attr]
    twice = Reply(200, {"content-type": "application/json", "content-encoding": "gzip, gzip"},
                  [Send(gzip.compress(gzip.compress(body)))])  # fmt: skip
    scripted.script(twice, Reply(200, {"content-type": "application/json", "content-encoding":
                                       "br"}, [Send(b"\x0b\x01\x80hi\x03")]))  # fmt: skip
    llm = make(provider, scripted.url)
    for _ in range(2):
        exc = failure(lambda: invoke_of(llm, flavour, "hi"))
        assert isinstance(exc, ProtocolError) and "not as asked" in str(exc)
    assert len(scripted.requests) == 2  # never retried
    llm.close()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_whole_answer_without_end_is_cut_at_the_body_limit(
    scripted: ScriptedServer, flavour: str, provider: str
) -> None:
    scripted.script(Reply(200, {"content-type": "application/json"},
                          [Send(b" " * (2 * MiB)), Stall()]))  # fmt: skip
    llm = make(provider, scripted.url, max_body_bytes=MiB, first_token_timeout=30)
    exc = failure(lambda: invoke_of(llm, flavour, "hi"))
    llm.close()
    assert isinstance(exc, ProtocolError) and f"max_body_bytes ({MiB} bytes)" in str(exc)
    assert scripted.wait(lambda: scripted.requests[-1].disconnected is not None)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("name", ["max_event_bytes", "max_body_bytes"])
def test_size_limits_are_checked(provider: str, name: str) -> None:
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(InvalidInputError, match=name):
            make(provider, "http://127.0.0.1:9/v1", **{name: bad})
    assert getattr(make(provider, "http://127.0.0.1:9/v1", **{name: None}), name) is None


# -- time limits on a body that ends when its connection closes -----------------------


@pytest.fixture(scope="module")
def raw() -> Iterator[RawServer]:
    with RawServer() as server:
        yield server


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_whole_answer_that_stalls_is_a_timeout_when_the_close_ends_it(
    raw: RawServer, flavour: str, provider: str
) -> None:
    """Before, the socket shut by the deadline read as the end of the body: a cut JSON."""
    raw.reset_log()
    raw.script(Reply(200, {"content-type": "application/json"}, [Send(b'{"id": '), Stall()]))
    llm = make(provider, raw.url, first_token_timeout=0.3)
    exc = failure(lambda: invoke_of(llm, flavour, "hi"))
    llm.close()
    assert isinstance(exc, APITimeoutError) and exc.phase == "first_token"


# -- what an error frame may claim ----------------------------------------------------


@pytest.mark.parametrize("counts", ["-1, 2, 1", "1, 1e999, 1e999", "1, 1, true", "1, 2.5, 3.5"])
def test_a_remote_error_frame_with_a_bad_usage_is_a_protocol_error(
    scripted: ScriptedServer, flavour: str, counts: str
) -> None:
    """Counts must be ints in [0, 2**63): before, -1 and 2.5 were taken, 1e999 raised an
    OverflowError and ``true`` counted one."""
    prompt, completion, total = counts.split(", ")
    usage = f'"prompt_tokens": {prompt}, "completion_tokens": {completion}, "total_tokens": {total}'
    wire = Wire("remote")
    frame = wire.in_band_error().replace(b'"partial_text"', b'"usage": {USAGE}, "partial_text"')
    scripted.script(wire.reply([*wire.head(HEAD), frame.replace(b"USAGE", usage.encode())]))
    llm = make("remote", scripted.url)
    texts, exc = read_until_error(llm, flavour)
    llm.close()
    assert isinstance(exc, ProtocolError) and "usage" in str(exc)
    assert "".join(texts) == exc.partial_text == PARTIAL
