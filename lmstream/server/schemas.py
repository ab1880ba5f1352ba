"""Request bodies of the server's endpoints (they make the OpenAPI document)."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

__all__ = [
    "BatchRequest",
    "ChatCompletionRequest",
    "CompletionRequest",
    "EventsRequest",
    "InvokeRequest",
    "RunConfig",
    "RunKwargs",
    "StreamOptions",
    "extra_fields",
]

MAX_LIST = 10_000
"""Items in any list of a request (prompts, inputs); the server's own limits are lower."""
MAX_STOPS, MAX_STOP_CHARS = 16, 256
MAX_TAGS, MAX_NAME_CHARS = 64, 256
MAX_METADATA_BYTES, MAX_DEPTH = 65_536, 32

StopText = Annotated[str, StringConstraints(max_length=MAX_STOP_CHARS)]
Stop = StopText | Annotated[list[StopText], Field(max_length=MAX_STOPS)] | None
Name = Annotated[str, StringConstraints(max_length=MAX_NAME_CHARS)]
UNSUPPORTED = frozenset(
    [
        *("top_k", "min_p", "typical_p", "tfs_z", "repetition_penalty", "repeat_penalty"),
        *("length_penalty", "mirostat", "mirostat_mode", "mirostat_tau", "mirostat_eta"),
        *("grammar", "json_schema", "guided_json", "guided_regex"),
        *("guided_choice", "guided_grammar", "tools", "tool_choice", "functions"),
        *("function_call", "top_logprobs", "prompt_logprobs", "min_tokens", "ignore_eos"),
        *("n_probs", "use_beam_search", "include_stop_str_in_output"),
    ]
)
"""Known generation parameters the server cannot honour: refused, never ignored."""


def extra_fields(body: BaseModel, prefix: str = "") -> list[str]:
    """The request fields no schema knows, nested ones as ``kwargs.top_k``."""
    names = [prefix + str(name) for name in body.model_extra or {}]
    for name in type(body).model_fields:
        value = getattr(body, name)
        if isinstance(value, BaseModel):
            names += extra_fields(value, f"{prefix}{name}.")
    return names


def _check_depth(value: Any) -> None:
    """Refuse what nests deeper than ``MAX_DEPTH`` or holds a non-finite number,
    without recursion (so no depth makes the check itself fail)."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"nests deeper than {MAX_DEPTH} levels")
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError("holds a number that is not finite (NaN or Infinity)")
        if isinstance(item, dict):
            stack += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            stack += [(v, depth + 1) for v in item]


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options``."""

    include_usage: bool = False


class CompletionRequest(BaseModel):
    """OpenAI's legacy completions request; unsupported options are refused, not ignored."""

    model_config = ConfigDict(extra="allow")  # unknown fields are logged and ignored

    model: str = Field(max_length=256)
    prompt: str | Annotated[list[str], Field(max_length=MAX_LIST)]
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

    model_config = ConfigDict(extra="allow")

    tags: list[Name] = Field(default_factory=list, max_length=MAX_TAGS)
    metadata: dict[str, Any] = Field(default_factory=dict)
    run_name: str | None = Field(None, max_length=MAX_NAME_CHARS)

    @field_validator("metadata")
    @classmethod
    def _bounded(cls, metadata: dict[str, Any]) -> dict[str, Any]:
        _check_depth(metadata)
        if len(json.dumps(metadata)) > MAX_METADATA_BYTES:
            raise ValueError(f"is larger than {MAX_METADATA_BYTES} bytes as JSON")
        return metadata


class RunKwargs(BaseModel):
    """Generation parameters a client may pass to the model."""

    model_config = ConfigDict(extra="allow")

    max_tokens: int | None = Field(None, ge=0)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = None
    stop: Stop = None
    response_format: dict[str, Any] | None = None


class InvokeRequest(BaseModel):
    """``/invoke`` and ``/stream``: one input."""

    model_config = ConfigDict(extra="allow")

    input: str | list[Any]
    config: RunConfig = Field(default_factory=RunConfig)
    kwargs: RunKwargs = Field(default_factory=RunKwargs)
    model: str | None = Field(None, max_length=256)

    @field_validator("input")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        _check_depth(value)
        return value


class EventsRequest(InvokeRequest):
    """``/stream_events``: one input, and the event schema version."""

    version: Literal["v1", "v2"] = "v2"


class BatchRequest(BaseModel):
    """``/batch``: many inputs, each with its own result or error."""

    model_config = ConfigDict(extra="allow")

    inputs: list[str | list[Any]] = Field(max_length=MAX_LIST)
    config: RunConfig = Field(default_factory=RunConfig)
    kwargs: RunKwargs = Field(default_factory=RunKwargs)
    model: str | None = Field(None, max_length=256)
    max_concurrency: int | None = Field(None, ge=1, le=64)

    @field_validator("inputs")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        _check_depth(value)
        return value


Json = dict[str, Any]


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completions request; unsupported options are refused, not ignored."""

    model_config = ConfigDict(extra="allow")  # unknown fields are logged and ignored

    model: str = Field(max_length=256)
    messages: Annotated[list[Json], Field(min_length=1, max_length=MAX_LIST)]
    max_tokens: int | None = Field(None, ge=0)
    max_completion_tokens: int | None = Field(None, ge=0)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    seed: int | None = None
    tools: Annotated[list[Json], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | Json | None = None
    parallel_tool_calls: bool | None = None
    response_format: Json | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @field_validator("messages", "tools", "tool_choice", "response_format")
    @classmethod
    def _bounded(cls, value: Any) -> Any:
        _check_depth(value)
        return value
