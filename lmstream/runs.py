"""One ``Run`` per call of a runnable: the single place that owns run bookkeeping.

A run has an id, a parent, a name, a type, tags and metadata. It reports its lifecycle
once to everyone listening: callback handlers (the reference's ``on_*`` protocol) and
event sinks (``astream_events``). Every run ends exactly one way: ``end`` (finished),
``fail`` (an error, with the partial output) or ``cancel`` (the consumer stopped early,
which is not an error). Later terminal calls are ignored.

Each lifecycle method has a sync form, which runs async handlers on the background loop,
and an async form (``a``-prefixed), which awaits them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from lmstream._otel import observer
from lmstream._types import RunnableConfig
from lmstream._utils import is_cancel, uuid7
from lmstream.callbacks import CallbackManager, Pending, dispatch, drain, drain_async
from lmstream.chunks import LLMResult
from lmstream.message_input import get_buffer_string

if TYPE_CHECKING:
    from uuid import UUID


__all__ = ["STREAMING_INPUT", "EventSink", "Run", "is_event_sink", "serialized"]


class _StreamingInput:
    """The input of a streaming step that has not been read yet."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "STREAMING_INPUT"


STREAMING_INPUT: Any = _StreamingInput()
_PLACEHOLDER = {"input": ""}  # what handlers see for STREAMING_INPUT, as in the reference
SILENT = CallbackManager([])
"""The callbacks of runs inside a run that nobody listens to."""

_SERIALIZED: dict[type, dict[str, Any]] = {}
_NO_EXTRA: dict[str, Any] = {}  # the ``extra`` of runs given none: read, never written


def serialized(owner: Any, name: str) -> dict[str, Any]:
    """The reference's ``serialized`` dict for a non-serializable object."""
    cls = type(owner)
    base = _SERIALIZED.get(cls)
    if base is None:
        base = {
            "lc": 1,
            "type": "not_implemented",
            "id": [*cls.__module__.split("."), cls.__name__],
        }
        _SERIALIZED[cls] = base
    return {**base, "name": name}


@runtime_checkable
class EventSink(Protocol):
    """What runs report to directly, without callback dispatch (``astream_events``):
    a handler with these methods is a sink, not a callback handler."""

    def run_started(self, run: Run) -> None:
        """``run`` started."""

    def run_chunk(self, run: Run, chunk: Any) -> None:
        """``run`` streamed ``chunk``."""

    def run_finished(
        self, run: Run, outcome: str, payload: Any, error: BaseException | None
    ) -> None:
        """``run`` ended: ``outcome`` is finished, failed or cancelled."""

    def custom_event(
        self, name: str, data: Any, run_id: UUID, tags: list[str], metadata: dict[str, Any]
    ) -> None:
        """A custom event was dispatched inside the run ``run_id``."""


_SINK_TYPES: dict[type, bool] = {}


def is_event_sink(handler: Any) -> bool:
    """Whether ``handler`` is an ``EventSink`` (decided once per class: the check is slow)."""
    cls = type(handler)
    known = _SINK_TYPES.get(cls)
    if known is None:
        known = _SINK_TYPES[cls] = isinstance(handler, EventSink)
    return known


def _split(handlers: list[Any]) -> tuple[list[EventSink], list[Any]]:
    """(the event sinks, the callback handlers) among ``handlers``, in their order."""
    sinks: list[EventSink] = []
    others: list[Any] = []
    for handler in handlers:
        (sinks if is_event_sink(handler) else others).append(handler)
    return sinks, others


def _unique(tags: list[str]) -> list[str]:
    return list(dict.fromkeys(tags)) if len(tags) > 1 else tags


