"""One generation loop for every kind of model: the per-generation state, and the thin
sync/async loops around it.

A model's ``stream``/``astream``/``invoke``/``ainvoke`` make a ``Generating`` (its run,
stop sequences, what has been handed on so far) and hand it to one of the loops here,
with a function and its arguments that open the provider's chunk stream (or make the
whole result); ``BaseLLM`` keeps only the provider hooks and their fallback chain:

* ``lean``/``alean``: text out, nobody listening, no stop sequences: the leanest loop
  (text chunks only: it reads ``chunk.text`` and ``chunk.generation_info`` directly);
* ``stream``/``astream``: every chunk through ``Generating.feed`` (stop hold-back,
  reporting to the run), then the final chunk that carries ``finish_reason`` and usage;
* ``invoke``/``ainvoke``: one whole generation.

Every stream ends one way: finished, failed (``Generating.cut``, the one place where a
provider's error becomes the typed error the consumer sees, carrying the partial text and
usage), or cancelled (the consumer stopped: the provider's stream is closed at once).
The loops differ only in ``for``/``async for`` and in how they wait for async callback
handlers; everything they share is a method of ``Generating``, with no I/O and no awaits.

The seam for a kind of model is its ``ChunkKind`` (``lmstream._accumulate``), which says
how to read and make its chunks; ``TEXT`` serves text models (``GenerationChunk``). A kind
supplies:

* ``text(chunk)``: the chunk's text, in which stop sequences are looked for;
* ``info(chunk)``: its metadata in ``merge_info``'s shape (``finish_reason``, ``usage``);
* ``with_text(chunk, text, info)``: the chunk carrying other text, when stop hold-back
  cuts or holds part of it (whatever else it carries, such as tool-call pieces, stays);
* ``make(text, info)``: a chunk of text alone (released held-back text, the final chunk);
* ``merge(left, right)``: two chunks added up (``+`` by default);
* optionally ``result(text, info, chunks)``: the run's result (an ``LLMResult`` of the
  text by default; a chat kind adds up the chunks into a message).

A chat model makes ``Generating(its_kind, run, messages, stop, False)`` and uses
``stream``/``astream``/``invoke``/``ainvoke`` with ``as_text=False``: its consumers get
its chunks (``Generating.kept`` holds those handed on, for ``result`` to add up).
``TextGenerating`` is the same object reading text chunks directly, for speed; a kind
may have such a subclass too, as long as ``feed`` keeps its contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, NoReturn, TypeVar

from lmstream._accumulate import ChunkKind, HoldBack
from lmstream._llmcore import final_info, outcome_info, typed_error
from lmstream._stops import matcher
from lmstream._utils import aclose, close, is_cancel
from lmstream.callbacks import Pending, drain, drain_async
from lmstream.chunks import GenerationChunk, Usage, merge_info
from lmstream.runs import Run

__all__ = [
    "Generating",
    "TextGenerating",
    "ainvoke",
    "ainvoke_lean",
    "alean",
    "astream",
    "invoke",
    "invoke_lean",
    "lean",
    "stream",
]

S = TypeVar("S")


class Generating(HoldBack):
    """One generation: stop hold-back and what was handed on (``HoldBack``: the text
    parts and merged metadata), its run, the chunks handed on, usage and outcome.

    The run's owner counts tokens (``count_usage(prompt, text)``) when a backend sends no
    usage. ``as_text``: the consumer gets the chunks' text; ``plain``: the lean loop fits
    (text out, nobody listening, no stop sequences)."""

    __slots__ = (
        "as_text", "kept", "listening", "pending", "plain", "prompt", "run", "source",
    )  # fmt: skip

    def __init__(
        self, kind: ChunkKind[Any], run: Run, prompt: Any, stop: list[str] | None, as_text: bool
    ) -> None:
        # HoldBack's fields are set here, one by one: this runs once per call
        self.stops = stops = [s for s in stop if s] if stop else []
        self.matcher = matcher(tuple(stops)) if stops else None
        self.node, self.stop_at = 0, -1
        self.kind = kind
        self.parts: list[str] = []
        self.info: dict[str, Any] | None = None
        self.held = ""
        self.stopped = False
        self.run = run
        self.listening = listening = run.listening
        self.prompt = prompt
        self.as_text = as_text
        self.plain = as_text and not listening and not stops
        self.kept: list[Any] = []  # the chunks handed on, for a kind whose result adds them up
        self.pending: Pending | None = None  # async handlers' work for the last chunk
        self.source: Any = None

    def opened(self, source: S) -> S:
        """Keep the provider's chunk stream, to close when the loop ends; ``source``."""
        self.source = source
        return source

    def absorb(self, info: dict[str, Any]) -> None:
        """Merge a chunk's metadata into what was handed on (the lean loop)."""
        self.info = merge_info(self.info, info)

    def feed(self, chunk: Any) -> Any:
        """Account for a provider chunk and report it to the run; what the consumer gets
        (``None``: nothing, its text is held back or empty)."""
        out = HoldBack.feed(self, chunk)
        if out is None:
            return None
        self.kept.append(out)
        if self.listening and (pending := self.run.report_chunk(out)):
            self.pending = pending
        if self.as_text:
            return self.kind.text(out) or None
        return out

    def take_pending(self) -> Pending:
        """The async handlers' work for the last chunk, to wait for."""
        pending, self.pending = self.pending, None
        return pending or []

    def _counts(self, info: dict[str, Any] | None, text: str) -> tuple[int, int]:
        if info is not None and isinstance(info.get("usage"), Usage):
            return 0, 0  # the backend's usage stands; nothing is estimated
        return self.run.owner.count_usage(self.prompt, text)  # type: ignore[no-any-return]

    def cut(self, exc: BaseException) -> tuple[BaseException, Any]:
        """(the error to raise, the partial result) for a generation cut short by ``exc``:
        the consumer stopping (the error is ``exc``) or a failure, which becomes a typed
        error carrying the partial text and usage."""
        text, info = self.text, self.info
        reason = "cancelled" if is_cancel(exc) else "error"
        info = outcome_info(info, reason, *self._counts(info, text))
        error = exc if reason == "cancelled" else typed_error(exc, text, info["usage"])
        return error, self.kind.result(text, info, self.kept)

    def settle(self, exc: BaseException) -> NoReturn:
        """Close the provider, report the run cut short, raise what the consumer sees."""
        close(self.source)
        error, partial = self.cut(exc)
        self.run.settle(error, partial)
        _raise(error, exc)

    async def asettle(self, exc: BaseException) -> NoReturn:
        """The async twin of ``settle``."""
        await aclose(self.source)
        error, partial = self.cut(exc)
        await self.run.asettle(error, partial)
        _raise(error, exc)

    def _final(self) -> tuple[dict[str, Any], Any]:
        """(metadata the final chunk adds, the run's result) for a finished generation."""
        text, info = self.text, self.info
        added = final_info(info, *self._counts(info, text))
        if added and "finish_reason" not in added and info is not None:
            # the final chunk repeats the reason (last wins when chunks add up), not usage
            added["finish_reason"] = info["finish_reason"]
        # with nothing to merge into, a copy: the final chunk carries ``added`` itself
        merged = dict(added) if info is None and added else merge_info(info, added)
        return added, self.kind.result(text, merged, self.kept)

    def finish(self) -> tuple[Any, list[Any], Any]:
        """At the end of the stream: (the final chunk to report to the run, or None; what
        the consumer still gets; the run's result, None when nobody will see it)."""
        tail = self.flush()
        added, result = self._final() if self.listening or not self.as_text else ({}, None)
        report, items = None, []  # type: tuple[Any, list[Any]]
        if tail or (added and not self.as_text):  # else no chunk: nobody would see it
            chunk = self.kind.make(tail, added or None)
            if self.listening and tail:
                report = chunk
            if not self.as_text:
                items.append(chunk)
        if self.as_text and (tail or not any(self.parts)):
            items.append(tail)  # an empty completion still gives one (empty) text
        return report, items, result

    def whole(self, chunk: Any) -> Any:
        """The run's result for a whole generation (``invoke``), stop sequences applied."""
        out = HoldBack.feed(self, chunk)
        if out is not None:
            self.kept.append(out)
        self.flush()
        return self._final()[1]


