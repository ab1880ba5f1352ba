"""Composition: sequences (``a | b``), parallel maps (dicts), and passthrough.

A sequence streams through every step that can: each step's ``transform`` consumes the
previous step's output stream. A parallel map feeds a copy of its input stream to every
branch at once and yields ``{key: chunk}`` as each branch produces output.
"""

from __future__ import annotations

import contextvars
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from lmstream._accumulate import AddableDict, aggregate
from lmstream._execution import acall_with_config, call_with_config
from lmstream._merge import ATee, Tee, merge_tasks, merge_threads
from lmstream._seqbatch import SequenceBatch
from lmstream._threads import run_in_thread, run_sync
from lmstream._types import Configs, RunnableConfig
from lmstream._utils import accepts_param, aclose, close, is_async_callable, is_cancel
from lmstream.config import child_config, ensure_config
from lmstream.errors import InvalidInputError
from lmstream.runnable import Runnable, StreamingStep, coerce_to_runnable
from lmstream.runs import Run

if TYPE_CHECKING:
    pass


__all__ = [
    "RunnableAssign",
    "RunnableMap",
    "RunnableParallel",
    "RunnablePassthrough",
    "RunnableSequence",
]

Input = TypeVar("Input")
Output = TypeVar("Output")


def _step_config(run: Run, config: RunnableConfig, tag: str) -> RunnableConfig:
    return child_config(config, run.child(tag)) if run.listening else config


