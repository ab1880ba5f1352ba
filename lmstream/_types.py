"""The vocabulary shared by every module: config and event dicts, input aliases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypedDict, Union

if TYPE_CHECKING:
    import uuid

    from lmstream.callbacks import CallbackManager
    from lmstream.prompts import PromptValue

__all__ = [
    "Callbacks",
    "Configs",
    "EventData",
    "LanguageModelInput",
    "RunnableConfig",
    "StreamEvent",
]

Callbacks = Union[Sequence[Any], "CallbackManager", None]
"""Handlers for a call: ``None``, a list of handler objects, or a manager from a parent run."""

LanguageModelInput = Union[str, "PromptValue", Sequence[Any]]
"""A prompt: a string, a prompt value, or a list of messages (``(role, content)`` or dicts)."""


class RunnableConfig(TypedDict, total=False):
    """Per-call configuration, with the reference's keys and meaning."""

    tags: list[str]
    metadata: dict[str, Any]
    callbacks: Callbacks
    run_name: str
    max_concurrency: int | None
    recursion_limit: int
    configurable: dict[str, Any]
    run_id: uuid.UUID | None
    strict: bool
    """lmstream extension: raise instead of silently buffering a stream (inherited)."""


Configs = RunnableConfig | Sequence[RunnableConfig] | None
"""The config of a batch: one for every input, or one per input."""


class EventData(TypedDict, total=False):
    """The ``data`` of a stream event; which keys appear depends on the event."""

    input: Any
    output: Any
    chunk: Any
    error: BaseException
    cancelled: bool


class StreamEvent(TypedDict, total=False):
    """One event of ``astream_events``: the reference's v1/v2 dict schema."""

    event: str
    name: str
    run_id: str
    parent_ids: list[str]
    tags: list[str]
    metadata: dict[str, Any]
    data: EventData
