"""Message chunks in the shared generation loop: their ``ChunkKind``, and the one thing a
chat generation does beyond a text one (``ChatGenerating``): every chunk of an answer gets
one id, the stream always ends with a last chunk (``chunk_position="last"``), and a failed
stream's error carries the partial message. Pure, no I/O, but for the chat loops
``stream``/``astream``: the shared loops, with a leaner per-chunk path when nobody listens
and there are no stop sequences."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from lmstream import _generation as loops
from lmstream._accumulate import ChunkKind
from lmstream._generation import Generating, _afinish, _finish
from lmstream.callbacks import drain, drain_async
from lmstream.chunks import LLMResult, Usage, merge_info
from lmstream.errors import GenerationError
from lmstream.message_input import ChatGeneration, as_message_chunk
from lmstream.messages import AIMessageChunk, UsageMetadata, add_chunks
from lmstream.runs import Run

__all__ = ["ChatGenerating", "MessageChunks", "astream", "stream", "usage_of"]


def usage_of(usage: UsageMetadata | None, estimated: bool = False) -> Usage | None:
    """lmstream's ``Usage`` for LangChain-shaped usage metadata."""
    if usage is None:
        return None
    return Usage(
        usage.get("input_tokens", 0),
        usage.get("output_tokens", 0),
        usage.get("total_tokens", 0),
        estimated,
    )


def _metadata(usage: Usage) -> UsageMetadata:
    return {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens}  # fmt: skip


def _split(info: dict[str, Any] | None) -> tuple[UsageMetadata | None, dict[str, Any] | None]:
    """(usage metadata, response metadata) for metadata in ``merge_info``'s shape."""
    if not info:
        return None, None
    meta = {k: v for k, v in info.items() if k != "usage"}
    usage = info.get("usage")
    if not isinstance(usage, Usage):
        return None, meta or None
    if usage.estimated:
        meta["usage_estimated"] = True
    return _metadata(usage), meta or None


def _told(error: GenerationError, empty: AIMessageChunk) -> AIMessageChunk:
    """The partial message of a failed whole answer (nothing was streamed): the partial
    text and usage its error says the backend produced."""
    usage = _metadata(error.usage) if error.usage is not None else empty.usage_metadata
    return AIMessageChunk(
        error.partial_text, usage_metadata=usage, response_metadata=empty.response_metadata
    )


class MessageChunks(ChunkKind[AIMessageChunk]):
    """The chunks of chat models: ``AIMessageChunk``; stop sequences apply to the text.

    One instance per generation: it remembers the last sum of the generation's chunks,
    which the end of a stream asks for several times (text, metadata, result)."""

    __slots__ = ("_key", "_sum")

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._sum = AIMessageChunk("")

    def summed(self, chunks: Iterable[AIMessageChunk]) -> AIMessageChunk:
        """The chunks added up, remembered: to read, never to change."""
        if not isinstance(chunks, list):
            return add_chunks(list(chunks))
        key = (id(chunks), len(chunks))
        if key != self._key:
            self._key, self._sum = key, add_chunks(chunks)
        return self._sum

    def added(self, chunks: Iterable[AIMessageChunk]) -> AIMessageChunk:
        """The chunks added up (a fresh object each time: callers may change it)."""
        if not isinstance(chunks, list):
            return add_chunks(list(chunks))
        return self.summed(chunks) + AIMessageChunk("")

    def text(self, chunk: AIMessageChunk) -> str:
        """The text channel (reasoning left out)."""
        return chunk.text

    def info(self, chunk: AIMessageChunk) -> dict[str, Any] | None:
        """Response metadata plus ``usage`` as a ``Usage``."""
        meta, usage = chunk._response_metadata, chunk.usage_metadata
        if usage is None:
            return meta
        out = dict(meta) if meta else {}
        out["usage"] = usage_of(usage, bool(out.get("usage_estimated")))
        return out

    def bare(self, chunk: AIMessageChunk) -> bool:
        """Whether the chunk carries nothing but text."""
        return (
            type(chunk.content) is str
            and not chunk._tool_call_chunks
            and chunk.usage_metadata is None
            and not chunk._response_metadata
        )

    def with_text(
        self, chunk: AIMessageChunk, text: str, info: dict[str, Any] | None
    ) -> AIMessageChunk:
        """A copy of ``chunk`` with other text; reasoning, tool calls and usage kept."""
        out = chunk + AIMessageChunk("")
        if isinstance(out.content, str):
            out.content = text
        else:
            blocks = [b for b in out.content if not isinstance(b, str) and b["type"] != "text"]
            out.content = [*blocks, {"type": "text", "text": text}] if text else blocks
        if info and info.get("finish_reason") == "stop":
            out._response_metadata = merge_info(out._response_metadata, {"finish_reason": "stop"})
        return out

    def make(self, text: str, info: dict[str, Any] | None) -> AIMessageChunk:
        """A chunk of text with metadata (usage as ``usage_metadata``)."""
        usage, meta = _split(info)
        return AIMessageChunk(text, usage_metadata=usage, response_metadata=meta)

    def merged_info(self, chunks: Iterable[AIMessageChunk]) -> dict[str, Any] | None:
        """The metadata of the chunks added up (running usage totals counted once)."""
        info = self.info(self.summed(chunks))
        return None if info is None else dict(info)  # the sum's own dict stays as it is

    def join(self, chunks: Iterable[AIMessageChunk]) -> AIMessageChunk:
        """The chunks added up, in linear time."""
        return add_chunks([as_message_chunk(c) for c in chunks])

    def result(self, text: str, info: dict[str, Any] | None, chunks: list[AIMessageChunk]) -> Any:
        """An ``LLMResult`` whose generation holds the whole message."""
        message = self.added(chunks)
        if text != message.text and text.startswith(message.text):
            message = message + AIMessageChunk(text[len(message.text) :])  # held-back tail
        usage, meta = _split(info)
        if message.usage_metadata is None:
            message.usage_metadata = usage
        if meta:
            message._response_metadata = merge_info(message._response_metadata, meta)
        return LLMResult(generations=[[ChatGeneration(message)]])


