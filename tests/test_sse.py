"""The SSE decoder and encoder: the event-stream rules, any split of the bytes giving the
same events, arbitrary bytes giving events or a ``ProtocolError``, and round trips."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lmstream._sse import DONE, SSEDecodeError, SSEDecoder, SSEEvent, encode, encode_comment
from lmstream.errors import InvalidInputError, ProtocolError


def decode(*pieces: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    return [event for piece in pieces for event in decoder.feed(piece)]


def reference(data: bytes) -> list[SSEEvent]:
    """The event-stream parsing rules, written plainly: whole input, one line at a time."""
    text = data.decode("utf-8").removeprefix("\ufeff")
    lines = re.split(r"\r\n|\r|\n", text)[:-1]  # the last piece has no line end yet
    events, buf, kind, ident, retry = [], [], "", None, None
    for line in lines:
        if line == "":
            if buf:
                events.append(SSEEvent("\n".join(buf), kind or "message", ident, retry))
            buf, kind, ident, retry = [], "", None, None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            buf.append(value)
        elif name == "event":
            kind = value
        elif name == "id" and "\0" not in value:
            ident = value
        elif name == "retry" and value.isascii() and value.isdigit():
            retry = int(value)
    return events


def test_the_basic_rules() -> None:
    raw = (
        b"\xef\xbb\xbf: comment\n\nevent: add\nid: 7\nretry: 30\ndata: one\ndata:two\ndata\n\n"
        b"data:  spaced\r\n\r\nid\nbogus: 1\ndata: x\rretry: no\r\rdata: never dispatched"
    )
    assert decode(raw) == [
        SSEEvent("one\ntwo\n", "add", "7", 30),
        SSEEvent(" spaced"),
        SSEEvent("x", id=""),
    ]


def test_a_block_without_data_dispatches_nothing_but_keeps_its_id() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: x\nid: 5\n\ndata: y\n\n") == [SSEEvent("y")]
    assert decoder.last_id == "5"


def test_crlf_split_between_pieces_counts_once() -> None:
    assert decode(b"data: a\r", b"\n", b"\r", b"\ndata: b\r\n\r\n") == [
        SSEEvent("a"),
        SSEEvent("b"),
    ]


def test_cr_ended_events_dispatch_without_waiting_for_more() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [SSEEvent("a")]


def test_pending_tells_a_cut_event() -> None:
    decoder = SSEDecoder()
    decoder.feed(b"data: a\n")
    assert decoder.pending
    decoder.feed(b"\n")
    assert not decoder.pending


def test_bytes_that_are_not_utf8_raise_after_the_events_before_them() -> None:
    with pytest.raises(ProtocolError) as info:
        decode(b"data: a\n\ndata: \xff\n\n")
    assert info.value.events == [SSEEvent("a")]  # type: ignore[attr-defined]


def test_a_split_utf8_character_is_fine() -> None:
    raw = "data: 🥂é\n\n".encode()
    for cut in range(len(raw) + 1):
        assert decode(raw[:cut], raw[cut:]) == [SSEEvent("🥂é")]


def test_encoding() -> None:
    assert encode("a\nb\r\nc", event="e", id="1", retry=5) == (
        b"event: e\nid: 1\nretry: 5\ndata: a\ndata: b\ndata: c\n\n"
    )
    assert encode("x", event="message") == b"data: x\n\n"
    assert encode_comment() == b":\n\n"
    assert encode_comment("a\nb") == b": a\n: b\n\n"
    assert decode(encode_comment("keep-alive"), DONE) == [SSEEvent("[DONE]")]


@pytest.mark.parametrize(
    "kwargs", [{"event": "a\nb"}, {"id": "1\r"}, {"id": "a\0"}, {"retry": -1}, {"retry": True}]
)
def test_encoding_rejects_what_cannot_be_framed(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        encode("x", **kwargs)  # type: ignore[arg-type]


# -- properties ------------------------------------------------------------------------

_names = st.sampled_from(["data", "event", "id", "retry", "", "x"])
_values = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"))
_line = st.one_of(
    st.builds(lambda n, v: f"{n}:{v}", _names, _values),
    st.builds(lambda n, v: f"{n}: {v}", _names, _values),
    st.builds(lambda v: f":{v}", _values),
    _names,
    st.just(""),
    st.just("retry: 42"),
)
_end = st.sampled_from(["\n", "\r", "\r\n"])
_streams = st.builds(
    lambda bom, lines: ("\ufeff" if bom else "") + "".join(a + b for a, b in lines),
    st.booleans(),
    st.lists(st.tuples(_line, _end), max_size=30),
).map(lambda s: s.encode())


@given(_streams, st.lists(st.integers(0, 400), max_size=8))
def test_any_split_gives_the_events_the_rules_give(data: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    expected = reference(data)
    assert decode(data) == expected
    assert decode(*pieces) == expected


@given(_streams)
def test_byte_by_byte_gives_the_same_events(data: bytes) -> None:
    assert decode(*(data[i : i + 1] for i in range(len(data)))) == reference(data)


@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=6))
def test_arbitrary_bytes_give_events_or_a_protocol_error(data: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(data)) for c in cuts})
    decoder = SSEDecoder()
    try:
        for a, b in zip([0, *points], [*points, len(data)], strict=True):
            for event in decoder.feed(data[a:b]):
                assert isinstance(event, SSEEvent)
    except ProtocolError:
        pass


def _limited(pieces: list[bytes], limit: int) -> tuple[list[SSEEvent], str | None]:
    """The events a decoder with limits gives for ``pieces``, and the error it stopped at."""
    decoder, events = SSEDecoder(max_line=limit, max_event=2 * limit), []
    try:
        for piece in pieces:
            events += decoder.feed(piece)
    except SSEDecodeError as exc:
        return events + exc.events, str(exc)
    return events, None


@given(_streams, st.integers(1, 12), st.lists(st.integers(0, 400), max_size=8))
def test_limits_stop_at_the_same_place_whatever_the_split(
    data: bytes, limit: int, cuts: list[int]
) -> None:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    whole = _limited([data], limit)
    assert _limited(pieces, limit) == whole
    assert _limited([data[i : i + 1] for i in range(len(data))], limit) == whole
    events, error = whole
    assert events == reference(data)[: len(events)]  # what comes before the limit is right
    if error is None:
        assert events == reference(data)


def test_a_line_past_the_limit_fails_before_it_ends() -> None:
    decoder = SSEDecoder(max_line=10)
    assert decoder.feed(b"data: a\n\ndata: 1234") == [SSEEvent("a")]
    with pytest.raises(SSEDecodeError, match="longer than 10 bytes") as info:
        decoder.feed(b"56789")  # 11 bytes, and no line end yet
    assert info.value.events == []


_data = st.text(st.characters(blacklist_categories=("Cs",)))
_label = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\0"), min_size=1
)


@given(
    st.lists(
        st.tuples(_data, st.none() | _label, st.none() | _label, st.none() | st.integers(0, 10**9)),
        max_size=10,
    )
)
def test_what_is_encoded_decodes_back(events: list[tuple[str, Any, Any, Any]]) -> None:
    raw = b"".join(encode(d, event=e, id=i, retry=r) for d, e, i, r in events)
    norm = [d.replace("\r\n", "\n").replace("\r", "\n") for d, _, _, _ in events]
    assert decode(raw) == [
        SSEEvent(n, e or "message", i, r) for n, (_, e, i, r) in zip(norm, events, strict=True)
    ]
