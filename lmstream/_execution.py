"""Running a step as a run: call-with-config and transform-stream-with-config.

These wrap a step's work in a ``Run`` (start, chunks, exactly one outcome), make the
child config ambient for user functions, and close inner iterators the moment the
consumer stops, so cancellation travels down to the model before it is reported.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from lmstream._accumulate import aggregate
from lmstream._types import RunnableConfig
from lmstream._utils import EMPTY as EMPTY
from lmstream._utils import aclose as aclose
from lmstream._utils import aiter_of as aiter_of
from lmstream._utils import close as close
from lmstream._utils import is_cancel as is_cancel
from lmstream.callbacks import Pending, drain, drain_async
from lmstream.config import child_config, ensure_config, use_config
from lmstream.errors import StreamingUnsupportedError
from lmstream.runs import STREAMING_INPUT, Run

if TYPE_CHECKING:
    from lmstream.runnable import Runnable

# EMPTY, aclose, aiter_of, close and is_cancel live in the leaf ``_utils``; they are
# re-exported here for modules that still import them from this one.
__all__ = [
    "EMPTY",
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
        run.settle(exc, None)
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
        await run.asettle(exc, None)
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


def _prepend(first: Any, rest: Iterator[Any]) -> Iterator[Any]:
    if first is not EMPTY:
        yield first
    yield from rest


async def _aprepend(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    if first is not EMPTY:
        yield first
    async for item in rest:
        yield item


class _Step:
    """One streaming run of a step, what its sync and async shells share: the run, the
    input as it is read and the output as it goes out (both kept only when someone
    listens), and the transformer's output stream, to close when the step is done."""

    __slots__ = ("config", "listening", "out", "outputs", "run", "seen")

    def __init__(self, owner: Runnable[Any, Any], config: RunnableConfig | None, kind: str) -> None:
        self.config = config = ensure_config(config)
        self.run = run = Run(
            config, owner=owner, name=owner.get_name(), run_type=kind, inputs=STREAMING_INPUT
        )
        self.listening = run.listening
        self.seen: list[Any] = []
        self.outputs: list[Any] = []
        self.out: Any = None

    def start(self) -> bool:
        """Report the start; whether anyone listens."""
        self.run.start()
        return self.listening

    async def astart(self) -> bool:
        """Report the start; whether anyone listens."""
        await self.run.astart()
        return self.listening

    def open(self, transformer: Callable[..., T], source: Any, recording: Callable[..., Any]) -> T:
        """The transformer's output stream over ``source`` (recorded when someone listens)."""
        if self.listening:
            source = recording(source, self.seen)
        self.out = out = transformer(source, self.run, child_config(self.config, self.run.child()))
        return out

    def record(self, chunk: Any) -> Pending:
        """Keep an output chunk and report it; the async handlers' work, to wait for."""
        self.outputs.append(chunk)
        return self.run.report_chunk(chunk)

    def partial(self) -> Any:
        """What the step produced before it was cut short (its input too, as far as read)."""
        if self.seen:
            self.run.inputs = aggregate(self.seen)
        return aggregate(self.outputs)

    def output(self) -> Any:
        """The whole output of the finished step (and its whole input)."""
        self.run.inputs = aggregate(self.seen)
        return aggregate(self.outputs)


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
    inputs = iter(inputs)
    first = next(inputs, EMPTY)
    step = _Step(owner, config, run_type)
    listening = step.start()
    try:
        for chunk in step.open(transformer, _prepend(first, inputs), _recording):
            if listening and (pending := step.record(chunk)):
                drain(pending, "chunk")
            yield chunk
    except BaseException as exc:
        close(step.out, inputs)
        step.run.settle(exc, step.partial())
        raise
    close(step.out, inputs)
    step.run.end(step.output())


async def atransform_stream(
    owner: Runnable[Any, Any],
    inputs: AsyncIterator[Any],
    transformer: ATransformer,
    config: RunnableConfig | None,
    *,
    run_type: str = "chain",
) -> AsyncIterator[Any]:
    """The async twin of ``transform_stream``."""
    first = await anext(inputs, EMPTY)
    step = _Step(owner, config, run_type)
    listening = await step.astart()
    try:
        async for chunk in step.open(transformer, _aprepend(first, inputs), _arecording):
            if listening and (pending := step.record(chunk)):
                await drain_async(pending, "chunk")
            yield chunk
    except BaseException as exc:
        await aclose(step.out, inputs)
        await step.run.asettle(exc, step.partial())
        raise
    await aclose(step.out, inputs)
    await step.run.aend(step.output())


def _too_many(owner: Runnable[Any, Any]) -> StreamingUnsupportedError:
    return StreamingUnsupportedError(
        f"{owner.get_name()} cannot stream its input: it would wait for the whole stream "
        "before producing anything (strict streaming is on)"
    )


def gather(owner: Runnable[Any, Any], inputs: Iterator[Any], strict: bool) -> Any:
    """Read a whole input stream and add it up; ``EMPTY`` when there was none."""
    chunks: list[Any] = []
    for chunk in inputs:
        chunks.append(chunk)
        if strict and len(chunks) > 1:
            close(inputs)
            raise _too_many(owner)
    return aggregate(chunks) if chunks else EMPTY


async def agather(owner: Runnable[Any, Any], inputs: AsyncIterator[Any], strict: bool) -> Any:
    """The async twin of ``gather``."""
    chunks: list[Any] = []
    async for chunk in inputs:
        chunks.append(chunk)
        if strict and len(chunks) > 1:
            await aclose(inputs)
            raise _too_many(owner)
    return aggregate(chunks) if chunks else EMPTY