class RunnableSequence(StreamingStep[Input, Output], Generic[Input, Output]):
    """Steps run one after another; each one's output is the next one's input."""

    def __init__(self, *steps: Any, name: str | None = None) -> None:
        flat: list[Runnable[Any, Any]] = []
        for step in steps:
            if isinstance(step, RunnableSequence):
                inner: RunnableSequence[Any, Any] = step
                flat.extend(inner.steps)
                name = name or inner.name
            else:
                flat.append(coerce_to_runnable(step))
        if len(flat) < 2:
            raise InvalidInputError(f"RunnableSequence must have at least 2 steps, got {len(flat)}")
        self.steps: list[Runnable[Any, Any]] = flat
        self.name = name

    @property
    def first(self) -> Runnable[Any, Any]:
        """The first step."""
        return self.steps[0]

    @property
    def middle(self) -> list[Runnable[Any, Any]]:
        """The steps between the first and the last."""
        return self.steps[1:-1]

    @property
    def last(self) -> Runnable[Any, Any]:
        """The last step."""
        return self.steps[-1]

    def _invoke(self, value: Any, run: Run, config: RunnableConfig, kwargs: dict[str, Any]) -> Any:
        for i, step in enumerate(self.steps):
            value = step.invoke(value, _step_config(run, config, f"seq:step:{i + 1}"), **kwargs)
            kwargs = {}
        return value

    def invoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Output:
        """Run the steps in order; call kwargs go to the first step."""
        return call_with_config(self, lambda v, r, c: self._invoke(v, r, c, kwargs), input, config)  # type: ignore[no-any-return]

    async def _ainvoke(
        self, value: Any, run: Run, config: RunnableConfig, kwargs: dict[str, Any]
    ) -> Any:
        for i, step in enumerate(self.steps):
            value = await step.ainvoke(
                value, _step_config(run, config, f"seq:step:{i + 1}"), **kwargs
            )
            kwargs = {}
        return value

    async def ainvoke(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Output:
        """Async ``invoke``."""
        return await acall_with_config(
            self, lambda v, r, c: self._ainvoke(v, r, c, kwargs), input, config
        )

    def batch(
        self, inputs: Sequence[Any], config: Configs = None, *, return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:  # fmt: skip
        """Each step's own ``batch`` on the inputs still going, one step after another
        (call kwargs go to the first step)."""
        state = SequenceBatch(self, inputs, config, return_exceptions, kwargs)
        for run in state.runs:
            run.start()
        try:
            for step, values, configs, kw in state.calls(self.steps):
                state.took(step.batch(values, configs, **kw))
        except BaseException as exc:
            for run in state.runs:
                run.cancel() if is_cancel(exc) else run.fail(exc)
            raise
        for run, out, err in state.outcomes():
            run.end(out) if err is None else run.fail(err)
        return state.results()

    async def abatch(
        self, inputs: Sequence[Any], config: Configs = None, *, return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:  # fmt: skip
        """Async ``batch``: each step's own ``abatch``."""
        state = SequenceBatch(self, inputs, config, return_exceptions, kwargs)
        for run in state.runs:
            await run.astart()
        try:
            for step, values, configs, kw in state.calls(self.steps):
                state.took(await step.abatch(values, configs, **kw))
        except BaseException as exc:
            for run in state.runs:
                await (run.acancel() if is_cancel(exc) else run.afail(exc))
            raise
        for run, out, err in state.outcomes():
            await (run.aend(out) if err is None else run.afail(err))
        return state.results()

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        for i, step in enumerate(self.steps):
            source = step.transform(
                source, _step_config(run, config, f"seq:step:{i + 1}"), **kwargs
            )
            kwargs = {}
        return source

    def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        for i, step in enumerate(self.steps):
            source = step.atransform(
                source, _step_config(run, config, f"seq:step:{i + 1}"), **kwargs
            )
            kwargs = {}
        return source

    def __repr__(self) -> str:
        return " | ".join(repr(s) for s in self.steps)


async def _gather(aws: Iterable[Awaitable[Any]]) -> list[Any]:
    """Await all at once; when one fails, cancel the rest (their models stop) and raise."""
    import asyncio

    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class RunnableParallel(StreamingStep[Input, dict[str, Any]], Generic[Input]):
    """Run every branch on the same input at once; the output maps keys to results."""

    def __init__(self, steps: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        merged = {**(steps or {}), **kwargs}
        self.steps = {k: coerce_to_runnable(v) for k, v in merged.items()}

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        """``RunnableParallel<key,...>`` unless named, as the reference names it."""
        name = name or self.name or f"RunnableParallel<{','.join(self.steps)}>"
        return super().get_name(suffix, name=name)

    def _configs(self, run: Run, config: RunnableConfig) -> dict[str, RunnableConfig]:
        return {k: _step_config(run, config, f"map:key:{k}") for k in self.steps}

    def _invoke(self, value: Any, run: Run, config: RunnableConfig) -> dict[str, Any]:
        configs = self._configs(run, config)
        if len(self.steps) == 1:
            return {k: s.invoke(value, configs[k]) for k, s in self.steps.items()}
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(self.steps)) as pool:
            futures = {
                k: pool.submit(contextvars.copy_context().run, s.invoke, value, configs[k])
                for k, s in self.steps.items()
            }
            return {k: f.result() for k, f in futures.items()}

    def invoke(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Invoke every branch concurrently."""
        return call_with_config(self, self._invoke, input, config)

    async def _ainvoke(self, value: Any, run: Run, config: RunnableConfig) -> dict[str, Any]:
        configs = self._configs(run, config)
        keys = list(self.steps)
        results = await _gather(self.steps[k].ainvoke(value, configs[k]) for k in keys)
        return dict(zip(keys, results, strict=True))

    async def ainvoke(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Await every branch concurrently."""
        return await acall_with_config(self, self._ainvoke, input, config)

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        configs = self._configs(run, config)
        tee = Tee(source, len(self.steps))
        branches = {
            k: s.transform(tee.branch(i), configs[k]) for i, (k, s) in enumerate(self.steps.items())
        }
        if len(branches) == 1:
            ((key, it),) = branches.items()
            try:
                for chunk in it:
                    yield AddableDict({key: chunk})
            finally:  # close now, not at garbage collection: the model must stop at once
                close(it)
            return
        yield from merge_threads(branches)

    async def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        configs = self._configs(run, config)
        tee = ATee(source, len(self.steps))
        branches = {
            k: s.atransform(tee.branch(i), configs[k])
            for i, (k, s) in enumerate(self.steps.items())
        }
        merged = merge_tasks(branches)
        try:
            async for key, chunk in merged:
                yield AddableDict({key: chunk})
        finally:  # an async for does not close what it reads: the branches must stop now
            await aclose(merged)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{k}: {v!r}" for k, v in self.steps.items()) + "}"


class RunnablePassthrough(StreamingStep[Input, Input], Generic[Input]):
    """Passes its input through unchanged. ``func`` (or ``afunc``; either may take
    ``config`` and the call's kwargs) is called with the whole input: before the run on
    ``invoke``, once the input has passed on ``stream``; it gets the config the
    passthrough was called with, as in the reference."""

    def __init__(
        self,
        func: Callable[..., Any] | None = None,
        afunc: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
    ) -> None:
        if func is not None and is_async_callable(func):
            func, afunc = None, func
        self.func = func
        self.afunc = afunc
        self.name = name

    def _notify(self, value: Any, config: RunnableConfig, kwargs: dict[str, Any]) -> None:
        if self.func is not None:
            _call_with_config(self.func, value, config, kwargs)
        elif self.afunc is not None:
            run_sync(_awaited(_call_with_config(self.afunc, value, config, kwargs)))

    async def _anotify(self, value: Any, config: RunnableConfig, kwargs: dict[str, Any]) -> None:
        if self.afunc is not None:
            await _call_with_config(self.afunc, value, config, kwargs)
        elif self.func is not None:
            await run_in_thread(_call_with_config, self.func, value, config, kwargs)

    def invoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Input:
        """Return the input."""
        if self.func is not None or self.afunc is not None:
            self._notify(input, ensure_config(config), kwargs)
        return call_with_config(self, _identity, input, config)  # type: ignore[no-any-return]

    async def ainvoke(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Input:
        """Return the input."""
        if self.func is not None or self.afunc is not None:
            await self._anotify(input, ensure_config(config), kwargs)
        return await acall_with_config(self, _aidentity, input, config)

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        return source

    def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        return source

    def transform(
        self, input: Iterator[Input], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Input]:
        """Pass the chunks through; then call the function with their sum."""
        out = super().transform(input, config)
        if self.func is None and self.afunc is None:
            return out
        return self._then_notify(out, ensure_config(config), kwargs)

    def _then_notify(
        self, out: Iterator[Any], config: RunnableConfig, kwargs: dict[str, Any]
    ) -> Iterator[Any]:
        seen: list[Any] = []
        try:
            for chunk in out:
                seen.append(chunk)
                yield chunk
        finally:
            close(out)
        if seen:
            self._notify(aggregate(seen), config, kwargs)

    def atransform(
        self, input: AsyncIterator[Input], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Input]:
        """Async ``transform``."""
        out = super().atransform(input, config)
        if self.func is None and self.afunc is None:
            return out
        return self._athen_notify(out, ensure_config(config), kwargs)

    async def _athen_notify(
        self, out: AsyncIterator[Any], config: RunnableConfig, kwargs: dict[str, Any]
    ) -> AsyncIterator[Any]:
        seen: list[Any] = []
        try:
            async for chunk in out:
                seen.append(chunk)
                yield chunk
        finally:
            await aclose(out)
        if seen:
            await self._anotify(aggregate(seen), config, kwargs)

    @classmethod
    def assign(cls, **kwargs: Any) -> RunnableAssign:  # type: ignore[override]
        """A step that adds keys to a dict input, computed by runnables of that input."""
        return RunnableAssign(RunnableParallel(kwargs))


def _identity(value: Any, run: Run, config: RunnableConfig) -> Any:
    return value


async def _aidentity(value: Any, run: Run, config: RunnableConfig) -> Any:
    return value


def _call_with_config(
    func: Callable[..., Any], value: Any, config: RunnableConfig, kwargs: dict[str, Any]
) -> Any:
    if accepts_param(func, "config"):
        return func(value, config=config, **kwargs)
    return func(value, **kwargs)


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class RunnableAssign(StreamingStep[dict[str, Any], dict[str, Any]]):
    """Adds the outputs of a parallel map to a dict input.

    While streaming, the input's keys pass through as they arrive (keys the map computes
    are left to the map); the map then runs on the whole input and streams its keys.
    """

    def __init__(self, mapper: RunnableParallel[Any]) -> None:
        self.mapper = mapper

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        """``RunnableAssign<key,...>`` unless named, as the reference names it."""
        name = name or self.name or f"RunnableAssign<{','.join(self.mapper.steps)}>"
        return super().get_name(suffix, name=name)

    def _check(self, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise InvalidInputError(f"assign() needs a dict input, got {type(value).__name__}")
        return value

    def _invoke(self, value: Any, run: Run, config: RunnableConfig) -> dict[str, Any]:
        return {**self._check(value), **self.mapper.invoke(value, config)}

    def invoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """The input with the new keys."""
        return call_with_config(self, self._invoke, input, config)

    async def _ainvoke(self, value: Any, run: Run, config: RunnableConfig) -> dict[str, Any]:
        return {**self._check(value), **(await self.mapper.ainvoke(value, config))}

    async def ainvoke(
        self, input: dict[str, Any], config: RunnableConfig | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        """Async ``invoke``."""
        return await acall_with_config(self, self._ainvoke, input, config)

    def _passed(self, chunk: Any, seen: list[Any]) -> AddableDict | None:
        """The part of an input chunk that passes straight through (``None``: nothing)."""
        seen.append(self._check(chunk))
        kept = AddableDict({k: v for k, v in chunk.items() if k not in self.mapper.steps})
        return kept or None

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        seen: list[Any] = []
        for chunk in source:
            if (kept := self._passed(chunk, seen)) is not None:
                yield kept
        if seen:
            yield from self.mapper.stream(aggregate(seen), config)

    async def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        seen: list[Any] = []
        async for chunk in source:
            if (kept := self._passed(chunk, seen)) is not None:
                yield kept
        if seen:
            mapped = self.mapper.astream(aggregate(seen), config)
            try:
                async for out in mapped:
                    yield out
            finally:
                await aclose(mapped)


RunnableMap = RunnableParallel
"""The reference's other name for ``RunnableParallel``."""
