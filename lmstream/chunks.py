"""The data a model produces: chunks, generations, usage, results. Pure, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "FinishReason",
    "Generation",
    "GenerationChunk",
    "LLMResult",
    "Usage",
    "merge_info",
]

FinishReason = Literal["stop", "length", "cancelled", "error"]
"""How a generation ended: a stop sequence or end of text, the token limit,
the consumer stopped reading, or the run failed."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one run. ``estimated`` is true when counted by lmstream, not the backend."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    estimated: bool = False

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int, *, estimated: bool = False) -> Usage:
        """Usage with ``total_tokens`` filled in."""
        return cls(prompt_tokens, completion_tokens, prompt_tokens + completion_tokens, estimated)

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.total_tokens + other.total_tokens,
            self.estimated or other.estimated,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict in OpenAI's shape, plus ``estimated``."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "estimated": self.estimated,
        }


def _merge_value(old: Any, new: Any) -> Any:
    if isinstance(old, Usage) and isinstance(new, Usage):
        return old + new
    if isinstance(old, dict) and isinstance(new, dict):
        return merge_info(old, new)
    if isinstance(old, list) and isinstance(new, list):
        return old + new
    return new


def merge_info(left: dict[str, Any] | None, right: dict[str, Any] | None) -> dict[str, Any] | None:
    """Merge generation metadata: scalars keep the last value, usage adds, dicts merge,
    lists concatenate, ``None`` never overwrites. No ``"stopstop"``."""
    if not right:
        return None if left is None else dict(left)
    if not left:
        return {k: v for k, v in right.items() if v is not None}
    out = dict(left)
    for key, value in right.items():
        if value is None:
            continue
        old = out.get(key)
        out[key] = value if old is None else _merge_value(old, value)
    return out


@dataclass(slots=True)
class Generation:
    """One complete candidate output of a model."""

    text: str = ""
    generation_info: dict[str, Any] | None = None

    @property
    def type(self) -> str:
        """Always ``"Generation"``, as in the reference schema."""
        return "Generation"

    @property
    def finish_reason(self) -> str | None:
        """Why the generation ended, when known."""
        info = self.generation_info
        return None if info is None else info.get("finish_reason")

    @property
    def usage(self) -> Usage | None:
        """Token counts, when known."""
        info = self.generation_info
        value = None if info is None else info.get("usage")
        return value if isinstance(value, Usage) else None

    def to_dict(self) -> dict[str, Any]:
        """The reference's serialised shape: ``{"text", "generation_info", "type"}``."""
        return {"text": self.text, "generation_info": self.generation_info, "type": "Generation"}


@dataclass(slots=True)
class GenerationChunk(Generation):
    """A piece of a generation; chunks add up with ``+``."""

    def __add__(self, other: GenerationChunk) -> GenerationChunk:
        if not isinstance(other, GenerationChunk):
            raise TypeError(
                f"unsupported operand type(s) for +: 'GenerationChunk' and '{type(other).__name__}'"
            )
        return GenerationChunk(
            self.text + other.text, merge_info(self.generation_info, other.generation_info)
        )


@dataclass(slots=True)
class LLMResult:
    """The result of generating for a list of prompts: one list of candidates per prompt."""

    generations: list[list[Generation]]
    llm_output: dict[str, Any] | None = None
    run: list[Any] | None = field(default=None, compare=False)

    @property
    def type(self) -> str:
        """Always ``"LLMResult"``."""
        return "LLMResult"

    def to_dict(self, *, full: bool = False) -> dict[str, Any]:
        """``{"generations", "llm_output"}``; ``full`` adds ``run`` and ``type`` (v1 shape)."""
        out: dict[str, Any] = {
            "generations": [[g.to_dict() for g in gens] for gens in self.generations],
            "llm_output": self.llm_output,
        }
        if full:
            out["run"] = None
            out["type"] = "LLMResult"
        return out
