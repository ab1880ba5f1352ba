"""The fault-injection matrix: what a server can do wrong, how each HTTP provider must end.

Each ``Case`` scripts the loopback server (``servers.scripted``) in the provider's own wire
format (OpenAI's completions or chat completions SSE, the latter also as ``lmstream
serve`` sends it, or the ``/stream`` frames of ``lmstream serve``), then a
consumer reads one stream with ``stream_chunks`` / ``astream_chunks``. ``run_cell`` returns
what happened: the outcome (``ok`` or the error's class), the text handed on, the error's
``partial_text``, the LLM runs' ends as callbacks saw them, and the requests the server got.
``table`` renders the cells as the Markdown table published in ``docs/reliability.md``.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from helpers import Outcomes
from servers.raw import RawServer
from servers.scripted import Reply, Reset, ScriptedServer, Send, Stall, error, frames
from servers.scripted_chat import chat_frames

from lmstream import LMStreamError

TEXTS = ["Hel", "lo ", "wor", "ld."]
FULL = "".join(TEXTS)
HEAD = TEXTS[:2]
PARTIAL = "".join(HEAD)
PROVIDERS = {
    "openai": "OpenAI", "chat": "ChatOpenAI", "remote": "RemoteLLM",
    "remote-chat": "RemoteChatModel",
}  # fmt: skip
CHAT = ("chat", "remote-chat")  # the chat completions wire
FLAVOURS = ("sync", "async")
MiB = 2**20
_SSE = {"content-type": "text/event-stream"}


# -- the wire formats ------------------------------------------------------------------


def _remote_frame(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


class Wire:
    """Builds a provider's answers: all of ``texts`` (``ok``), or the head of a stream
    followed by something else (``head``), and the provider's in-band error frame."""

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def head(self, texts: list[str]) -> list[bytes]:
        if self.provider == "openai":
            return frames(texts, finish_reason=None, usage=None, done=False)
        if self.provider in CHAT:
            return chat_frames(texts, finish_reason=None, usage=None, done=False)
        out = [_remote_frame("metadata", {"run_id": "0190a8d2-0000-7000-8000-000000000000"})]
        out += [_remote_frame("data", {"text": t, "generation_info": None}) for t in texts]
        return out

    def tail(self, texts: list[str], completion: str | None = None) -> list[bytes]:
        """What ends a complete answer of ``texts``: finish reason, usage, terminator.
        ``completion`` is the JSON text of the usage's completion count (default: right)."""
        count = str(len(texts)) if completion is None else completion
        total = str(3 + len(texts)) if completion is None else completion
        usage = {"prompt_tokens": 3, "completion_tokens": "COUNT", "total_tokens": "TOTAL"}
        if self.provider != "remote":
            last = {"choices": [], "usage": usage}
            finish = frames if self.provider == "openai" else chat_frames
            parts = [*finish([], usage=None, done=False), f"data: {json.dumps(last)}\n\n".encode()]
            parts.append(b"data: [DONE]\n\n")
        else:
            outcome = {"finish_reason": "stop", "usage": usage}
            parts = [_remote_frame("data", {"text": "", "generation_info": outcome}),
                     _remote_frame("end", outcome)]  # fmt: skip
        return [p.replace(b'"COUNT"', count.encode()).replace(b'"TOTAL"', total.encode())
                for p in parts]  # fmt: skip

    def in_band_error(self, claims: str = PARTIAL) -> bytes:
        """The error event; ``lmstream serve``'s also says what text it had sent (and, on
        the chat wire, which error the model raised)."""
        typed = {"type": "ProviderError", "message": "overloaded", "partial_text": claims}
        if self.provider == "remote":
            return _remote_frame("error", typed)
        body: dict[str, Any] = {
            "error": {"message": "overloaded", "type": "server_error", "code": 503}
        }
        if self.provider == "remote-chat":
            body["error"]["lmstream"] = typed
        return f"data: {json.dumps(body)}\n\n".encode()

    def malformed(self) -> bytes:
        return (
            b"data: {not json\n\n" if self.provider != "remote" else b"event: data\ndata: {no\n\n"
        )

    def reply(self, parts: list[bytes], *then: Send | Stall | Reset) -> Reply:
        return Reply(headers=dict(_SSE), steps=[*(Send(p) for p in parts), *then])

    def ok(self) -> Reply:
        return self.reply([*self.head(TEXTS), *self.tail(TEXTS)])

    def one_write(self, *parts: bytes) -> Reply:
        """The two chunks of the head and ``parts`` in a single write (one read, mostly)."""
        return self.reply([b"".join([*self.head(HEAD), *parts])])

    def gzip_bomb(self) -> Reply:
        """The head, then 512 MiB of spaces (no line end), gzipped to about 0.5 MB; then
        silence. The body never ends, so its checksum is never due."""
        body = bomb_body(b"".join(self.head(HEAD)), 512)
        headers = {**_SSE, "content-encoding": "gzip"}
        return Reply(headers=headers, steps=[Send(body), Stall()])


