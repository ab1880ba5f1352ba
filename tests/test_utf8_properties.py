"""Incremental UTF-8 decoding of token bytes: any split of the bytes gives the same text,
and no piece of a character (no U+FFFD) is ever handed on."""

from __future__ import annotations

from hypothesis import assume, given
from hypothesis import strategies as st

from lmstream.providers._llamacpp_generate import text_decoder

texts = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(data[last:point])
        last = point
    pieces.append(data[last:])
    return pieces


@given(texts, st.lists(st.integers(min_value=0, max_value=200), max_size=20))
def test_any_split_of_the_bytes_gives_the_same_text(text: str, cuts: list[int]) -> None:
    decode = text_decoder()
    pieces = [decode(piece) for piece in split(text.encode("utf-8"), cuts)]
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces) or "\ufffd" in text


@given(texts.filter(lambda t: any(ord(c) > 127 for c in t)), st.integers(min_value=1, max_value=3))
def test_a_character_cut_off_at_the_end_is_held_back_not_mangled(text: str, drop: int) -> None:
    data = text.encode("utf-8")
    last = text[-1].encode("utf-8")
    assume(len(last) > drop)  # some of the last character is left to hold back
    decode = text_decoder()
    out = decode(data[:-drop])  # generation stopped inside the last character
    assert out == text[:-1]
