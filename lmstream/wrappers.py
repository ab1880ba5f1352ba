"""Runnables that wrap another: bound kwargs/config, retries, fallbacks.

Retries and fallbacks apply to streams only before the first chunk: once a chunk has
reached the consumer, a later failure propagates (re-running would duplicate output).
Before the first chunk they are automatic, including errors a provider raises on its
first iteration. An empty stream is a success. A step inside a streaming chain keeps
streaming: the input it consumed before failing is replayed to the next attempt.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from functools import partial
from typing import Any, Generic, TypeVar

from lmstream._execution import acall_with_config, call_with_config
from lmstream._policies import (
    ExceptionFilter,
    Policy,
    amap_first,
    exception_filter,
    map_first,
    noting,
)
from lmstream._types import Configs, RunnableConfig
from lmstream._utils import EMPTY, aclose, close
from lmstream.config import ensure_config, merge_configs, patch_config
from lmstream.errors import InvalidInputError
from lmstream.runnable import Runnable, StreamingStep
from lmstream.runs import Run

__all__ = ["RunnableBinding", "RunnableRetry", "RunnableWithFallbacks"]

Input = TypeVar("Input")
Output = TypeVar("Output")


class RunnableBinding(Runnable[Input, Output], Generic[Input, Output]):
    """Another runnable with extra call kwargs and config merged into every call."""

    def __init__(
        self,
        bound: Runnable[Input, Output],
        *,
        kwargs: dict[str, Any] | None = None,
        config: RunnableConfig | None = None,
    ) -> None:
        if isinstance(bound, RunnableBinding):
            inner: RunnableBinding[Input, Output] = bound
            kwargs = {**inner.kwargs, **(kwargs or {})}
            config = merge_configs(inner.config, config)
            bound = inner.bound
        self.bound: Runnable[Input, Output] = bound
        self.kwargs: dict[str, Any] = kwargs or {}
        self.config: RunnableConfig = config or {}

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        """The bound runnable's name."""
        return self.bound.get_name(suffix, name=name)

    def __getattr__(self, name: str) -> Any:
        if name in ("bound", "kwargs", "config"):
            raise AttributeError(name)
        return getattr(self.bound, name)

    def _merge(self, config: RunnableConfig | None) -> RunnableConfig:
        # complete (every key present), as the reference hands it on to the bound runnable
        return ensure_config(merge_configs(self.config, config) if self.config else config)

    def _merge_list(self, config: Configs) -> Configs:
        if isinstance(config, Sequence):
            return [self._merge(c) for c in config]
        return self._merge(config)

    def invoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Output:
        """Invoke the bound runnable."""
        return self.bound.invoke(input, self._merge(config), **{**self.kwargs, **kwargs})

    async def ainvoke(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Output:
        """Async ``invoke``."""
        return await self.bound.ainvoke(input, self._merge(config), **{**self.kwargs, **kwargs})

    def batch(
        self, inputs: Sequence[Input], config: Configs = None, *, return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Output]:  # fmt: skip
        """Batch on the bound runnable."""
        return self.bound.batch(
            inputs, self._merge_list(config), return_exceptions=return_exceptions,
            **{**self.kwargs, **kwargs},
        )  # fmt: skip

    async def abatch(
        self, inputs: Sequence[Input], config: Configs = None, *, return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Output]:  # fmt: skip
        """Async ``batch``."""
        return await self.bound.abatch(
            inputs, self._merge_list(config), return_exceptions=return_exceptions,
            **{**self.kwargs, **kwargs},
        )  # fmt: skip

    def stream(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Output]:
        """Stream from the bound runnable."""
        return self.bound.stream(input, self._merge(config), **{**self.kwargs, **kwargs})

    def astream(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Output]:
        """Async ``stream``."""
        return self.bound.astream(input, self._merge(config), **{**self.kwargs, **kwargs})

    def stream_chunks(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Any]:
        """The bound model's chunks (``finish_reason`` and usage on the last), bound kwargs
        and config applied as for ``stream``."""
        chunks = self.bound.stream_chunks  # type: ignore[attr-defined]
        return chunks(input, self._merge(config), **{**self.kwargs, **kwargs})  # type: ignore[no-any-return]

    def astream_chunks(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """Async ``stream_chunks``."""
        chunks = self.bound.astream_chunks  # type: ignore[attr-defined]
        return chunks(input, self._merge(config), **{**self.kwargs, **kwargs})  # type: ignore[no-any-return]

    def transform(
        self, input: Iterator[Input], config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[Output]:
        """Transform with the bound runnable."""
        return self.bound.transform(input, self._merge(config), **{**self.kwargs, **kwargs})

    def atransform(
        self, input: AsyncIterator[Input], config: RunnableConfig | None = None, **kwargs: Any
    ) -> AsyncIterator[Output]:
        """Async ``transform``."""
        return self.bound.atransform(input, self._merge(config), **{**self.kwargs, **kwargs})

    def __repr__(self) -> str:
        return (
            f"RunnableBinding(bound={self.bound!r}, kwargs={self.kwargs!r}, config={self.config!r})"
        )


class _Replay:
    """An input stream that can be read again from the start by a later attempt.

    A failure of the input itself is remembered: it is not the attempt's failure, and
    no later attempt may run on the input cut short by it.
    """

    def __init__(self, source: Any) -> None:
        self.source = source
        self.seen: list[Any] = []
        self.failed = False

    def __iter__(self) -> Iterator[Any]:
        yield from list(self.seen)
        it = iter(self.source)
        while True:
            try:
                item = next(it)
            except StopIteration:
                return
            except BaseException:
                self.failed = True
                raise
            self.seen.append(item)
            yield item

    async def __aiter__(self) -> AsyncIterator[Any]:
        for item in list(self.seen):
            yield item
        it = aiter(self.source)
        while True:
            try:
                item = await anext(it)
            except StopAsyncIteration:
                return
            except BaseException:
                self.failed = True
                raise
            self.seen.append(item)
            yield item

    def guard(self, policy: Policy) -> Policy:
        """``policy``, except that a failure of the input is raised as it is."""

        def guarded(attempt: int, exc: Exception) -> float:
            if self.failed:
                raise exc
            return policy(attempt, exc)

        return guarded


# How to wait between attempts (module attributes, so tests can record the waits).
_sleep: Callable[[float], None] = time.sleep


async def _asleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def _first(policy: Policy, make: Callable[[int], Iterator[Any]]) -> tuple[Iterator[Any], Any]:
    """Start attempts until one gives its first chunk or ends empty: (that attempt, its
    first chunk or ``EMPTY``). A failed attempt is closed, then the policy waits or raises."""
    attempt = 0
    while True:
        it = make(attempt)
        try:
            return it, next(it, EMPTY)
        except Exception as exc:
            close(it)
            if (delay := policy(attempt, exc)) > 0:
                _sleep(delay)
        attempt += 1


async def _afirst(
    policy: Policy, make: Callable[[int], AsyncIterator[Any]]
) -> tuple[AsyncIterator[Any], Any]:
    """The async twin of ``_first``."""
    attempt = 0
    while True:
        it = make(attempt)
        try:
            return it, await anext(it, EMPTY)
        except Exception as exc:
            await aclose(it)
            if (delay := policy(attempt, exc)) > 0:
                await _asleep(delay)
        attempt += 1


def _attempts(policy: Policy, make: Callable[[int], Iterator[Any]]) -> Iterator[Any]:
    it, first = _first(policy, make)
    try:
        if first is not EMPTY:
            yield first
            yield from it
    finally:  # close now, not at garbage collection: the model must stop at once
        close(it)


async def _aattempts(
    policy: Policy, make: Callable[[int], AsyncIterator[Any]]
) -> AsyncIterator[Any]:
    it, first = await _afirst(policy, make)
    try:
        if first is not EMPTY:
            yield first
            async for chunk in it:
                yield chunk
    finally:
        await aclose(it)


class _Attempting(StreamingStep[Input, Output], Generic[Input, Output]):
    """Shared shape of retry and fallbacks: ``_target(attempt)`` and ``_policy()``.

    Each call is one run of its own, with every attempt a child run: a failed attempt
    ends as failed, and the call itself ends once, the way its last attempt did.
    """

    def _target(
        self, attempt: int, config: RunnableConfig | None
    ) -> tuple[Runnable[Input, Output], RunnableConfig | None]:
        raise NotImplementedError

    def _policy(self) -> Policy:
        raise NotImplementedError

    def _input(self, value: Any, error: Exception | None) -> Any:
        """The input of the attempt after one that failed with ``error`` (``None``: the
        first attempt)."""
        return value

    def _first_input(self, chunk: Any, errors: list[Exception]) -> Any:
        """The first input chunk of the attempt after those that failed with ``errors``."""
        return chunk

    def _invoke(self, value: Any, config: RunnableConfig, kwargs: dict[str, Any]) -> Any:
        policy, attempt, error = self._policy(), 0, None
        while True:
            target, cfg = self._target(attempt, config)
            attempt_input = self._input(value, error)
            try:
                return target.invoke(attempt_input, cfg, **kwargs)
            except Exception as exc:
                error = exc
                delay = policy(attempt, exc)
            if delay > 0:
                _sleep(delay)
            attempt += 1

    def invoke(self, input: Input, config: RunnableConfig | None = None, **kwargs: Any) -> Output:
        """Invoke, retrying or falling back on failure."""
        return call_with_config(self, lambda v, r, c: self._invoke(v, c, kwargs), input, config)  # type: ignore[no-any-return]

    async def _ainvoke(self, value: Any, config: RunnableConfig, kwargs: dict[str, Any]) -> Any:
        policy, attempt, error = self._policy(), 0, None
        while True:
            target, cfg = self._target(attempt, config)
            attempt_input = self._input(value, error)
            try:
                return await target.ainvoke(attempt_input, cfg, **kwargs)
            except Exception as exc:
                error = exc
                delay = policy(attempt, exc)
            if delay > 0:
                await _asleep(delay)
            attempt += 1

    async def ainvoke(
        self, input: Input, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Output:
        """Async ``invoke``."""
        return await acall_with_config(
            self, lambda v, r, c: self._ainvoke(v, c, kwargs), input, config
        )

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        """Stream; retry or fall back only before the first chunk. Input read by a failed
        attempt is replayed to the next one."""
        replay, errors = _Replay(source), list[Exception]()

        def make(i: int) -> Iterator[Any]:
            target, cfg = self._target(i, config)
            inputs = iter(replay)
            if errors:
                inputs = map_first(inputs, partial(self._first_input, errors=errors))
            return target.transform(inputs, cfg, **kwargs)

        return _attempts(noting(replay.guard(self._policy()), errors), make)

    def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        replay, errors = _Replay(source), list[Exception]()

        def make(i: int) -> AsyncIterator[Any]:
            target, cfg = self._target(i, config)
            inputs = replay.__aiter__()
            if errors:
                inputs = amap_first(inputs, partial(self._first_input, errors=errors))
            return target.atransform(inputs, cfg, **kwargs)

        return _aattempts(noting(replay.guard(self._policy()), errors), make)


class RunnableRetry(_Attempting[Input, Output], Generic[Input, Output]):
    """Retries the bound runnable on the given exception types, with exponential backoff
    and jitter; a ``retry_after`` on the error (rate limits) is honoured."""

    def __init__(
        self,
        bound: Runnable[Input, Output],
        *,
        retry_exception_types: ExceptionFilter = (Exception,),
        wait_exponential_jitter: bool = True,
        max_attempt_number: int = 3,
        exponential_jitter_params: dict[str, float] | None = None,
    ) -> None:
        if max_attempt_number < 1:
            raise InvalidInputError(f"stop_after_attempt must be >= 1, got {max_attempt_number}")
        self.bound = bound
        self.retry_exception_types = retry_exception_types
        self._retryable = exception_filter(retry_exception_types, "retry_if_exception_type")
        self.wait_exponential_jitter = wait_exponential_jitter
        self.max_attempt_number = max_attempt_number
        params = {"initial": 1.0, "max": 60.0, "exp_base": 2.0, "jitter": 1.0}
        unknown = set(exponential_jitter_params or {}) - set(params)
        if unknown:
            raise InvalidInputError(
                f"unknown exponential_jitter_params {sorted(unknown)}; expected {sorted(params)}"
            )
        self.jitter_params = {**params, **(exponential_jitter_params or {})}

    def get_name(self, suffix: str | None = None, *, name: str | None = None) -> str:
        """The retried runnable's name."""
        return self.bound.get_name(suffix, name=name)

    def _target(
        self, attempt: int, config: RunnableConfig | None
    ) -> tuple[Runnable[Input, Output], RunnableConfig | None]:
        if attempt == 0:
            return self.bound, config
        cfg = patch_config(config)
        cfg.pop("run_id", None)
        cfg["tags"] = [*cfg.get("tags", []), f"retry:attempt:{attempt + 1}"]
        return self.bound, cfg

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (0-based)."""
        if not self.wait_exponential_jitter:
            return 0.0
        p = self.jitter_params
        delay = min(p["initial"] * p["exp_base"] ** attempt, p["max"])
        import random  # on use: it is not needed to import lmstream

        return float(delay + random.uniform(0, p["jitter"]))

    def _policy(self) -> Policy:
        def policy(attempt: int, exc: Exception) -> float:
            if not self._retryable(exc):
                raise exc
            if attempt + 1 >= self.max_attempt_number:
                raise exc
            retry_after = getattr(exc, "retry_after", None)
            delay = self.backoff(attempt)
            return max(delay, float(retry_after)) if retry_after else delay

        return policy


class RunnableWithFallbacks(_Attempting[Input, Output], Generic[Input, Output]):
    """Tries each runnable in turn; raises the first error if all of them fail."""

    def __init__(
        self,
        runnable: Runnable[Input, Output],
        fallbacks: Sequence[Runnable[Input, Output]],
        *,
        exceptions_to_handle: tuple[type[BaseException], ...] = (Exception,),
        exception_key: str | None = None,
    ) -> None:
        self.runnable = runnable
        self.fallbacks = list(fallbacks)
        self.exceptions_to_handle = exceptions_to_handle
        self.exception_key = exception_key

    @property
    def runnables(self) -> list[Runnable[Input, Output]]:
        """The runnable, then its fallbacks."""
        return [self.runnable, *self.fallbacks]

    def _target(
        self, attempt: int, config: RunnableConfig | None
    ) -> tuple[Runnable[Input, Output], RunnableConfig | None]:
        if attempt == 0 or not config:
            return self.runnables[attempt], config
        return self.runnables[attempt], {k: v for k, v in config.items() if k != "run_id"}  # type: ignore[return-value]

    def _input(self, value: Any, error: Exception | None) -> Any:
        """With ``exception_key``, a fallback's dict input also holds the last error
        (a copy: the caller's dict is left as it was)."""
        key = self.exception_key
        if key is None:
            return value
        if not isinstance(value, dict):
            raise InvalidInputError(
                "If 'exception_key' is specified then input must be a dictionary. "
                f"However found a type of {type(value)} for input"
            )
        return value if error is None else {**value, key: error}

    def _first_input(self, chunk: Any, errors: list[Exception]) -> Any:
        return self._input(chunk, errors[-1] if errors else None)

    def _policy(self) -> Policy:
        first: list[Exception] = []

        def policy(attempt: int, exc: Exception) -> float:
            first.append(exc)
            if not isinstance(exc, self.exceptions_to_handle):
                raise exc
            if attempt + 1 >= len(self.runnables):
                raise first[0]
            return 0.0

        return policy
