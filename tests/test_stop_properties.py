"""Properties of stop-sequence hold-back: whatever the chunking, the output is the text cut
before the first stop sequence, and nothing of a stop sequence reaches the consumer."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lmstream._accumulate import TextState
from lmstream.chunks import GenerationChunk

ALPHABET = "abS\n"
texts = st.text(alphabet=ALPHABET, max_size=40)
stops = st.lists(st.text(alphabet=ALPHABET, min_size=1, max_size=4), min_size=1, max_size=3)


def chunked(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points:
        pieces.append(text[last:point])
        last = point
    pieces.append(text[last:])
    return pieces


def reference(text: str, stop: list[str]) -> str:
    found = [i for i in (text.find(s) for s in stop) if i >= 0]
    return text[: min(found)] if found else text


def run(pieces: list[str], stop: list[str]) -> tuple[list[str], bool]:
    state = TextState(stop)
    emitted = []
    for piece in pieces:
        out = state.feed(GenerationChunk(piece))
        if out is not None and out.text:
            emitted.append(out.text)
        if state.stopped:
            break
    tail = state.flush()
    if tail:
        emitted.append(tail)
    return emitted, state.stopped


@given(texts, stops, st.lists(st.integers(min_value=0, max_value=60), max_size=12))
def test_output_is_the_reference_cut_whatever_the_chunking(
    text: str, stop: list[str], cuts: list[int]
) -> None:
    emitted, stopped = run(chunked(text, cuts), stop)
    assert "".join(emitted) == reference(text, stop)
    assert stopped == any(s in text for s in stop)


@given(texts, stops, st.lists(st.integers(min_value=0, max_value=60), max_size=12))
def test_nothing_of_the_matched_stop_sequence_is_ever_emitted(
    text: str, stop: list[str], cuts: list[int]
) -> None:
    emitted, _ = run(chunked(text, cuts), stop)
    so_far = ""
    for piece in emitted:
        so_far += piece
        assert not any(s in so_far for s in stop)  # never a whole stop sequence
        assert text.startswith(so_far)  # and never anything but the text, in order


def test_usage_on_the_chunk_that_holds_the_stop_sequence_counts_once(flavour: str) -> None:
    from collections.abc import AsyncIterator, Iterator
    from typing import Any

    from helpers import chunks_of

    from lmstream import LLM, BaseCallbackHandler, GenerationChunk, Usage

    class Tail(LLM):
        def _call(self, prompt: str, stop: Any = None, **kw: Any) -> str:
            return "ab STOP cd"

        def _stream(self, prompt: str, stop: Any = None, **kw: Any) -> Iterator[GenerationChunk]:
            yield GenerationChunk("ab")
            yield GenerationChunk(" STOP cd", {"usage": Usage.of(3, 4)})

        async def _astream(
            self, prompt: str, stop: Any = None, **kw: Any
        ) -> AsyncIterator[GenerationChunk]:
            for chunk in self._stream(prompt, stop):
                yield chunk

    ends: list[Any] = []

    class Ends(BaseCallbackHandler):
        def on_llm_end(self, response: Any, **kwargs: Any) -> None:
            ends.append(response.generations[0][0].generation_info)

    chunks = chunks_of(Tail(), flavour, "hi", stop=["STOP"], config={"callbacks": [Ends()]})
    assert ends == [{"usage": Usage.of(3, 4), "finish_reason": "stop"}]  # the run's result too
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    assert total.text == "ab "
    assert total.generation_info["usage"] == Usage.of(3, 4)
    assert total.generation_info["finish_reason"] == "stop"
