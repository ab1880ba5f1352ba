"""The Runnable base: one interface with sync and async twins.

``invoke`` is the one method a subclass must write; everything else has a default:
``ainvoke`` runs ``invoke`` in a thread, ``stream`` yields the result of ``invoke``,
``transform`` reads its whole input then streams, ``batch`` runs a sliding window.
Streaming steps override ``transform``/``atransform`` to pass chunks through.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from lmstream import _batch
from lmstream._execution import agather, atransform_stream, gather, transform_stream
from lmstream._threads import run_in_thread
from lmstream._types import Configs, RunnableConfig, StreamEvent
from lmstream._utils import EMPTY, aclose, aiter_of
from lmstream.config import ambient
from lmstream.errors import InvalidInputError

if TYPE_CHECKING:
    from lmstream._policies import ExceptionFilter
    from lmstream.compose import RunnableSequence
    from lmstream.runs import Run
    from lmstream.wrappers import RunnableBinding, RunnableRetry, RunnableWithFallbacks

__all__ = ["Runnable", "StreamingStep", "coerce_to_runnable"]

Input = TypeVar("Input")
Output = TypeVar("Output")
Other = TypeVar("Other")


def _strict(config: RunnableConfig | None) -> bool:
    if config is not None and "strict" in config:
        return bool(config["strict"])
    outer = ambient().get()
    return bool(outer and outer.get("strict"))


class Runnable(Generic[Input, Output]):
    """A unit of work that can be invoked, batched, streamed and composed with ``|``."""

    name: str | None = None

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        """The run name: ``name``, else the ``name`` attribute, else the class name."""
        base = name or self.name or type(self).__name__
        return f"{base}{suffix}" if suffix else base

    # -- single -------------------------------------------------------------------------

    def invoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Output:
        """Transform one input into one output."""
        raise NotImplementedError(f"{type(self).__name__} does not implement invoke()")

    async def ainvoke(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Output:
        """Async ``invoke``; by default ``invoke`` in a worker thread."""
        return await run_in_thread(lambda: self.invoke(input, config, **kwargs))

    # -- many ---------------------------------------------------------------------------

    def batch(
        self,
        inputs: Sequence[Input],
        config: Configs = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Output]:
        """``invoke`` every input, ``max_concurrency`` at a time; results in input order."""
        return _batch.batch(self, inputs, config, return_exceptions, kwargs)

    async def abatch(
        self,
        inputs: Sequence[Input],
        config: Configs = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Output]:
        """``ainvoke`` every input, ``max_concurrency`` at a time; results in input order."""
        return await _batch.abatch(self, inputs, config, return_exceptions, kwargs)

    def batch_as_completed(
        self,
        inputs: Sequence[Input],
        config: Configs = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> Iterator[tuple[int, Output | Exception]]:
        """Yield ``(index, output)`` as each input finishes."""
        return _batch.batch_as_completed(self, inputs, config, return_exceptions, kwargs)

    def abatch_as_completed(
        self,
        inputs: Sequence[Input],
        config: Configs = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> AsyncIterator[tuple[int, Output | Exception]]:
        """Yield ``(index, output)`` as each input finishes."""
        return _batch.abatch_as_completed(self, inputs, config, return_exceptions, kwargs)

    # -- streaming ----------------------------------------------------------------------

    def stream(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Output]:
        """Stream the output; by default one chunk, the result of ``invoke``."""
        yield self.invoke(input, config, **kwargs)

    async def astream(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Output]:
        """Stream the output; by default one chunk, the result of ``ainvoke``."""
        yield await self.ainvoke(input, config, **kwargs)

    def transform(
        self, input: Iterator[Input], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Output]:
        """Stream output from a stream of input; by default read it all, then ``stream``."""
        total = gather(self, input, _strict(config))
        if total is not EMPTY:
            yield from self.stream(total, config, **kwargs)

    async def atransform(
        self, input: AsyncIterator[Input], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Output]:
        """Async ``transform``."""
        total = await agather(self, input, _strict(config))
        if total is EMPTY:
            return
        stream = self.astream(total, config, **kwargs)
        try:
            async for chunk in stream:
                yield chunk
        finally:  # close now, not at garbage collection: the model must stop at once
            await aclose(stream)

    def astream_events(
        self,
        input: Any,
        config: RunnableConfig | None = None,
        *,
        version: str = "v2",
        include_names: Sequence[str] | None = None,
        include_types: Sequence[str] | None = None,
        include_tags: Sequence[str] | None = None,
        exclude_names: Sequence[str] | None = None,
        exclude_types: Sequence[str] | None = None,
        exclude_tags: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[StreamEvent]:
        """Stream the events of this run and every run inside it (v2 or v1 schema)."""
        from lmstream.events import EventFilter, astream_events

        filters = EventFilter(
            include_names, include_types, include_tags, exclude_names, exclude_types, exclude_tags
        )
        return astream_events(self, input, config, version, filters, kwargs)

    # -- composition --------------------------------------------------------------------

    def __or__(self, other: Any) -> RunnableSequence[Input, Any]:
        from lmstream.compose import RunnableSequence

        return RunnableSequence(self, coerce_to_runnable(other))

    def __ror__(self, other: Any) -> RunnableSequence[Any, Output]:
        from lmstream.compose import RunnableSequence

        return RunnableSequence(coerce_to_runnable(other), self)

    def pipe(self, *others: Any, name: str | None = None) -> RunnableSequence[Input, Any]:
        """Compose with each of ``others`` in turn."""
        from lmstream.compose import RunnableSequence

        return RunnableSequence(self, *(coerce_to_runnable(o) for o in others), name=name)

    def bind(self, **kwargs: Any) -> RunnableBinding[Input, Output]:
        """A runnable that calls this one with ``kwargs`` added to every call."""
        from lmstream.wrappers import RunnableBinding

        return RunnableBinding(self, kwargs=kwargs)

    def with_config(
        self, config: RunnableConfig | None = None, **kwargs: Any
    ) -> RunnableBinding[Input, Output]:
        """A runnable that calls this one with ``config`` merged into every call's config."""
        from lmstream.wrappers import RunnableBinding

        merged = cast(RunnableConfig, {**(config or {}), **kwargs})
        return RunnableBinding(self, config=merged)

    def with_retry(
        self,
        *,
        retry_if_exception_type: ExceptionFilter = (Exception,),
        wait_exponential_jitter: bool = True,
        exponential_jitter_params: dict[str, float] | None = None,
        stop_after_attempt: int = 3,
    ) -> RunnableRetry[Input, Output]:
        """Retry failed calls whose error is one of ``retry_if_exception_type`` (or for
        which that predicate is true), waiting ``initial * exp_base ** n`` (at most
        ``max``) plus up to ``jitter`` seconds, or an error's ``retry_after`` if longer.
        Streams retry only before their first chunk."""
        from lmstream.wrappers import RunnableRetry

        return RunnableRetry(
            self,
            retry_exception_types=retry_if_exception_type,
            wait_exponential_jitter=wait_exponential_jitter,
            max_attempt_number=stop_after_attempt,
            exponential_jitter_params=exponential_jitter_params,
        )

    def with_fallbacks(
        self,
        fallbacks: Sequence[Runnable[Input, Output]],
        *,
        exceptions_to_handle: tuple[type[BaseException], ...] = (Exception,),
        exception_key: str | None = None,
    ) -> RunnableWithFallbacks[Input, Output]:
        """Try ``fallbacks`` in order when this fails. With ``exception_key``, the input
        (a dict) a fallback gets holds the previous error under that key. Streams fall
        back only before their first chunk."""
        from lmstream.wrappers import RunnableWithFallbacks

        return RunnableWithFallbacks(
            self,
            list(fallbacks),
            exceptions_to_handle=exceptions_to_handle,
            exception_key=exception_key,
        )

    def assign(self, **kwargs: Any) -> RunnableSequence[Input, Any]:
        """Pipe into ``RunnablePassthrough.assign(**kwargs)``."""
        from lmstream.compose import RunnablePassthrough

        return self | RunnablePassthrough.assign(**kwargs)


