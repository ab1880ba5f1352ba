"""Request bodies of the server's endpoints (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BatchRequest",
    "CompletionRequest",
    "EventsRequest",
    "InvokeRequest",
    "RunConfig",
    "RunKwargs",
    "StreamOptions",
]

Stop = str | list[str] | None


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options``."""

    include_usage: bool = False


class CompletionRequest(BaseModel):
    """OpenAI's legacy completions request; unsupported options are refused, not ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(max_length=256)
    prompt: str | list[str]
    max_tokens: int | None = Field(None, ge=0)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None  # JSON output, where the model has it
    echo: bool = False
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None


class RunConfig(BaseModel):
    """The part of a RunnableConfig a client may set."""

    model_config = ConfigDict(extra="forbid")

    tags: list[str] = Field(default_factory=list, max_length=64)
    metadata: dict[str, Any] = Field(default_factory=dict)
    run_name: str | None = Field(None, max_length=256)


class RunKwargs(BaseModel):
    """Generation parameters a client may pass to the model."""

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(None, ge=0)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stop: Stop = None
    response_format: dict[str, Any] | None = None


class InvokeRequest(BaseModel):
    """``/invoke`` and ``/stream``: one input."""

    model_config = ConfigDict(extra="forbid")

    input: str | list[Any]
    config: RunConfig = Field(default_factory=RunConfig)
    kwargs: RunKwargs = Field(default_factory=RunKwargs)
    model: str | None = Field(None, max_length=256)


class EventsRequest(InvokeRequest):
    """``/stream_events``: one input, and the event schema version."""

    version: Literal["v1", "v2"] = "v2"


class BatchRequest(BaseModel):
    """``/batch``: many inputs, each with its own result or error."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[str | list[Any]] = Field(max_length=10_000)
    config: RunConfig = Field(default_factory=RunConfig)
    kwargs: RunKwargs = Field(default_factory=RunKwargs)
    model: str | None = Field(None, max_length=256)
    max_concurrency: int | None = Field(None, ge=1, le=64)