class ChatGenerating(Generating):
    """A chat model's generation on the shared loop. Its metadata is always the chunks'
    sum (usage reported as running totals must not add up chunk by chunk)."""

    __slots__ = ("id",)
    kind: MessageChunks

    def __init__(self, run: Run, prompt: Any, stop: list[str] | None) -> None:
        super().__init__(MessageChunks(), run, prompt, stop, False)
        self.id: str | None = None

    def _new_id(self) -> str:
        h = os.urandom(16).hex()  # a random (version 4) UUID, without building a UUID object
        self.id = (
            f"lc_run--{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
        )
        return self.id

    def feed(self, chunk: Any) -> Any:
        """Account for a provider chunk (any shape a chat hook yields) and report it to
        the run; what the consumer gets. Every chunk of one answer shares one id."""
        if type(chunk) is not AIMessageChunk:
            chunk = as_message_chunk(chunk)
        if chunk.id is None:
            chunk.id = self.id or self._new_id()
        elif self.id is None:
            self.id = chunk.id
        if self.stops:
            chunk = self._feed_with_stops(chunk, self.kind.info(chunk))
            if chunk is None:
                return None
        self.kept.append(chunk)
        if self.listening and (pending := self.run.report_chunk(chunk)):
            self.pending = pending
        return chunk

    @property
    def text(self) -> str:
        """The text handed on so far (without stop sequences, read from the chunks)."""
        return "".join(self.parts) if self.stops else self.kind.summed(self.kept).text

    @property
    def info(self) -> dict[str, Any] | None:
        """The metadata handed on so far: the chunks' sum (a stop sequence ends it)."""
        info = self.kind.merged_info(self.kept)
        return merge_info(info, {"finish_reason": "stop"}) if self.stopped else info

    @info.setter
    def info(self, value: dict[str, Any] | None) -> None:
        pass  # derived from the chunks, never merged chunk by chunk

    def cut(self, exc: BaseException) -> tuple[BaseException, Any]:
        """As for text, and a failed stream's error carries the partial message."""
        error, partial = super().cut(exc)
        if isinstance(error, GenerationError) and error.partial_text and not self.kept:
            told = _told(error, partial.generations[0][0].message)  # the backend's word
            partial.generations[0][0] = ChatGeneration(told)
        message = partial.generations[0][0].message
        message.id = message.id or self.id
        if isinstance(error, GenerationError):
            error.partial_message = message
        return error, partial

    def finish(self) -> tuple[AIMessageChunk | None, list[Any], Any]:
        """As for text, and the stream always ends with a last chunk, reported too."""
        _, items, result = super().finish()
        last = items[-1] if items else AIMessageChunk("")
        last.id = self.id or self._new_id()
        last.chunk_position = "last"
        if result is not None:
            result.generations[0][0].message.chunk_position = "last"
        return last, items or [last], result

    def whole(self, chunk: Any) -> Any:
        """The run's result for a whole generation (``invoke``)."""
        chunk = as_message_chunk(chunk)
        if chunk.id is None:
            chunk.id = self._new_id()
        return super().whole(chunk)