@functools.cache
def bomb_body(head: bytes, mib: int) -> bytes:
    """``head`` and ``mib`` MiB of spaces as one gzip stream without its end. After a full
    flush the compressor starts afresh, so every MiB compresses to the same bytes."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    start = packer.compress(head) + packer.flush(zlib.Z_FULL_FLUSH)
    block = packer.compress(b" " * MiB) + packer.flush(zlib.Z_FULL_FLUSH)
    return start + block * mib


# -- the cases -------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One fault: how the server behaves, and the outcome every provider and flavour must
    reach (``ok``, or the error's class name), the text it keeps, the requests it makes."""

    name: str
    server: str
    script: Callable[[Wire], list[Reply]] | None
    outcome: str
    text: str
    requests: int
    settings: dict[str, Any] = field(default_factory=dict)
    consumer_delay: float = 0.0
    close_delimited: bool = False
    """Served by ``RawServer``: a body without length or chunks, ended by closing."""


CASES = [
    Case("connection refused", "nothing listens on the port", None,
         "APIConnectionError", "", 0),
    Case("reset before the first chunk", "headers, then a TCP reset; then a good answer",
         lambda w: [Reply(headers=dict(_SSE), steps=[Reset()]), w.ok()], "ok", FULL, 2),
    Case("reset mid-stream", "two chunks, then a TCP reset",
         lambda w: [w.reply(w.head(HEAD), Reset())], "APIConnectionError", PARTIAL, 1),
    Case("closed mid-stream", "two chunks, then the connection closes without a reset",
         lambda w: [w.reply(w.head(HEAD), Reset(rst=False))], "APIConnectionError", PARTIAL, 1),
    Case("stall past the idle limit", "two chunks, then silence (idle limit 0.3 s)",
         lambda w: [w.reply(w.head(HEAD), Stall())], "APITimeoutError", PARTIAL, 1,
         {"idle_timeout": 0.3}),
    Case("no first chunk in time", "headers, then silence (first-token limit 0.3 s, no retries)",
         lambda w: [w.reply([], Stall())], "APITimeoutError", "", 1,
         {"first_token_timeout": 0.3, "max_retries": 0}),
    Case("in-band error", "two chunks, then the protocol's error event",
         lambda w: [w.reply([*w.head(HEAD), w.in_band_error()])], "in-band", PARTIAL, 1),
    Case("malformed SSE", "two chunks, then a frame that is not JSON",
         lambda w: [w.reply([*w.head(HEAD), w.malformed()])], "ProtocolError", PARTIAL, 1),
    Case("no terminator", "two chunks, then the body ends cleanly without the end marker",
         lambda w: [w.reply(w.head(HEAD))], "ProtocolError", PARTIAL, 1),
    Case("429 then success", "429 with Retry-After: 0, then a good answer",
         lambda w: [error(429, headers={"retry-after": "0"}, type="rate_limit_error"), w.ok()],
         "ok", FULL, 2),
    Case("5xx then success", "503, then a good answer",
         lambda w: [error(503), w.ok()], "ok", FULL, 2),
    Case("401", "401 with an OpenAI-shaped error body",
         lambda w: [error(401, "bad key", type="invalid_request_error")],
         "AuthenticationError", "", 1),
    Case("slow consumer", "a good answer; the consumer takes 0.3 s per chunk (idle limit 0.2 s)",
         lambda w: [w.ok()], "ok", FULL, 1, {"idle_timeout": 0.2}, 0.3),
    Case("stall, close-delimited body", "as \"stall past the idle limit\", with a body that "
         "ends when the connection closes", lambda w: [w.reply(w.head(HEAD), Stall())],
         "APITimeoutError", PARTIAL, 1, {"idle_timeout": 0.3}, close_delimited=True),
    Case("no first chunk, close-delimited body", "as \"no first chunk in time\", with a body "
         "that ends when the connection closes", lambda w: [w.reply([], Stall())],
         "APITimeoutError", "", 1, {"first_token_timeout": 0.3, "max_retries": 0},
         close_delimited=True),
    Case("error in the same read", "two chunks and the error event in one write",
         lambda w: [w.one_write(w.in_band_error())], "in-band", PARTIAL, 1),
    Case("malformed frame in the same read", "two chunks and a frame that is not JSON in one "
         "write", lambda w: [w.one_write(w.malformed())], "ProtocolError", PARTIAL, 1),
    Case("bad UTF-8 in the same read", "two chunks and a frame that is not UTF-8 in one write",
         lambda w: [w.one_write(b"data: \xff\xfe\n\n")], "ProtocolError", PARTIAL, 1),
    Case("forged partial text", "two chunks, then an error event saying other text was sent",
         lambda w: [w.reply([*w.head(HEAD), w.in_band_error(claims="Goodbye")])], "in-band",
         PARTIAL, 1),
    Case("negative usage", "a whole answer whose usage counts -1 completion tokens",
         lambda w: [w.reply([*w.head(TEXTS), *w.tail(TEXTS, "-1")])], "ProtocolError", FULL, 1),
    Case("overflowing usage", "a whole answer whose usage counts 1e999 completion tokens",
         lambda w: [w.reply([*w.head(TEXTS), *w.tail(TEXTS, "1e999")])], "ProtocolError", FULL,
         1),
    Case("line without end", "two chunks, then 9 MiB with no line end, then silence",
         lambda w: [w.reply([*w.head(HEAD), b"data: " + b"x" * 9 * MiB], Stall())],
         "ProtocolError", PARTIAL, 1),
    Case("event without end", "two chunks, then 9 MiB of `data:` lines and no blank line, then "
         "silence", lambda w: [w.reply([*w.head(HEAD), b"data: x\n" * (9 * MiB // 8)], Stall())],
         "ProtocolError", PARTIAL, 1),
    Case("body without end", "two chunks, then 2 MiB of keep-alive comments, then silence "
         "(`max_body_bytes` 1 MiB)",
         lambda w: [w.reply([*w.head(HEAD), b": keep-alive\n\n" * (2 * MiB // 14)], Stall())],
         "ProtocolError", PARTIAL, 1, {"max_body_bytes": MiB}),
    Case("gzip bomb", "two chunks, then 512 MiB of spaces gzipped to 0.5 MB, then silence",
         lambda w: [w.gzip_bomb()], "ProtocolError", PARTIAL, 1),
]  # fmt: skip
IN_BAND = {"openai": "ServerError", "chat": "ServerError", "remote": "ProviderError",
           "remote-chat": "ProviderError"}  # fmt: skip


def expected_outcome(case: Case, provider: str) -> str:
    """The outcome ``case`` must reach with ``provider``."""
    return IN_BAND[provider] if case.outcome == "in-band" else case.outcome


# -- running one cell ------------------------------------------------------------------


@dataclass
class Cell:
    """What one stream did."""

    outcome: str
    text: str
    finish_reason: str | None
    error: LMStreamError | None
    ends: list[str]
    requests: int
    phase: str | None = None

    def render(self) -> str:
        what = "ok" if self.error is None else f"`{self.outcome}`"
        if self.phase:
            what += f" ({self.phase})"
        kept = f", keeps {self.text!r}" if self.error is not None and self.text else ""
        plural = "" if self.requests == 1 else "s"
        return f"{what}{kept}, {self.requests} request{plural}"


def _make(provider: str, url: str, settings: dict[str, Any]) -> Any:
    options = {"retry_backoff": 0.001, **settings}
    if provider == "openai":
        from lmstream.providers.openai import OpenAI

        return OpenAI("scripted", base_url=url, api_key="sk-scripted", **options)
    if provider == "chat":
        from lmstream.providers.openai_chat import ChatOpenAI

        return ChatOpenAI("scripted", base_url=url, api_key="sk-scripted", **options)
    if provider == "remote-chat":
        from lmstream.providers.remote_chat import RemoteChatModel

        return RemoteChatModel(url.removesuffix("/v1"), api_key="sk-scripted", **options)
    from lmstream.providers.remote import RemoteLLM

    return RemoteLLM(url.removesuffix("/v1"), api_key="sk-scripted", **options)


def _consume_sync(llm: Any, case: Case, config: Any) -> tuple[list[Any], BaseException | None]:
    chunks: list[Any] = []
    try:
        for chunk in llm.stream_chunks("Say hello", config):
            chunks.append(chunk)
            time.sleep(case.consumer_delay)
    except LMStreamError as exc:
        return chunks, exc
    finally:
        llm.close()
    return chunks, None


async def _consume_async(
    llm: Any, case: Case, config: Any
) -> tuple[list[Any], BaseException | None]:
    chunks: list[Any] = []
    try:
        async for chunk in llm.astream_chunks("Say hello", config):
            chunks.append(chunk)
            await asyncio.sleep(case.consumer_delay)
    except LMStreamError as exc:
        return chunks, exc
    finally:
        await llm.aclose()
    return chunks, None


def run_cell(server: ScriptedServer, refused_url: str, case: Case, provider: str,
             flavour: str, raw: RawServer | None = None) -> Cell:  # fmt: skip
    """Script the server for ``case`` (``raw`` for a close-delimited body), read one
    stream, and say what happened."""
    host: ScriptedServer | RawServer = server
    if case.close_delimited:
        assert raw is not None, f"{case.name!r} needs a RawServer"
        host = raw
    host.reset_log()
    host.handler = lambda body: error(418, "an unscripted request")
    url = refused_url if case.script is None else host.url
    if case.script is not None:
        host.script(*case.script(Wire(provider)))
    llm, ends = _make(provider, url, case.settings), Outcomes()
    config = {"callbacks": [ends]}
    if flavour == "sync":
        chunks, exc = _consume_sync(llm, case, config)
    else:
        chunks, exc = asyncio.run(_consume_async(llm, case, config))
    info: dict[str, Any] = {}
    for chunk in chunks:  # text chunks' generation_info, message chunks' response_metadata
        meta = getattr(chunk, "generation_info", None) or getattr(chunk, "response_metadata", None)
        info.update(meta or {})
    requests = 0 if case.script is None else len(host.requests)
    error_ = exc if isinstance(exc, LMStreamError) else None
    return Cell(
        "ok" if exc is None else type(exc).__name__, "".join(c.text for c in chunks),
        info.get("finish_reason"), error_, ends.outcomes, requests, getattr(exc, "phase", None),
    )  # fmt: skip


# -- the published table ---------------------------------------------------------------


def table(cells: dict[tuple[str, str, str], Cell]) -> str:
    """The Markdown table of every case, provider and flavour."""
    columns = [(p, f) for p in PROVIDERS for f in FLAVOURS]
    head = ["Fault", "What the server does", *(f"{PROVIDERS[p]} {f}" for p, f in columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for case in CASES:
        row = [case.name, case.server, *(cells[case.name, p, f].render() for p, f in columns)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)
