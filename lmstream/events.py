"""``astream_events``: every run inside a call, as a stream of event dicts (v2 and v1).

An ``EventStream`` is a sink that runs report to directly (no callback dispatch). It
turns each lifecycle call into one event dict at once, filtered per run when the run
starts, and appends it to a queue; the consumer is woken only when it is waiting. The
work runs in a background task so events of steps whose output does not stream (a
token stream inside a blocking lambda) still arrive as they happen. Cost per event is
O(1) in time and memory in both versions (the reference's v1 re-diffs a growing log).

Beyond the reference schema, v2 reports failures as ``on_<type>_error`` events with the
error and the partial output, and a run stopped early ends with ``data["cancelled"]``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from lmstream._accumulate import aggregate
from lmstream._types import RunnableConfig, StreamEvent
from lmstream._utils import uuid7
from lmstream.callbacks import CallbackManager, dispatch, drain, drain_async
from lmstream.chunks import LLMResult
from lmstream.config import ensure_config
from lmstream.errors import CallbackError
from lmstream.runs import STREAMING_INPUT, Run, is_event_sink

if TYPE_CHECKING:
    import asyncio
    from uuid import UUID

    from lmstream.runnable import Runnable

__all__ = ["EventFilter", "EventStream", "adispatch_custom_event", "dispatch_custom_event"]

_HIGH_WATER = 4096  # events queued before the producer waits for the consumer
_TYPES = {"llm": "llm", "chat_model": "chat_model", "prompt": "prompt", "parser": "parser"}


class EventFilter:
    """The reference's include/exclude filters over run names, types and tags."""

    def __init__(
        self,
        include_names: Sequence[str] | None = None,
        include_types: Sequence[str] | None = None,
        include_tags: Sequence[str] | None = None,
        exclude_names: Sequence[str] | None = None,
        exclude_types: Sequence[str] | None = None,
        exclude_tags: Sequence[str] | None = None,
    ) -> None:
        self.include_names = include_names
        self.include_types = include_types
        self.include_tags = include_tags
        self.exclude_names = exclude_names
        self.exclude_types = exclude_types
        self.exclude_tags = exclude_tags

    def admits(self, name: str, run_type: str, tags: Sequence[str]) -> bool:
        """Whether events of a run with this name, type and tags pass."""
        include = self.include_names is None and self.include_types is None
        include = include and self.include_tags is None
        if self.include_names is not None:
            include = include or name in self.include_names
        if self.include_types is not None:
            include = include or run_type in self.include_types
        if self.include_tags is not None:
            include = include or any(t in self.include_tags for t in tags)
        if self.exclude_names is not None:
            include = include and name not in self.exclude_names
        if self.exclude_types is not None:
            include = include and run_type not in self.exclude_types
        if self.exclude_tags is not None:
            include = include and all(t not in self.exclude_tags for t in tags)
        return include


class _Info:
    __slots__ = (
        "admitted", "as_text", "kind", "llm", "metadata", "name", "parent_ids", "rid", "root",
        "stream_event", "tags", "template",
    )  # fmt: skip

    def __init__(self, run: Run, rid: str, parent_ids: list[str], root: bool, admitted: bool):
        self.kind = _TYPES.get(run.run_type, "chain")
        self.llm = run.is_llm
        self.name = run.name
        self.rid = rid
        self.parent_ids = parent_ids
        self.root = root
        self.admitted = admitted
        self.tags = run.tags
        self.metadata = run.metadata
        self.stream_event = f"on_{self.kind}_stream"
        self.as_text = False  # whether stream chunks are sent as text (set by the stream)
        self.template: dict[str, Any] = {}  # a stream event but its data, made once per run


