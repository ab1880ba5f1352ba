"""What a chat stream has produced so far: the message chunks handed on, one id shared by
all of them, and stop sequences held back across chunks in the text channel. Pure, no
I/O: the generation loop's sync and async shells share it, as they share ``TextState``."""

from __future__ import annotations

import os
from typing import Any

from lmstream._accumulate import TextState
from lmstream.chunks import GenerationChunk, Usage
from lmstream.message_input import as_message_chunk
from lmstream.messages import AIMessageChunk, UsageMetadata, add_chunks

__all__ = ["ChatState", "usage_of"]


def _with_text(chunk: AIMessageChunk, text: str) -> AIMessageChunk:
    """``chunk`` with its text channel replaced (reasoning and the rest kept)."""
    content = chunk.content
    if isinstance(content, str):
        new: Any = text
    else:
        new = [b for b in content if not isinstance(b, str) and b.get("type") != "text"]
        if text:
            new.append({"type": "text", "text": text})
    out = chunk + AIMessageChunk("")  # a copy with every field
    out.content = new
    return out


def _has_more_than_text(chunk: AIMessageChunk) -> bool:
    return bool(
        chunk._tool_call_chunks
        or chunk.usage_metadata
        or chunk._response_metadata
        or not isinstance(chunk.content, str)
    )


class ChatState:
    """``feed`` takes what a chat hook yielded and returns the ``AIMessageChunk`` to hand
    on, or None while all of it is held back (it could start a stop sequence)."""

    __slots__ = ("id", "items", "stop_hit", "stopped", "stops", "text_state")

    def __init__(self, stop: list[str] | None = None) -> None:
        self.text_state = TextState(stop) if stop else None
        self.stops = self.text_state.stops if self.text_state else []
        # plain text chunks are kept as their text: a stream does not keep a thousand
        # objects alive (and the garbage collector busy) until it ends
        self.items: list[str | AIMessageChunk] = []
        self.id: str | None = None
        self.stopped = False
        self.stop_hit = False

    @property
    def text(self) -> str:
        """The text handed on so far."""
        return "".join(c if type(c) is str else c.text for c in self.items)  # type: ignore[union-attr]

    def feed(self, chunk: Any) -> AIMessageChunk | None:
        """Account for a provider chunk; return what to hand on."""
        if type(chunk) is not AIMessageChunk:
            chunk = as_message_chunk(chunk)
        if chunk.id is None:  # every chunk of one answer shares one id, as in LangChain
            chunk.id = self.id or self._new_id()
        elif self.id is None:
            self.id = chunk.id
        if self.text_state is not None:
            return self._feed_with_stops(chunk)
        self._keep(chunk)
        return chunk  # type: ignore[no-any-return]

    def _keep(self, chunk: AIMessageChunk) -> None:
        content = chunk.content
        if (
            type(content) is str
            and chunk._tool_call_chunks is None
            and chunk.usage_metadata is None
            and chunk._response_metadata is None
            and chunk.id == self.id
            and chunk._tool_calls is None
            and chunk.chunk_position is None
            and chunk.name is None
            and chunk._additional_kwargs is None
        ):
            self.items.append(content)
        else:
            self.items.append(chunk)

    def _new_id(self) -> str:
        h = os.urandom(16).hex()  # a random (version 4) UUID, without building a UUID object
        self.id = (
            f"lc_run--{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"
        )
        return self.id

    def _feed_with_stops(self, chunk: AIMessageChunk) -> AIMessageChunk | None:
        state = self.text_state
        assert state is not None
        text = chunk.text
        out = state.feed(GenerationChunk(text))
        kept = out.text if out is not None else ""
        if state.stopped:
            self.stopped = self.stop_hit = True
        if kept != text:
            if not kept and not _has_more_than_text(chunk):
                return None
            chunk = _with_text(chunk, kept)
        self._keep(chunk)
        return chunk

    def flush(self) -> str:
        """At the end of the stream: the held-back text that turned out to be output."""
        if self.text_state is None:
            return ""
        tail = self.text_state.flush()
        if self.text_state.stopped:
            self.stop_hit = True
        return tail

    def message(self) -> AIMessageChunk:
        """The chunks handed on so far, added up."""
        chunks: list[AIMessageChunk] = []
        run: list[str] = []
        for item in self.items:
            if type(item) is str:
                run.append(item)
                continue
            if run:
                chunks.append(AIMessageChunk("".join(run), id=self.id))
                run = []
            chunks.append(item)  # type: ignore[arg-type]
        if run:
            chunks.append(AIMessageChunk("".join(run), id=self.id))
        return add_chunks(chunks)


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
