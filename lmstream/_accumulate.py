"""Pure accumulation: adding up streamed chunks, how a kind of model's chunks are read
and made (``ChunkKind``), and the text state of a stream (stop sequences with hold-back,
metadata merging). No I/O, no awaits: the sync and async shells share these objects."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Generic, TypeVar

from lmstream._jsonstream import PartialDict, PartialList
from lmstream._stops import matcher
from lmstream.chunks import Generation, GenerationChunk, LLMResult, merge_info
from lmstream.messages import AIMessageChunk, add_chunks

__all__ = [
    "TEXT",
    "AddableDict",
    "ChunkKind",
    "HoldBack",
    "TextChunks",
    "TextState",
    "aggregate",
]

C = TypeVar("C")


class AddableDict(dict[str, Any]):
    """A dict that adds up key by key: ``{"a": "x"} + {"a": "y"} == {"a": "xy"}``.

    Only these add up while streaming; a plain ``dict`` chunk replaces the one before it.
    Values of one key that cannot be added raise ``TypeError``, as in the reference.
    """

    def __add__(self, other: dict[str, Any]) -> AddableDict:
        out = AddableDict(self)
        for key, value in other.items():
            old = out.get(key)
            if old is None:
                out[key] = value
            elif value is not None:
                try:
                    out[key] = old + value
                except TypeError as exc:
                    raise TypeError(
                        f"Cannot add incompatible types for key {key!r}: "
                        f"{type(old).__name__!r} and {type(value).__name__!r}."
                    ) from exc
        return out

    def __radd__(self, other: dict[str, Any]) -> AddableDict:
        return AddableDict(other) + self


def _fold(chunks: Sequence[Any]) -> Any:
    total = chunks[0]
    for chunk in chunks[1:]:
        try:
            total = total + chunk
        except TypeError:  # chunks that don't add: the final output is the last one
            total = chunk
    return total


def _sum(chunks: Sequence[Any]) -> Any:
    """``chunks[0] + chunks[1] + ...`` in linear time; ``TypeError`` where two don't add."""
    if len(chunks) == 1:
        return chunks[0]
    if all(type(c) is str for c in chunks):
        return "".join(chunks)
    if all(isinstance(c, AddableDict) for c in chunks):
        keys: dict[str, list[Any]] = {}
        for chunk in chunks:
            for key, value in chunk.items():
                values = keys.setdefault(key, [])
                if value is not None:
                    values.append(value)
        return AddableDict((k, _sum(v) if v else None) for k, v in keys.items())
    if all(type(c) is GenerationChunk for c in chunks):
        return TEXT.join(chunks)
    if all(type(c) is AIMessageChunk for c in chunks):
        return add_chunks(list(chunks))  # text joined once, not copied pair by pair
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total


def aggregate(chunks: Sequence[Any]) -> Any:
    """Add up streamed chunks in linear time (strings joined, ``AddableDict``s merged by
    key); from a chunk that does not add to the total on, the total restarts from it."""
    if not chunks:
        return None
    if isinstance(chunks[0], (PartialDict, PartialList)):
        return chunks[-1]  # snapshots of a value that fills in: the last one is the value
    try:
        return _sum(chunks)
    except TypeError:
        return _fold(chunks)


class ChunkKind(Generic[C]):
    """How one kind of model's chunks are read and made: all the generation loop and stop
    hold-back need to know about a chunk type. Text models use ``TEXT``; a chat model
    gives its message chunks a kind of their own (see ``lmstream._generation``)."""

    def text(self, chunk: C) -> str:
        """The chunk's text: what stop sequences are looked for in."""
        raise NotImplementedError

    def info(self, chunk: C) -> dict[str, Any] | None:
        """The chunk's metadata in ``merge_info``'s shape (``finish_reason``, ``usage``)."""
        raise NotImplementedError

    def with_text(self, chunk: C, text: str, info: dict[str, Any] | None) -> C:
        """``chunk`` with its text replaced by ``text`` and its metadata by ``info`` (stop
        hold-back cut or held part of it); all else it carries is kept."""
        raise NotImplementedError

    def make(self, text: str, info: dict[str, Any] | None) -> C:
        """A chunk of text alone: held-back text released at the end, the final chunk."""
        raise NotImplementedError

    def merge(self, left: C, right: C) -> C:
        """Two chunks added up."""
        return left + right  # type: ignore[no-any-return,operator]

    # -- derived from the above; a kind may override them to go faster ---------------

    def bare(self, chunk: C) -> bool:
        """Whether ``chunk`` carries nothing but its text (held back whole, it is dropped)."""
        return not self.info(chunk)

    def merged_info(self, chunks: Iterable[C]) -> dict[str, Any] | None:
        """The metadata of ``chunks``, merged."""
        info = None
        for chunk in chunks:
            if extra := self.info(chunk):
                info = merge_info(info, extra)
        return info

    def join(self, chunks: Iterable[C]) -> C:
        """``chunks`` added up into one (an empty stream: an empty chunk)."""
        total: C | None = None
        for chunk in chunks:
            total = chunk if total is None else self.merge(total, chunk)
        return self.make("", None) if total is None else total

    def result(self, text: str, info: dict[str, Any] | None, chunks: list[C]) -> Any:
        """The run's result for callbacks and events: ``text`` with ``info``; ``chunks``
        are those handed on (a kind whose result is more than text adds them up)."""
        return LLMResult([[Generation(text, info)]])