class TextGenerating(Generating):
    """``Generating`` for text chunks, reading them directly: the per-chunk path of text
    models, kept as short as it can be. It keeps no chunks: a text result is its text."""

    __slots__ = ()

    def feed(self, chunk: GenerationChunk) -> Any:
        """Account for a provider chunk and report it to the run; what the consumer gets
        (``None``: nothing, its text is held back or empty)."""
        info = chunk.generation_info
        if info:
            self.info = merge_info(self.info, info)
        if self.stops:
            out = self._feed_with_stops(chunk, info)
            if out is None:
                return None
            chunk = out
        else:
            self.parts.append(chunk.text)
        if self.listening and (pending := self.run.report_chunk(chunk)):
            self.pending = pending
        if self.as_text:
            return chunk.text or None
        return chunk


def _raise(error: BaseException, exc: BaseException) -> NoReturn:
    if error is exc:
        raise exc
    raise error from exc


# -- the loops: sync and async twins around Generating -----------------------------------


def lean(gen: Generating, make: Callable[..., Iterator[Any]], *args: Any) -> Iterator[str]:
    """Text out, nobody listening, no stop sequences: text chunks' text and metadata are
    only kept (read directly: ``as_text`` chunks have ``text`` and ``generation_info``)."""
    try:
        parts, chunks = gen.parts, make(*args)  # parts.append(): CPython's fast list append
        gen.source = chunks
        for chunk in chunks:
            parts.append(text := chunk.text)
            if chunk.generation_info is not None:
                gen.absorb(chunk.generation_info)
            if text:
                yield text
    except BaseException as exc:
        gen.settle(exc)
    close(chunks)
    gen.run.end(None)  # nobody listens: no result to make
    if not any(gen.parts):
        yield ""  # an empty completion still gives one (empty) text


