"""Pure accumulation: adding up streamed chunks, and the text state of an LLM stream
(stop sequences with hold-back, metadata merging, the final chunk). No I/O, no awaits:
the sync and async shells share these objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lmstream._jsonstream import PartialDict, PartialList
from lmstream.chunks import GenerationChunk, merge_info

__all__ = ["AddableDict", "TextState", "aggregate"]


class AddableDict(dict[str, Any]):
    """A dict that adds up key by key: ``{"a": "x"} + {"a": "y"} == {"a": "xy"}``."""

    def __add__(self, other: dict[str, Any]) -> AddableDict:
        out = AddableDict(self)
        for key, value in other.items():
            old = out.get(key)
            if old is None:
                out[key] = value
            elif value is not None:
                try:
                    out[key] = old + value
                except TypeError:
                    out[key] = value
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


def aggregate(chunks: Sequence[Any]) -> Any:
    """Add up streamed chunks in linear time (strings joined, dicts merged by key)."""
    if not chunks:
        return None
    if len(chunks) == 1 or isinstance(chunks[0], (PartialDict, PartialList)):
        return chunks[-1]  # snapshots of a value that fills in: the last one is the value
    if all(type(c) is str for c in chunks):
        return "".join(chunks)
    if all(isinstance(c, dict) for c in chunks):
        keys: dict[str, list[Any]] = {}
        for chunk in chunks:
            for key, value in chunk.items():
                if value is not None:
                    keys.setdefault(key, []).append(value)
        return AddableDict((k, aggregate(v)) for k, v in keys.items())
    if all(type(c) is GenerationChunk for c in chunks):
        info: dict[str, Any] | None = None
        for chunk in chunks:
            if chunk.generation_info:
                info = merge_info(info, chunk.generation_info)
        return GenerationChunk("".join(c.text for c in chunks), info)
    return _fold(chunks)


def _first_match(text: str, stops: Sequence[str]) -> int:
    """Where the first complete stop sequence in ``text`` starts, or -1."""
    return min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)


def _held_suffix(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of ``text`` that could start a stop sequence."""
    best = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:size]):
                best = size
                break
    return best


class TextState:
    """What an LLM stream has produced so far.

    ``feed`` takes a provider chunk and returns the chunk to hand on (or ``None`` when
    all of its text is held back because it could be the start of a stop sequence).
    With stop sequences, no piece of a stop sequence is ever handed on and text is cut
    exactly before the first one; ``stopped`` then tells the shell to close the provider.
    """

    __slots__ = ("held", "info", "parts", "stopped", "stops")

    def __init__(self, stop: Sequence[str] | None = None) -> None:
        self.stops = [s for s in stop if s] if stop else []
        self.parts: list[str] = []
        self.info: dict[str, Any] | None = None
        self.held = ""
        self.stopped = False

    @property
    def text(self) -> str:
        """The text handed on so far."""
        return "".join(self.parts)

    def feed(self, chunk: GenerationChunk) -> GenerationChunk | None:
        """Account for a provider chunk; return what to hand on."""
        if chunk.generation_info:
            self.info = merge_info(self.info, chunk.generation_info)
        if not self.stops:
            self.parts.append(chunk.text)
            return chunk
        return self._feed_with_stops(chunk)

    def _feed_with_stops(self, chunk: GenerationChunk) -> GenerationChunk | None:
        buf = self.held + chunk.text
        cut = _first_match(buf, self.stops)
        keep = _held_suffix(buf, self.stops)
        pending = len(buf) - keep if keep else len(buf)
        if 0 <= cut <= pending:
            # no stop sequence that starts earlier can still complete: cut here
            self.stopped = True
            self.held = ""
            info = merge_info(chunk.generation_info, {"finish_reason": "stop"})
            self.info = merge_info(self.info, info)
            return self._emit(buf[:cut], info)
        # hold back from the earliest place a stop sequence may start (a complete match
        # further on stays held until the earlier candidate completes or dies)
        hold = min(pending, cut) if cut >= 0 else pending
        self.held = buf[hold:]
        out = buf[:hold]
        if not out and not chunk.generation_info:
            return None
        return self._emit(out, chunk.generation_info)

    def _emit(self, text: str, info: dict[str, Any] | None) -> GenerationChunk:
        self.parts.append(text)
        return GenerationChunk(text, info)

    def flush(self) -> str:
        """At the end of the stream: the held-back text that turned out to be output
        (up to a stop sequence it contains)."""
        held, self.held = self.held, ""
        cut = _first_match(held, self.stops) if held else -1
        if cut >= 0:
            held = held[:cut]
            self.stopped = True
            self.info = merge_info(self.info, {"finish_reason": "stop"})
        if held:
            self.parts.append(held)
        return held