class TextChunks(ChunkKind[GenerationChunk]):
    """The chunks of text models: ``GenerationChunk``."""

    def text(self, chunk: GenerationChunk) -> str:
        """``chunk.text``."""
        return chunk.text

    def info(self, chunk: GenerationChunk) -> dict[str, Any] | None:
        """``chunk.generation_info``."""
        return chunk.generation_info

    def with_text(
        self, chunk: GenerationChunk, text: str, info: dict[str, Any] | None
    ) -> GenerationChunk:
        """A new chunk: a text chunk carries nothing else."""
        return GenerationChunk(text, info)

    def make(self, text: str, info: dict[str, Any] | None) -> GenerationChunk:
        """``GenerationChunk(text, info)``."""
        return GenerationChunk(text, info)

    def join(self, chunks: Iterable[GenerationChunk]) -> GenerationChunk:
        """One chunk with all the text and the merged metadata, in linear time."""
        parts: list[str] = []
        info = None
        for chunk in chunks:  # one pass: ``invoke`` of a streaming provider runs this
            parts.append(chunk.text)
            if chunk.generation_info:
                info = merge_info(info, chunk.generation_info)
        return GenerationChunk("".join(parts), info)


TEXT = TextChunks()
"""The kind of text models' chunks."""


class HoldBack:
    """What a stream of one ``ChunkKind`` has produced so far (chunks are typed ``Any``
    here: a generic class would cost every ``import lmstream`` for no run-time gain).

    ``feed`` takes a provider chunk and returns the chunk to hand on (or ``None`` when
    all of its text is held back because it could be the start of a stop sequence).
    With stop sequences, no piece of a stop sequence is ever handed on and text is cut
    exactly before the first one; ``stopped`` then tells the shell to close the provider.
    """

    __slots__ = ("held", "info", "kind", "matcher", "node", "parts", "stop_at", "stopped", "stops")

    def __init__(
        self,
        stop: Sequence[str] | None = None,
        kind: ChunkKind[Any] = TEXT,
    ) -> None:
        self.stops = [s for s in stop if s] if stop else []
        self.matcher = matcher(tuple(self.stops)) if self.stops else None
        self.node = 0  # the matcher's state: ``held`` is the text it stands for
        self.stop_at = -1  # where a complete stop sequence inside ``held`` starts, or -1
        self.kind = kind
        self.parts: list[str] = []
        self.info: dict[str, Any] | None = None
        self.held = ""
        self.stopped = False

    @property
    def text(self) -> str:
        """The text handed on so far."""
        return "".join(self.parts)

    def feed(self, chunk: Any) -> Any:
        """Account for a provider chunk; return what to hand on."""
        info = self.kind.info(chunk)
        if info:
            self.info = merge_info(self.info, info)
        if not self.stops:
            self.parts.append(self.kind.text(chunk))
            return chunk
        return self._feed_with_stops(chunk, info)

    def _feed_with_stops(self, chunk: Any, info: dict[str, Any] | None) -> Any:
        # the work is linear in the new text alone: the matcher resumes from ``held``
        assert self.matcher is not None
        new = self.kind.text(chunk)
        buf = self.held + new
        self.node, first = self.matcher.advance(self.node, new)
        cut = self.stop_at
        if first is not None and (cut < 0 or len(self.held) + first < cut):
            cut = len(self.held) + first
        pending = len(buf) - self.matcher.depth[self.node]
        if 0 <= cut <= pending:
            # no stop sequence that starts earlier can still complete: cut here
            self.stopped = True
            self.held = ""
            info = merge_info(info, {"finish_reason": "stop"})
            # the chunk's own metadata is in ``self.info`` already (``feed``): add only the reason
            self.info = merge_info(self.info, {"finish_reason": "stop"})
            return self._emit(chunk, buf[:cut], info)
        # hold back from the earliest place a stop sequence may start (a complete match
        # further on stays held until the earlier candidate completes or dies)
        self.held = buf[pending:]
        self.stop_at = cut - pending if cut >= 0 else -1
        out = buf[:pending]
        if not out and self.kind.bare(chunk):
            return None
        return self._emit(chunk, out, info)

    def _emit(self, chunk: Any, text: str, info: dict[str, Any] | None) -> Any:
        self.parts.append(text)
        return self.kind.with_text(chunk, text, info)

    def flush(self) -> str:
        """At the end of the stream: the held-back text that turned out to be output
        (up to a stop sequence it contains)."""
        held, self.held = self.held, ""
        cut, self.stop_at, self.node = self.stop_at, -1, 0
        if cut >= 0:
            held = held[:cut]
            self.stopped = True
            self.info = merge_info(self.info, {"finish_reason": "stop"})
        if held:
            self.parts.append(held)
        return held


class TextState(HoldBack):
    """``HoldBack`` for text chunks."""

    __slots__ = ()

    def __init__(self, stop: Sequence[str] | None = None) -> None:
        super().__init__(stop, TEXT)
