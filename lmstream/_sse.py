"""Server-sent events, both ways, with no I/O: bytes in, events out, and events to bytes.

``SSEDecoder`` follows the WHATWG event-stream parsing rules incrementally: lines end
in CRLF, LF or CR (a CRLF split across two pieces still counts once), a leading BOM is
dropped, lines starting with ``:`` are comments (keep-alives), ``data:`` lines add up
with newlines between them, and a blank line dispatches the event. Any split of the
same bytes gives the same events. Bytes that are not UTF-8, and a line or an event over
the limits it is given, raise ``ProtocolError``.

``encode`` and ``encode_comment`` write frames the decoder reads back unchanged; the
client and the server share this module so that both sides speak one dialect.
"""

from __future__ import annotations

import contextlib
from typing import NamedTuple

from lmstream.errors import InvalidInputError, ProtocolError

__all__ = ["DONE", "SSEDecodeError", "SSEDecoder", "SSEEvent", "encode", "encode_comment"]

_BOM = b"\xef\xbb\xbf"
DONE = b"data: [DONE]\n\n"
"""The frame that ends an OpenAI-style stream."""


class SSEDecodeError(ProtocolError):
    """Bytes that cannot be decoded: not UTF-8, or a line or an event over the decoder's
    limit. ``events`` holds the events completed before them."""

    def __init__(self, message: str, events: list[SSEEvent]) -> None:
        super().__init__(message)
        self.events = events


class SSEEvent(NamedTuple):
    """One dispatched event. ``id`` and ``retry`` are what this event's block set, if any."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Incremental event-stream decoder: ``feed(bytes)`` returns the events completed.

    Its work is linear in the bytes fed, however they are split: a partial line waits in a
    buffer that only grows, and only the new bytes are searched for a line end. What it
    holds is bounded when limits are given: ``max_line`` bytes of one line (the partial
    one included) and ``max_event`` bytes of one event's ``data`` lines, counted as they
    came; past either, ``feed`` raises ``SSEDecodeError`` with the events completed before.
    """

    __slots__ = ("_buf", "_data", "_event", "_id", "_retry", "_size", "_skip_lf", "_started",
                 "last_id", "max_event", "max_line")  # fmt: skip

    def __init__(self, *, max_line: int | None = None, max_event: int | None = None) -> None:
        self._buf = bytearray()
        self._data: list[str] = []
        self._size = 0  # bytes of the pending event's data lines
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self._skip_lf = False
        self._started = False
        self.max_line = max_line
        self.max_event = max_event
        self.last_id = ""
        """The last event id the stream set (it persists across events, as in EventSource)."""

    @property
    def pending(self) -> bool:
        """Whether a partial line or an undispatched event is waiting for more bytes."""
        return bool(self._buf or self._data or self._event or self._id is not None)

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Decode the next piece of the stream; return the events it completed."""
        if self._skip_lf and data:
            # the previous piece ended in CR: an LF now is the second half of a CRLF
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
        if not self._started and data:
            data = self._start(data)
        if not data:
            return []
        # the buffer holds no line end: only the new bytes need searching
        cut = max(data.rfind(b"\n"), data.rfind(b"\r")) if b"\r" in data else data.rfind(b"\n")
        if cut < 0:
            self._buf += data
            if self.max_line is not None and len(self._buf) > self.max_line:
                raise SSEDecodeError(self._too_long(), [])
            return []
        raw = self._buf + data[: cut + 1] if self._buf else data[: cut + 1]
        self._buf = bytearray(data[cut + 1 :])
        self._skip_lf = cut == len(data) - 1 and data[cut] == 0x0D
        if b"\r" in raw:  # CR and LF never occur inside a UTF-8 sequence: normalise first
            raw = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events = self._complete(raw)
        if self.max_line is not None and len(self._buf) > self.max_line:
            raise SSEDecodeError(self._too_long(), events)
        return events

    def _start(self, data: bytes) -> bytes:
        """``data`` without the leading BOM, once enough bytes have come to tell."""
        buf = bytes(self._buf) + data
        if len(buf) < 3 and _BOM.startswith(buf):
            self._buf = bytearray(buf)
            return b""
        self._started = True
        self._buf = bytearray()
        return buf[3:] if buf.startswith(_BOM) else buf

    def _complete(self, raw: bytes | bytearray) -> list[SSEEvent]:
        """The events of the lines in ``raw`` (each ended by LF), or the error they hold."""
        bad = None
        if self.max_line is not None and len(raw) > self.max_line + 1:
            lines = raw.split(b"\n")
            long = next((i for i, line in enumerate(lines) if len(line) > self.max_line), -1)
            if long >= 0:
                bad, raw = self._too_long(), b"".join(line + b"\n" for line in lines[:long])
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            good = raw[: raw.rfind(b"\n", 0, exc.start) + 1].decode("utf-8")
            events = self._lines(good.split("\n")[:-1])
            raise SSEDecodeError(f"the event stream is not UTF-8: {exc}", events) from None
        events = self._lines(text.split("\n")[:-1])
        if bad is not None:
            raise SSEDecodeError(bad, events)
        return events

    def _too_long(self) -> str:
        return f"a line of the event stream is longer than {self.max_line} bytes"

    def _lines(self, lines: list[str]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(self._dispatch())
                else:  # a block without data dispatches nothing (but its id stays)
                    self._event, self._id, self._retry = "", None, None
            elif line[0] != ":":
                self._field(line, events)
        return events

    def _field(self, line: str, events: list[SSEEvent]) -> None:
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":  # counted as it came, whole lines: one bounds lines and bytes
            self._size += 1 + (len(line) if line.isascii() else len(line.encode()))
            if self.max_event is not None and self._size > self.max_event:
                raise SSEDecodeError(
                    f"an event of the stream has more than {self.max_event} bytes of data lines",
                    events,
                )
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = self.last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            with contextlib.suppress(ValueError):  # more digits than int() reads: ignored
                self._retry = int(value)

    def _dispatch(self) -> SSEEvent:
        event = SSEEvent("\n".join(self._data), self._event or "message", self._id, self._retry)
        self._data, self._size = [], 0
        self._event, self._id, self._retry = "", None, None
        return event


def _check_line(name: str, value: str) -> None:
    if "\n" in value or "\r" in value or (name == "id" and "\0" in value):
        raise InvalidInputError(
            f"an SSE {name} cannot contain a line break{' or NUL' * (name == 'id')}"
        )


def encode(
    data: str, *, event: str | None = None, id: str | None = None, retry: int | None = None
) -> bytes:
    """One event as bytes; multi-line ``data`` becomes several ``data:`` lines."""
    head = []
    if event is not None and event != "message":
        _check_line("event", event)
        head.append(f"event: {event}\n")
    if id is not None:
        _check_line("id", id)
        head.append(f"id: {id}\n")
    if retry is not None:
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise InvalidInputError(f"an SSE retry must be an int >= 0, not {retry!r}")
        head.append(f"retry: {retry}\n")
    if "\r" in data:
        data = data.replace("\r\n", "\n").replace("\r", "\n")
    body = "data: " + data.replace("\n", "\ndata: ") + "\n\n"
    return ("".join(head) + body).encode() if head else body.encode()


def encode_comment(text: str = "") -> bytes:
    """A comment frame (a keep-alive the decoder skips); each line gets its own ``:``."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "".join(f": {line}\n" if line else ":\n" for line in lines).encode() + b"\n"