class Run:
    """The record of one call: identity, listeners and outcome."""

    __slots__ = (
        "_id",
        "extra",
        "handlers",
        "inherited",
        "inputs",
        "is_llm",
        "lineage",
        "listening",
        "metadata",
        "name",
        "outcome",
        "owner",
        "parent_id",
        "run_type",
        "sinks",
        "tags",
    )

    def __init__(
        self,
        config: RunnableConfig,
        *,
        owner: Any,
        name: str,
        run_type: str,
        inputs: Any,
        local_tags: Sequence[str] = (),
        local_metadata: dict[str, Any] | None = None,
        local_callbacks: Sequence[Any] = (),
        extra: dict[str, Any] | None = None,
    ) -> None:
        callbacks = config.get("callbacks")
        step_tags: Sequence[str] = ()
        if isinstance(callbacks, CallbackManager):
            inherited = callbacks.handlers
            self.parent_id: UUID | None = callbacks.parent_run_id
            self.lineage = callbacks.lineage
            step_tags = callbacks.tags
        else:
            inherited = list(callbacks) if callbacks else []
            self.parent_id = None
            self.lineage = ()
        self.inherited = inherited
        everyone = [*inherited, *local_callbacks] if local_callbacks else inherited
        if everyone:
            self.sinks, self.handlers = _split(everyone)
        else:  # nobody listens: the empty list serves as both
            self.sinks = self.handlers = everyone
        if (recorder := observer(run_type)) is not None:  # OpenTelemetry, when it is set up
            self.sinks = [*self.sinks, recorder]  # a sink, reported to after the others
        self.listening = bool(everyone) or recorder is not None
        self._id: UUID | None = config.get("run_id")
        self.owner = owner
        self.name = config.get("run_name") or name
        self.run_type = run_type
        self.is_llm = run_type in ("llm", "chat_model")
        tags = [*step_tags, *config.get("tags", ()), *local_tags]
        self.tags = _unique(tags)
        metadata = config.get("metadata") or {}
        self.metadata = {**metadata, **local_metadata} if local_metadata else dict(metadata)
        self.inputs = inputs
        self.extra = extra or _NO_EXTRA
        self.outcome: str | None = None

    @property
    def id(self) -> UUID:
        """The run id, made when first asked for (runs nobody watches never need one)."""
        if self._id is None:
            self._id = uuid7()
        return self._id

    def report_chunk(self, chunk: Any) -> Pending:
        """Report a chunk; the coroutines of async handlers are returned, not awaited."""
        for sink in self.sinks:
            sink.run_chunk(self, chunk)
        if self.is_llm and self.handlers:
            return dispatch(
                self.handlers, "on_llm_new_token", "ignore_llm", chunk.text, chunk=chunk,
                **self._ids(),
            )  # fmt: skip
        return []

    def child(self, tag: str | None = None) -> CallbackManager:
        """The callbacks for a child run: inherited handlers, this run as parent (when
        nobody listens, a shared empty manager: the child is inside a run, unwatched)."""
        if not self.listening:
            return SILENT
        return CallbackManager(
            self.inherited,
            parent_run_id=self.id,
            lineage=(*self.lineage, self.id),
            tags=(tag,) if tag else (),
        )

    def _ids(self) -> dict[str, Any]:
        return {"run_id": self.id, "parent_run_id": self.parent_id, "tags": self.tags}

    # -- the events, once: each returns the coroutines of async handlers -------------

    def _start(self) -> Pending:
        for sink in self.sinks:
            sink.run_started(self)
        if not self.handlers:
            return []
        ser = serialized(self.owner, self.name)
        if self.run_type == "chat_model":
            return self._chat_start(ser)
        if self.is_llm:
            return dispatch(
                self.handlers, "on_llm_start", "ignore_llm", ser, self.inputs["prompts"],
                metadata=self.metadata, name=self.name, **self._ids(), **self.extra,
            )  # fmt: skip
        inputs = _PLACEHOLDER if self.inputs is STREAMING_INPUT else self.inputs
        return dispatch(
            self.handlers, "on_chain_start", "ignore_chain", ser, inputs,
            metadata=self.metadata, name=self.name, run_type=self.run_type, **self._ids(),
        )  # fmt: skip

    def _chat_start(self, ser: dict[str, Any]) -> Pending:
        """``on_chat_model_start`` with the messages, or ``on_llm_start`` with them as text
        for handlers that only know text models (as the reference falls back)."""
        chat = [h for h in self.handlers if hasattr(h, "on_chat_model_start")]
        text = [h for h in self.handlers if not hasattr(h, "on_chat_model_start")]
        kwargs = {"metadata": self.metadata, "name": self.name, **self._ids(), **self.extra}
        pending = dispatch(chat, "on_chat_model_start", "ignore_chat_model", ser,
                           self.inputs["messages"], **kwargs)  # fmt: skip
        if text:
            prompts = [get_buffer_string(m) for m in self.inputs["messages"]]
            pending += dispatch(text, "on_llm_start", "ignore_llm", ser, prompts, **kwargs)
        return pending

    def _finish(self, outcome: str, payload: Any, error: BaseException | None) -> Pending:
        if self.outcome is not None:
            return []
        self.outcome = outcome
        if not self.listening:
            return []
        for sink in self.sinks:
            sink.run_finished(self, outcome, payload, error)
        if not self.handlers:
            return []
        family, ignore = ("llm", "ignore_llm") if self.is_llm else ("chain", "ignore_chain")
        if outcome == "finished":
            extra = {} if self.is_llm else {"inputs": _known(self.inputs)}
            return dispatch(
                self.handlers, f"on_{family}_end", ignore, payload, **self._ids(), **extra
            )
        if outcome == "cancelled":
            return dispatch(self.handlers, f"on_{family}_cancel", ignore, payload, **self._ids())
        extra = {"response": payload} if self.is_llm else {"inputs": _known(self.inputs)}
        return dispatch(self.handlers, f"on_{family}_error", ignore, error, **self._ids(), **extra)

    # -- sync and async shells ----------------------------------------------------------

    def start(self) -> None:
        """Report the start."""
        if self.listening and (pending := self._start()):
            drain(pending, "start")

    def chunk(self, chunk: Any) -> None:
        """Report a chunk of streamed output."""
        if pending := self.report_chunk(chunk):
            drain(pending, "chunk")

    def end(self, output: Any) -> None:
        """Report success; for LLM runs ``output`` is an LLMResult."""
        if pending := self._finish("finished", output, None):
            drain(pending, "end")

    def fail(self, error: BaseException, partial: Any = None) -> None:
        """Report failure with what was produced so far."""
        if pending := self._finish("failed", partial, error):
            drain(pending, "error")

    def cancel(self, partial: Any = None) -> None:
        """Report that the consumer stopped the run early."""
        if pending := self._finish("cancelled", partial, None):
            drain(pending, "cancel")

    def settle(self, exc: BaseException, partial: Any = None) -> None:
        """Report a run cut short by ``exc``: cancelled if the consumer stopped, else failed."""
        if is_cancel(exc):
            self.cancel(partial)
        else:
            self.fail(exc, partial)

    async def astart(self) -> None:
        """Report the start."""
        if self.listening and (pending := self._start()):
            await drain_async(pending, "start")

    async def achunk(self, chunk: Any) -> None:
        """Report a chunk of streamed output."""
        if pending := self.report_chunk(chunk):
            await drain_async(pending, "chunk")

    async def aend(self, output: Any) -> None:
        """Report success."""
        if pending := self._finish("finished", output, None):
            await drain_async(pending, "end")

    async def afail(self, error: BaseException, partial: Any = None) -> None:
        """Report failure with what was produced so far."""
        if pending := self._finish("failed", partial, error):
            await drain_async(pending, "error")

    async def acancel(self, partial: Any = None) -> None:
        """Report that the consumer stopped the run early."""
        if pending := self._finish("cancelled", partial, None):
            await drain_async(pending, "cancel")

    async def asettle(self, exc: BaseException, partial: Any = None) -> None:
        """Report a run cut short by ``exc``: cancelled if the consumer stopped, else failed."""
        if is_cancel(exc):
            await self.acancel(partial)
        else:
            await self.afail(exc, partial)


def _known(inputs: Any) -> Any:
    return None if inputs is STREAMING_INPUT else inputs


def llm_result(text: str, info: dict[str, Any] | None) -> LLMResult:
    """The one-prompt LLMResult for a finished or partial generation."""
    from lmstream.chunks import Generation

    return LLMResult(generations=[[Generation(text=text, generation_info=info)]])
