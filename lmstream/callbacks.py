"""Callback handlers, the manager that carries them to child runs, and dispatch.

Handlers are objects with ``on_*`` methods, sync (``BaseCallbackHandler``) or async
(``AsyncCallbackHandler``); both kinds work on both the sync and the async paths. On the
async path sync handlers run inline (keep them quick); on the sync path async handlers
run on lmstream's background loop. A handler that raises is logged and ignored, unless
its ``raise_error`` is true. Besides the reference's events, handlers see cancellation:
``on_llm_cancel`` / ``on_chain_cancel`` fire when the consumer stopped a run early,
which is not an error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

from lmstream._threads import run_sync

if TYPE_CHECKING:
    from uuid import UUID


__all__ = [
    "AsyncCallbackHandler",
    "BaseCallbackHandler",
    "CallbackManager",
    "dispatch",
    "drain",
    "drain_async",
]


class BaseCallbackHandler:
    """A handler of run events. Override the methods you need; all default to no-ops."""

    raise_error: bool = False
    """Re-raise exceptions from this handler instead of logging them."""
    run_inline: bool = False
    ignore_llm: bool = False
    ignore_chain: bool = False
    ignore_custom_event: bool = False

    def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID, **kwargs: Any
    ) -> Any:
        """An LLM run started."""

    def on_llm_new_token(self, token: str, *, run_id: UUID, **kwargs: Any) -> Any:
        """An LLM produced a chunk; ``chunk=`` holds the GenerationChunk."""

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> Any:
        """An LLM run finished; ``response`` is an LLMResult."""

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> Any:
        """An LLM run failed; ``response=`` holds the partial LLMResult."""

    def on_llm_cancel(self, response: Any, *, run_id: UUID, **kwargs: Any) -> Any:
        """The consumer stopped an LLM run early; ``response`` holds what it produced."""

    def on_chain_start(
        self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID, **kwargs: Any
    ) -> Any:
        """A chain-like run (sequence, lambda, prompt, parser...) started."""

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> Any:
        """A chain-like run finished."""

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> Any:
        """A chain-like run failed."""

    def on_chain_cancel(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> Any:
        """The consumer stopped a chain-like run early; ``outputs`` is what it produced."""

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> Any:
        """A custom event was dispatched inside a run."""


class AsyncCallbackHandler(BaseCallbackHandler):
    """A handler whose ``on_*`` methods are coroutines."""

    async def on_llm_start(
        self, serialized: dict[str, Any], prompts: list[str], *, run_id: UUID, **kwargs: Any
    ) -> None:
        """An LLM run started."""

    async def on_llm_new_token(self, token: str, *, run_id: UUID, **kwargs: Any) -> None:
        """An LLM produced a chunk."""

    async def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """An LLM run finished."""

    async def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """An LLM run failed."""

    async def on_llm_cancel(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """The consumer stopped an LLM run early."""

    async def on_chain_start(
        self, serialized: dict[str, Any] | None, inputs: Any, *, run_id: UUID, **kwargs: Any
    ) -> None:
        """A chain-like run started."""

    async def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A chain-like run finished."""

    async def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        """A chain-like run failed."""

    async def on_chain_cancel(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """The consumer stopped a chain-like run early."""

    async def on_custom_event(self, name: str, data: Any, *, run_id: UUID, **kwargs: Any) -> None:
        """A custom event was dispatched inside a run."""


class CallbackManager:
    """What a parent run hands its children: inherited handlers, the parent's id and
    ancestry, and tags for the child only (such as ``seq:step:2``)."""

    __slots__ = ("handlers", "lineage", "parent_run_id", "tags")

    def __init__(
        self,
        handlers: Sequence[Any],
        *,
        parent_run_id: UUID | None = None,
        lineage: tuple[UUID, ...] = (),
        tags: Sequence[str] = (),
    ) -> None:
        self.handlers = list(handlers)
        self.parent_run_id = parent_run_id
        self.lineage = lineage
        self.tags = list(tags)

    def with_handlers(self, extra: Sequence[Any]) -> CallbackManager:
        """A copy with more handlers."""
        return CallbackManager(
            [*self.handlers, *extra],
            parent_run_id=self.parent_run_id,
            lineage=self.lineage,
            tags=self.tags,
        )

    def __repr__(self) -> str:
        return f"CallbackManager(handlers={self.handlers!r}, parent_run_id={self.parent_run_id})"


Pending = list[tuple[Any, Awaitable[Any]]]


def _failed(handler: Any, method: str, exc: Exception) -> None:
    if getattr(handler, "raise_error", False) and not isinstance(exc, NotImplementedError):
        raise exc
    import logging

    logging.getLogger("lmstream.callbacks").warning(
        "Error in %s.%s callback: %r", type(handler).__name__, method, exc
    )


def dispatch(
    handlers: Sequence[Any], method: str, ignore: str | None, *args: Any, **kwargs: Any
) -> Pending:
    """Call ``method`` on every handler; return the coroutines async handlers gave back."""
    pending: Pending = []
    for handler in handlers:
        if ignore is not None and getattr(handler, ignore, False):
            continue
        fn = getattr(handler, method, None)
        if fn is None:
            continue
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            _failed(handler, method, exc)
            continue
        if result is not None and hasattr(result, "__await__"):
            pending.append((handler, result))
    return pending


async def _await_all(pending: Pending, method: str) -> None:
    for handler, awaitable in pending:
        try:
            await awaitable
        except Exception as exc:
            _failed(handler, method, exc)


def drain(pending: Pending, method: str) -> None:
    """Run async handlers' coroutines from sync code (on the background loop)."""
    run_sync(_await_all(pending, method))


async def drain_async(pending: Pending, method: str) -> None:
    """Await async handlers' coroutines in order."""
    await _await_all(pending, method)