class EventStream:
    """The sink behind one ``astream_events`` call (an ``EventSink``)."""

    def __init__(
        self,
        version: str,
        root_id: UUID,
        filters: EventFilter,
        loop: asyncio.AbstractEventLoop,
        root_config: RunnableConfig,
        root_input: Any,
    ) -> None:
        self.v1 = version == "v1"
        self.root_input = root_input
        self.root_id = root_id
        self.filters = filters
        self.loop = loop
        self.thread = threading.get_ident()
        self.root_config = root_config
        self.queue: deque[Any] = deque()
        self.waiter: asyncio.Future[None] | None = None
        self.drained: asyncio.Future[None] | None = None
        self.runs: dict[Run, _Info] = {}
        self.ids: dict[UUID, _Info] = {}
        self.root_seen = False
        self.rewritten: str | None = None  # v2: the run whose first event got the root input

    # -- the queue ----------------------------------------------------------------------

    def _push(self, event: Any) -> None:
        self.queue.append(event)
        if self.waiter is not None:
            self._wake()

    def _wake(self) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is None:
            return
        if threading.get_ident() == self.thread:
            if not waiter.done():
                waiter.set_result(None)
        else:
            self.loop.call_soon_threadsafe(_wake, waiter)

    def _event(self, info: _Info, event: str, data: dict[str, Any]) -> dict[str, Any]:
        if not self.v1:  # the first run event carries the root's input; its end does not
            if self.rewritten is None:
                self.rewritten = info.rid
                data = {**data, "input": self.root_input}
            elif info.rid == self.rewritten and event.endswith(("_end", "_error")):
                data = {k: v for k, v in data.items() if k != "input"}
        return {
            "event": event,
            "name": info.name,
            "run_id": info.rid,
            "tags": info.tags,
            "metadata": info.metadata,
            "parent_ids": [] if self.v1 else info.parent_ids,
            "data": data,
        }

    # -- what runs report ---------------------------------------------------------------

    def run_started(self, run: Run) -> None:
        """A run began."""
        root = run.id == self.root_id
        parent = self.ids.get(run.parent_id) if run.parent_id is not None else None
        parent_ids = [*parent.parent_ids, parent.rid] if parent is not None else []
        admitted = self.filters.admits(run.name, _TYPES.get(run.run_type, "chain"), run.tags)
        info = _Info(run, str(run.id), parent_ids, root, admitted)
        info.as_text = run.run_type == "llm" and (root or self.v1)
        if root:
            self.root_seen = True
            if self.v1:
                info.tags = list(self.root_config.get("tags", []))
                info.metadata = dict(self.root_config.get("metadata", {}))
        self.runs[run] = info
        self.ids[run.id] = info
        if admitted:
            info.template = {
                "event": info.stream_event, "name": info.name, "run_id": info.rid,
                "tags": info.tags, "metadata": info.metadata,
                "parent_ids": [] if self.v1 else info.parent_ids,
            }  # fmt: skip
            self._push(self._event(info, f"on_{info.kind}_start", self._start_data(run, info)))

    def _start_data(self, run: Run, info: _Info) -> dict[str, Any]:
        if info.root and self.v1:
            return {"input": self.root_input}
        if run.inputs is STREAMING_INPUT:
            return {}
        return {"input": run.inputs}

    def run_chunk(self, run: Run, chunk: Any) -> None:
        """A run streamed a chunk of output."""
        info = self.runs.get(run)
        if info is None or not info.admitted:
            return
        event = info.template.copy()
        event["data"] = {"chunk": chunk.text if info.as_text else chunk}
        self.queue.append(event)  # _push, inlined on the per-token path
        if self.waiter is not None:
            self._wake()

    def run_finished(
        self, run: Run, outcome: str, payload: Any, error: BaseException | None
    ) -> None:
        """A run ended: ``outcome`` is "finished", "failed" or "cancelled"."""
        info = self.runs.pop(run, None)
        if info is None or not info.admitted:
            return
        if outcome == "failed" and not self.v1:
            data = {"error": error, **self._end_data(run, info, payload)}
            self._push(self._event(info, f"on_{info.kind}_error", data))
            return
        if outcome == "failed" and info.root:
            return  # v1 has no root end for a failed root
        data = self._end_data(run, info, None if outcome == "failed" and not info.llm else payload)
        if outcome == "cancelled":
            data["cancelled"] = True
        self._push(self._event(info, f"on_{info.kind}_end", data))

    def _end_data(self, run: Run, info: _Info, output: Any) -> dict[str, Any]:
        if isinstance(output, LLMResult):
            message = getattr(output.generations[0][0], "message", None)
            if message is not None:  # a chat model's events carry its message
                output = message
            elif self.v1 and info.root:
                return {"output": output.generations[0][0].text}
            else:
                output = output.to_dict(full=self.v1)
        if self.v1 and info.root:
            return {"output": output}
        if run.inputs is STREAMING_INPUT:
            return {"output": output, "input": {}} if not self.v1 else {"output": output}
        return {"output": output, "input": run.inputs}

    def custom_event(
        self, name: str, data: Any, run_id: UUID, tags: list[str], metadata: dict[str, Any]
    ) -> None:
        """A custom event dispatched inside the run ``run_id`` (v2 only)."""
        if self.v1 or not self.filters.admits(name, name, tags):
            return
        parent = self.ids.get(run_id)
        parent_ids = parent.parent_ids if parent is not None else []
        self._push(
            {
                "event": "on_custom_event",
                "name": name,
                "run_id": str(run_id),
                "tags": tags,
                "metadata": metadata,
                "parent_ids": parent_ids,
                "data": data,
            }
        )

    # -- runnables that never start a run of their own ----------------------------------

    def synthetic(self, runnable: Runnable[Any, Any], event: str, data: dict[str, Any]) -> None:
        """An event for a root that reports no run (a custom runnable's own ``astream``)."""
        name = self.root_config.get("run_name") or runnable.get_name()
        tags, metadata = self.root_config.get("tags", []), self.root_config.get("metadata", {})
        if self.filters.admits(name, "chain", tags):
            info = _FakeInfo(name, str(self.root_id), tags, metadata)
            self._push(self._event(info, event, data))  # type: ignore[arg-type]


