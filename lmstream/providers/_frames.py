"""Reading a streamed answer, pure and shared by the HTTP providers' wire formats: bytes in,
chunks out, within the call's size limits.

A subclass reads one event at a time (``_event``: a chunk, nothing, or a typed error; it
sets ``done`` at the stream's end marker) and says how a finished stream ends (``_last``).
The base class feeds the event-stream decoder, counts the body's bytes against its limit,
and orders the outcome of one read: when the bytes hold chunks and then something wrong
(an error event, a malformed frame, bytes that are not UTF-8, a limit passed), the chunks
come first and ``end`` raises the error, so no text that arrived is lost.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from lmstream._sse import SSEDecodeError, SSEDecoder, SSEEvent
from lmstream.errors import ProtocolError
from lmstream.providers._http import DEFAULT_SIZES, SizeLimits, too_large

__all__ = ["FrameReader"]

C = TypeVar("C")


class FrameReader(Generic[C]):
    """What a streamed answer has said so far; feed it the body's bytes."""

    __slots__ = ("_error", "_left", "decoder", "done", "limits")

    def __init__(self, limits: SizeLimits = DEFAULT_SIZES) -> None:
        self.limits = limits
        self.decoder = SSEDecoder(max_line=limits.event, max_event=limits.event)
        self.done = False
        self._left = limits.body
        self._error: Exception | None = None

    def feed(self, data: bytes) -> list[C]:
        """The chunks these bytes complete; stops at the end marker (``done``)."""
        out: list[C] = []
        data, over = self._budget(data)
        error: Exception | None = over
        try:
            try:
                events = self.decoder.feed(data)
            except SSEDecodeError as exc:  # the events before the bad bytes still count
                error, events = ProtocolError(str(exc)), exc.events
            for event in events:
                chunk = self._event(event)
                if chunk is not None:
                    out.append(chunk)
                if self.done:
                    return out  # whatever follows the end is not ours to judge
        except Exception as exc:
            error = exc
        if error is not None:
            if not out:
                raise error
            self._error, self.done = error, True
        return out

    def _budget(self, data: bytes) -> tuple[bytes, ProtocolError | None]:
        """``data`` cut to what the body limit leaves, and the error if it was cut."""
        left = self._left
        if left is None:
            return data, None
        if len(data) <= left:
            self._left = left - len(data)
            return data, None
        self._left = 0
        return data[:left], too_large(self.limits.body)

    def end(self) -> C:
        """The last chunk, or the error that ended the stream early."""
        if self._error is not None:
            raise self._error
        return self._last()

    def _event(self, event: SSEEvent) -> C | None:
        raise NotImplementedError

    def _last(self) -> C:
        raise NotImplementedError