# -- the chat loops: the shared ones, or the lean ones when they fit ------------------------


def stream(gen: ChatGenerating, make: Callable[..., Iterator[Any]], *args: Any) -> Iterator[Any]:
    """``_generation.stream``; with no stop sequences, each chunk gets the answer's id and
    is kept (and reported, when somebody listens), inline, with nothing else to do."""
    if gen.stops:
        return loops.stream(gen, make, *args)
    return _reported(gen, make, *args) if gen.listening else _lean(gen, make, *args)


def astream(
    gen: ChatGenerating, make: Callable[..., AsyncIterator[Any]], *args: Any
) -> AsyncIterator[Any]:
    """The async twin of ``stream``."""
    if gen.stops:
        return loops.astream(gen, make, *args)
    return _areported(gen, make, *args) if gen.listening else _alean(gen, make, *args)


def _lean(gen: ChatGenerating, make: Callable[..., Iterator[Any]], *args: Any) -> Iterator[Any]:
    gen.run.start()
    try:
        feed, kept, chunks = gen.feed, gen.kept, gen.opened(make(*args))
        ident = None  # the answer's id, once known
        for chunk in chunks:
            if ident and type(chunk) is AIMessageChunk and chunk.id is None:
                chunk.id = ident  # the usual case, inline: what feed does for it
                kept.append(chunk)
            else:
                chunk, ident = feed(chunk), gen.id
            yield chunk
    except BaseException as exc:
        gen.settle(exc)
    yield from _finish(gen)


async def _alean(
    gen: ChatGenerating, make: Callable[..., AsyncIterator[Any]], *args: Any
) -> AsyncIterator[Any]:
    await gen.run.astart()
    try:
        feed, kept, chunks = gen.feed, gen.kept, gen.opened(make(*args))
        ident = None
        async for chunk in chunks:
            if ident and type(chunk) is AIMessageChunk and chunk.id is None:
                chunk.id = ident
                kept.append(chunk)
            else:
                chunk, ident = feed(chunk), gen.id
            yield chunk
    except BaseException as exc:
        await gen.asettle(exc)
    async for item in _afinish(gen):
        yield item


def _reporting(gen: ChatGenerating) -> Callable[[Any], tuple[Any, Any]]:
    """The per-chunk step while someone listens: (the chunk to hand on, the async
    handlers' work to wait for). A chunk without an id, once the answer's id is known, is
    stamped, kept and reported inline; any other goes through ``feed``."""
    feed, kept, report = gen.feed, gen.kept, gen.run.report_chunk
    ident: str | None = None

    def step(chunk: Any) -> tuple[Any, Any]:
        nonlocal ident
        if ident and type(chunk) is AIMessageChunk and chunk.id is None:
            chunk.id = ident
            kept.append(chunk)
            return chunk, report(chunk)
        chunk, ident = feed(chunk), gen.id
        return chunk, gen.take_pending() if gen.pending else None

    return step


def _reported(gen: ChatGenerating, make: Callable[..., Iterator[Any]], *args: Any) -> Iterator[Any]:
    gen.run.start()
    try:
        step, chunks = _reporting(gen), gen.opened(make(*args))
        for chunk in chunks:
            out, pending = step(chunk)
            if pending:
                drain(pending, "chunk")
            yield out
    except BaseException as exc:
        gen.settle(exc)
    yield from _finish(gen)


async def _areported(
    gen: ChatGenerating, make: Callable[..., AsyncIterator[Any]], *args: Any
) -> AsyncIterator[Any]:
    await gen.run.astart()
    try:
        step, chunks = _reporting(gen), gen.opened(make(*args))
        async for chunk in chunks:
            out, pending = step(chunk)
            if pending:
                await drain_async(pending, "chunk")
            yield out
    except BaseException as exc:
        await gen.asettle(exc)
    async for item in _afinish(gen):
        yield item
