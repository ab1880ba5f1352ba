"""Server-sent events, both ways, with no I/O: bytes in, events out, and events to bytes.

``SSEDecoder`` follows the WHATWG event-stream parsing rules incrementally: lines end
in CRLF, LF or CR (a CRLF split across two pieces still counts once), a leading BOM is
dropped, lines starting with ``:`` are comments (keep-alives), ``data:`` lines add up
with newlines between them, and a blank line dispatches the event. Any split of the
same bytes gives the same events. Bytes that are not UTF-8 raise ``ProtocolError``.

``encode`` and ``encode_comment`` write frames the decoder reads back unchanged; the
client and the server share this module so that both sides speak one dialect.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmstream.errors import InvalidInputError, ProtocolError

__all__ = ["DONE", "SSEDecodeError", "SSEDecoder", "SSEEvent", "encode", "encode_comment"]

_BOM = b"\xef\xbb\xbf"
DONE = b"data: [DONE]\n\n"
"""The frame that ends an OpenAI-style stream."""


class SSEDecodeError(ProtocolError):
    """Bytes that are not UTF-8; ``events`` holds the events completed before them."""

    def __init__(self, message: str, events: list[SSEEvent]) -> None:
        super().__init__(message)
        self.events = events


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event. ``id`` and ``retry`` are what this event's block set, if any."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEDecoder:
    """Incremental event-stream decoder: ``feed(bytes)`` returns the events completed."""

    __slots__ = ("_buf", "_data", "_event", "_id", "_retry", "_skip_lf", "_started", "last_id")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None
        self._skip_lf = False
        self._started = False
        self.last_id = ""
        """The last event id the stream set (it persists across events, as in EventSource)."""

    @property
    def pending(self) -> bool:
        """Whether a partial line or an undispatched event is waiting for more bytes."""
        return bool(self._buf or self._data or self._event or self._id is not None)

    def feed(self, data: bytes) -> list[SSEEvent]:
        """Decode the next piece of the stream; return the events it completed."""
        if not data:
            return []
        if self._skip_lf:
            # the previous piece ended in CR: an LF now is the second half of a CRLF
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
        buf = self._buf + data if self._buf else data
        if not self._started:
            if len(buf) < 3 and _BOM.startswith(buf):
                self._buf = buf
                return []
            self._started = True
            if buf.startswith(_BOM):
                buf = buf[3:]
        if b"\r" in buf:
            cut = max(buf.rfind(b"\n"), buf.rfind(b"\r"))
            if cut == len(buf) - 1 and buf[cut] == 0x0D:
                self._skip_lf = True
            # CR and LF never occur inside a UTF-8 sequence: normalise before decoding
            raw = buf[: cut + 1].replace(b"\r\n", b"\n").replace(b"\r", b"\n")[:-1]
        else:
            cut = buf.rfind(b"\n")
            raw = buf[:cut]
        if cut < 0:
            self._buf = buf
            return []
        self._buf = buf[cut + 1 :]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            good = raw.rfind(b"\n", 0, exc.start)
            events = self._lines(raw[:good].decode("utf-8").split("\n")) if good >= 0 else []
            raise SSEDecodeError(f"the event stream is not UTF-8: {exc}", events) from None
        return self._lines(text.split("\n"))

    def _lines(self, lines: list[str]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(self._dispatch())
                else:  # a block without data dispatches nothing (but its id stays)
                    self._event, self._id, self._retry = "", None, None
            elif line[0] != ":":
                self._field(line)
        return events

    def _field(self, line: str) -> None:
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._id = self.last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)

    def _dispatch(self) -> SSEEvent:
        event = SSEEvent("\n".join(self._data), self._event or "message", self._id, self._retry)
        self._data = []
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