class StreamingStep(Runnable[Input, Output]):
    """A runnable that streams: it implements ``_transform``/``_atransform`` over the input
    stream, and gets ``transform``, ``stream`` and their async twins run as one run each."""

    run_type = "chain"

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Output]:
        raise NotImplementedError

    def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Output]:
        raise NotImplementedError

    def transform(
        self, input: Iterator[Input], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Output]:
        """Stream output chunks as input chunks arrive."""
        fn = partial(self._transform, **kwargs) if kwargs else self._transform
        return transform_stream(self, input, fn, config, run_type=self.run_type)

    def atransform(
        self, input: AsyncIterator[Input], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Output]:
        """Async ``transform``."""
        fn = partial(self._atransform, **kwargs) if kwargs else self._atransform
        return atransform_stream(self, input, fn, config, run_type=self.run_type)

    def stream(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Output]:
        """Stream the output for one input."""
        return self.transform(iter((input,)), config, **kwargs)

    def astream(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Output]:
        """Async ``stream``."""
        return self.atransform(aiter_of(input), config, **kwargs)


def coerce_to_runnable(thing: Any) -> Runnable[Any, Any]:
    """A runnable from a runnable, a function (generator functions stream) or a dict."""
    from lmstream._utils import is_async_generator, is_generator
    from lmstream.compose import RunnableParallel
    from lmstream.functions import RunnableGenerator, RunnableLambda

    if isinstance(thing, Runnable):
        return thing
    if is_generator(thing) or is_async_generator(thing):
        return RunnableGenerator(thing)
    if callable(thing):
        return RunnableLambda(thing)
    if isinstance(thing, Mapping):
        return RunnableParallel(dict(thing))
    raise InvalidInputError(
        f"Expected a Runnable, callable or dict. Instead got an unsupported type: {type(thing)!r}"
    )
