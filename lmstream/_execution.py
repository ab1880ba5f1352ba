"""Running a step as a run: call-with-config and transform-stream-with-config.

These wrap a step's work in a ``Run`` (start, chunks, exactly one outcome), make the
child config ambient for user functions, and close inner iterators the moment the
consumer stops, so cancellation travels down to the model before it is reported.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from lmstream._accumulate import aggregate
from lmstream._types import RunnableConfig
from lmstream.callbacks import drain_async
from lmstream.config import child_config, ensure_config, use_config
from lmstream.errors import StreamingUnsupportedError
from lmstream.runs import STREAMING_INPUT, Run

if TYPE_CHECKING:
    from lmstream.runnable import Runnable

__all__ = [
    "acall_with_config",
    "aclose",
    "agather",
    "aiter_of",
    "atransform_stream",
    "call_with_config",
    "close",
    "gather",
    "is_cancel",
    "transform_stream",
]

T = TypeVar("T")
_EMPTY: Any = object()
_STOPS = (GeneratorExit, KeyboardInterrupt)


def is_cancel(exc: BaseException) -> bool:
    """Whether ``exc`` means the consumer stopped (not a failure)."""
    if isinstance(exc, _STOPS):
        return True
    # asyncio is imported lazily: when it was never imported, nothing was cancelled by it
    aio = sys.modules.get("asyncio")
    return aio is not None and isinstance(exc, aio.CancelledError)


def close(it: Any) -> None:
    """Close a sync iterator now, if it can be closed."""
    fn = getattr(it, "close", None)
    if fn is not None:
        fn()


async def aclose(it: Any) -> None:
    """Close an async iterator now, if it can be closed."""
    fn = getattr(it, "aclose", None)
    if fn is not None:
        await fn()


def _settle(run: Run, exc: BaseException, partial: Any) -> None:
    if is_cancel(exc):
        run.cancel(partial)
    else:
        run.fail(exc, partial)


async def _asettle(run: Run, exc: BaseException, partial: Any) -> None:
    if is_cancel(exc):
        await run.acancel(partial)
    else:
        await run.afail(exc, partial)


def call_with_config(
    owner: Runnable[Any, Any],
    func: Callable[[Any, Run, RunnableConfig], T],
    input: Any,
    config: RunnableConfig | None,
    *,
    run_type: str = "chain",
) -> T:
    """Run ``func(input, run, child_config)`` as one run of ``owner``."""
    config = ensure_config(config)
    run = Run(config, owner=owner, name=owner.get_name(), run_type=run_type, inputs=input)
    run.start()
    child = child_config(config, run.child())
    try:
        with use_config(child):
            output = func(input, run, child)
    except BaseException as exc:
        _settle(run, exc, None)
        raise
    run.end(output)
    return output


async def acall_with_config(
    owner: Runnable[Any, Any],
    func: Callable[[Any, Run, RunnableConfig], Awaitable[T]],
    input: Any,
    config: RunnableConfig | None,
    *,
    run_type: str = "chain",
) -> T:
    """Await ``func(input, run, child_config)`` as one run of ``owner``."""
    config = ensure_config(config)
    run = Run(config, owner=owner, name=owner.get_name(), run_type=run_type, inputs=input)
    await run.astart()
    child = child_config(config, run.child())
    try:
        with use_config(child):
            output = await func(input, run, child)
    except BaseException as exc:
        await _asettle(run, exc, None)
        raise
    await run.aend(output)
    return output


Transformer = Callable[[Iterator[Any], Run, RunnableConfig], Iterator[Any]]
ATransformer = Callable[[AsyncIterator[Any], Run, RunnableConfig], AsyncIterator[Any]]


def _recording(source: Iterator[Any], seen: list[Any]) -> Iterator[Any]:
    for item in source:
        seen.append(item)
        yield item


async def _arecording(source: AsyncIterator[Any], seen: list[Any]) -> AsyncIterator[Any]:
    async for item in source:
        seen.append(item)
        yield item


async def aiter_of(*items: Any) -> AsyncIterator[Any]:
    """An async iterator over ``items``."""
    for item in items:
        yield item


def _prepend(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    if first is not _EMPTY:
        yield first
    yield from rest


async def _aprepend(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    if first is not _EMPTY:
        yield first
    async for item in rest:
        yield item


def transform_stream(
    owner: Runnable[Any, Any],
    inputs: Iterator[Any],
    transformer: Transformer,
    config: RunnableConfig | None,
    *,
    run_type: str = "chain",
) -> Iterator[Any]:
    """Stream ``transformer`` over ``inputs`` as one run of ``owner``.

    The run starts once the first input chunk exists (so upstream steps start first);
    its input is recorded as it streams by; the input is closed when the step is done.
    """
    config = ensure_config(config)
    inputs = iter(inputs)
    first = next(inputs, _EMPTY)
    run = Run(config, owner=owner, name=owner.get_name(), run_type=run_type, inputs=STREAMING_INPUT)
    run.start()
    listening = run.listening
    seen: list[Any] = []
    outputs: list[Any] = []
    source = _prepend(first, inputs)
    if listening:
        source = _recording(source, seen)
    out = None
    try:
        out = transformer(source, run, child_config(config, run.child()))
        for chunk in out:
            if listening:
                outputs.append(chunk)
                run.chunk(chunk)
            yield chunk
    except BaseException as exc:
        close(out)
        close(inputs)
        run.inputs = aggregate(seen) if seen else run.inputs
        _settle(run, exc, aggregate(outputs))
        raise
    close(out)
    close(inputs)
    run.inputs = aggregate(seen)
    run.end(aggregate(outputs))


async def atransform_stream(
    owner: Runnable[Any, Any],
    inputs: AsyncIterator[Any],
    transformer: ATransformer,
    config: RunnableConfig | None,
    *,
    run_type: str = "chain",
) -> AsyncIterator[Any]:
    """The async twin of ``transform_stream``."""
    config = ensure_config(config)
    first = await anext(inputs, _EMPTY)
    run = Run(config, owner=owner, name=owner.get_name(), run_type=run_type, inputs=STREAMING_INPUT)
    await run.astart()
    listening = run.listening
    seen: list[Any] = []
    outputs: list[Any] = []
    source = _aprepend(first, inputs)
    if listening:
        source = _arecording(source, seen)
    out = None
    try:
        out = transformer(source, run, child_config(config, run.child()))
        async for chunk in out:
            if listening:
                outputs.append(chunk)
                if pending := run.report_chunk(chunk):  # await only async handlers' work
                    await drain_async(pending, "chunk")
            yield chunk
    except BaseException as exc:
        await aclose(out)
        await aclose(inputs)
        run.inputs = aggregate(seen) if seen else run.inputs
        await _asettle(run, exc, aggregate(outputs))
        raise
    await aclose(out)
    await aclose(inputs)
    run.inputs = aggregate(seen)
    await run.aend(aggregate(outputs))


def _too_many(owner: Runnable[Any, Any]) -> StreamingUnsupportedError:
    return StreamingUnsupportedError(
        f"{owner.get_name()} cannot stream its input: it would wait for the whole stream "
        "before producing anything (strict streaming is on)"
    )


def gather(owner: Runnable[Any, Any], inputs: Iterator[Any], strict: bool) -> Any:
    """Read a whole input stream and add it up; ``_EMPTY`` when there was none."""
    chunks: list[Any] = []
    for chunk in inputs:
        chunks.append(chunk)
        if strict and len(chunks) > 1:
            close(inputs)
            raise _too_many(owner)
    return aggregate(chunks) if chunks else _EMPTY


async def agather(owner: Runnable[Any, Any], inputs: AsyncIterator[Any], strict: bool) -> Any:
    """The async twin of ``gather``."""
    chunks: list[Any] = []
    async for chunk in inputs:
        chunks.append(chunk)
        if strict and len(chunks) > 1:
            await aclose(inputs)
            raise _too_many(owner)
    return aggregate(chunks) if chunks else _EMPTY


EMPTY = _EMPTY