async def alean(
    gen: Generating, make: Callable[..., AsyncIterator[Any]], *args: Any
) -> AsyncIterator[str]:
    """The async twin of ``lean``."""
    try:
        parts, chunks = gen.parts, make(*args)
        gen.source = chunks
        async for chunk in chunks:
            parts.append(text := chunk.text)
            if chunk.generation_info is not None:
                gen.absorb(chunk.generation_info)
            if text:
                yield text
    except BaseException as exc:
        await gen.asettle(exc)
    await aclose(chunks)
    gen.run.end(None)  # nobody listens: the sync end waits for nobody
    if not any(gen.parts):
        yield ""


def stream(gen: Generating, make: Callable[..., Iterator[Any]], *args: Any) -> Iterator[Any]:
    """Every chunk through ``gen.feed``; stops at a stop sequence; then the final chunk."""
    gen.run.start()
    try:
        feed, chunks = gen.feed, gen.opened(make(*args))
        for chunk in chunks:
            item = feed(chunk)
            if gen.pending:
                drain(gen.take_pending(), "chunk")
            if item is not None:
                yield item
            if gen.stopped:
                break
    except BaseException as exc:
        gen.settle(exc)
    yield from _finish(gen)


async def astream(
    gen: Generating, make: Callable[..., AsyncIterator[Any]], *args: Any
) -> AsyncIterator[Any]:
    """The async twin of ``stream``."""
    await gen.run.astart()
    try:
        feed, chunks = gen.feed, gen.opened(make(*args))
        async for chunk in chunks:
            item = feed(chunk)
            if gen.pending:
                await drain_async(gen.take_pending(), "chunk")
            if item is not None:
                yield item
            if gen.stopped:
                break
    except BaseException as exc:
        await gen.asettle(exc)
    async for item in _afinish(gen):
        yield item


def _finish(gen: Generating) -> Iterator[Any]:
    close(gen.source)
    report, items, result = gen.finish()
    try:
        if report is not None:
            gen.run.chunk(report)
        yield from items
    finally:  # the run ends even when the consumer stops at the final chunk
        gen.run.end(result)


async def _afinish(gen: Generating) -> AsyncIterator[Any]:
    await aclose(gen.source)
    report, items, result = gen.finish()
    try:
        if report is not None:
            await gen.run.achunk(report)
        for item in items:
            yield item
    finally:
        await gen.run.aend(result)


def invoke_lean(gen: Generating, make: Callable[..., Any], *args: Any) -> Any:
    """``invoke`` nobody listens to, with no stop sequences: the provider's whole chunk,
    as it is (there is no run result to build: nobody would see it)."""
    try:
        chunk = make(*args)
    except BaseException as exc:
        gen.settle(exc)
    gen.run.end(None)
    return chunk


async def ainvoke_lean(gen: Generating, make: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """The async twin of ``invoke_lean``."""
    try:
        chunk = await make(*args)
    except BaseException as exc:
        await gen.asettle(exc)
    gen.run.end(None)  # nobody listens: the sync end waits for nobody
    return chunk


def invoke(gen: Generating, make: Callable[..., Any], *args: Any) -> Any:
    """One whole generation; the run's result."""
    gen.run.start()
    try:
        chunk = make(*args)
    except BaseException as exc:
        gen.settle(exc)
    result = gen.whole(chunk)
    gen.run.end(result)
    return result


async def ainvoke(gen: Generating, make: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    """The async twin of ``invoke``."""
    await gen.run.astart()
    try:
        chunk = await make(*args)
    except BaseException as exc:
        await gen.asettle(exc)
    result = gen.whole(chunk)
    await gen.run.aend(result)
    return result