class _FakeInfo:
    def __init__(self, name: str, rid: str, tags: list[str], metadata: dict[str, Any]) -> None:
        self.name, self.rid, self.tags, self.metadata = name, rid, tags, metadata
        self.parent_ids: list[str] = []


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_END: Any = object()


async def _produce(
    runnable: Runnable[Any, Any],
    input: Any,
    config: RunnableConfig,
    kwargs: dict[str, Any],
    sink: EventStream,
) -> None:
    chunks: list[Any] = []
    try:
        async for chunk in runnable.astream(input, config, **kwargs):
            if not sink.root_seen:
                if not chunks:
                    sink.synthetic(runnable, "on_chain_start", {"input": input})
                chunks.append(chunk)
                sink.synthetic(runnable, "on_chain_stream", {"chunk": chunk})
            if len(sink.queue) > _HIGH_WATER:
                sink.drained = sink.loop.create_future()
                await sink.drained
        if chunks and not sink.root_seen:
            sink.synthetic(runnable, "on_chain_end", {"output": aggregate(chunks)})
    except BaseException as exc:
        sink._push((_END, exc))
        raise
    sink._push((_END, None))


def _prepare(config: RunnableConfig | None) -> tuple[RunnableConfig, UUID]:
    cfg = ensure_config(config)
    root_id = cfg.get("run_id") or uuid7()
    cfg["run_id"] = root_id
    return cfg, root_id


def _attach(cfg: RunnableConfig, sink: EventStream) -> None:
    callbacks = cfg.get("callbacks")
    if isinstance(callbacks, CallbackManager):
        cfg["callbacks"] = callbacks.with_handlers([sink])
    else:
        cfg["callbacks"] = [*(callbacks or []), sink]


async def astream_events(
    runnable: Runnable[Any, Any],
    input: Any,
    config: RunnableConfig | None,
    version: str,
    filters: EventFilter,
    kwargs: dict[str, Any],
) -> AsyncIterator[StreamEvent]:
    """Run ``runnable.astream`` and yield the events of every run inside it."""
    if version not in ("v1", "v2"):
        raise NotImplementedError(f"Unsupported version: {version!r}. Expected 'v1' or 'v2'.")
    cfg, root_id = _prepare(config)
    import asyncio

    loop = asyncio.get_running_loop()
    sink = EventStream(version, root_id, filters, loop, dict(cfg), input)  # type: ignore[arg-type]
    _attach(cfg, sink)
    task = loop.create_task(_produce(runnable, input, cfg, kwargs, sink))
    try:
        while True:
            queue = sink.queue
            if not queue:
                if sink.drained is not None and not sink.drained.done():
                    sink.drained.set_result(None)
                sink.waiter = waiter = loop.create_future()
                if not queue:
                    await waiter
                continue
            event = queue.popleft()
            if type(event) is tuple:
                if event[1] is not None:
                    raise event[1]
                return
            yield event
    finally:
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _parent(config: RunnableConfig | None) -> tuple[RunnableConfig, CallbackManager]:
    cfg = ensure_config(config)
    callbacks = cfg.get("callbacks")
    if isinstance(callbacks, CallbackManager) and not callbacks.handlers:
        return cfg, callbacks  # inside a run nobody listens to: nothing to send
    if not isinstance(callbacks, CallbackManager) or callbacks.parent_run_id is None:
        raise CallbackError(
            "Unable to dispatch a custom event without a parent run: call it from inside "
            "a runnable (a lambda or generator step), or pass that step's config."
        )
    return cfg, callbacks


def _send_custom(name: str, data: Any, config: RunnableConfig | None) -> Any:
    cfg, manager = _parent(config)
    run_id = manager.parent_run_id
    if run_id is None:
        return []
    tags, metadata = list(cfg.get("tags", [])), dict(cfg.get("metadata", {}))
    handlers = []
    for handler in manager.handlers:
        if is_event_sink(handler):
            handler.custom_event(name, data, run_id, tags, metadata)
        else:
            handlers.append(handler)
    return dispatch(
        handlers, "on_custom_event", "ignore_custom_event", name, data,
        run_id=run_id, tags=tags, metadata=metadata,
    )  # fmt: skip


def dispatch_custom_event(name: str, data: Any, *, config: RunnableConfig | None = None) -> None:
    """Send a custom event to the handlers and event streams of the current run."""
    if pending := _send_custom(name, data, config):
        drain(pending, "custom_event")


async def adispatch_custom_event(
    name: str, data: Any, *, config: RunnableConfig | None = None
) -> None:
    """Async ``dispatch_custom_event``."""
    if pending := _send_custom(name, data, config):
        await drain_async(pending, "custom_event")
