"""Pure pieces of the LLM base: declared fields, run managers handed to provider hooks,
the final chunk's metadata, and turning what went wrong into a typed error."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lmstream.chunks import GenerationChunk, Usage, merge_info
from lmstream.errors import InvalidInputError, with_partial
from lmstream.runs import Run
from lmstream.settings import init_settings, settings_of

__all__ = [
    "AsyncRunManager",
    "RunManager",
    "check_stop",
    "declared_fields",
    "final_info",
    "typed_error",
]

_ARGUMENTS = ("callbacks", "metadata", "name", "tags")  # taken by every model's constructor


def declared_fields(cls: type, stop_at: type) -> dict[str, Any]:
    """The settings ``cls`` declares below ``stop_at`` (see ``lmstream.settings``)."""
    return settings_of(cls, stop_at)


def init_fields(obj: Any, stop_at: type, values: dict[str, Any]) -> None:
    """Set declared settings from keyword arguments, LangChain style: ``MyLLM(n=5)``."""
    others = getattr(obj, "constructor_arguments", _ARGUMENTS)
    init_settings(obj, stop_at, values, others)


def check_stop(stop: Any) -> list[str] | None:
    """``stop`` as a list of strings, or a typed error."""
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, Sequence) and all(isinstance(s, str) for s in stop):
        return list(stop)
    raise InvalidInputError(f"stop must be a str or a list of str, not {stop!r}")


class RunManager:
    """What a sync provider hook may receive as ``run_manager``: it can report tokens.

    Inside a streaming hook the base class reports every chunk it yields, so tokens
    reported here too would be counted twice: they are ignored.
    """

    __slots__ = ("reports", "run")

    def __init__(self, run: Run, *, reports: bool) -> None:
        self.run = run
        self.reports = reports

    @property
    def run_id(self) -> Any:
        """The id of the run."""
        return self.run.id

    def on_llm_new_token(self, token: str, *, chunk: Any = None, **kwargs: Any) -> None:
        """Report a token (during ``_call``)."""
        if self.reports:
            self.run.chunk(chunk if isinstance(chunk, GenerationChunk) else GenerationChunk(token))


class AsyncRunManager(RunManager):
    """The async hooks' ``run_manager``."""

    __slots__ = ()

    async def on_llm_new_token(  # type: ignore[override]
        self, token: str, *, chunk: Any = None, **kwargs: Any
    ) -> None:
        """Report a token (during ``_acall``)."""
        if self.reports:
            await self.run.achunk(
                chunk if isinstance(chunk, GenerationChunk) else GenerationChunk(token)
            )


def final_info(
    info: dict[str, Any] | None, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """What the final chunk must add so that it carries ``finish_reason`` and ``usage``.

    The counts are used (flagged as estimated) only when the provider sent no usage.
    """
    added: dict[str, Any] = {}
    if not info or info.get("finish_reason") is None:
        added["finish_reason"] = "stop"
    if not info or not isinstance(info.get("usage"), Usage):
        added["usage"] = Usage.of(prompt_tokens, completion_tokens, estimated=True)
    return added


def outcome_info(
    info: dict[str, Any] | None, reason: str, prompt_tokens: int, completion_tokens: int
) -> dict[str, Any]:
    """Metadata for a run cut short: its reason, and usage so far (estimated if needed)."""
    out = merge_info(info, {"finish_reason": reason}) or {}
    if not isinstance(out.get("usage"), Usage):
        out["usage"] = Usage.of(prompt_tokens, completion_tokens, estimated=True)
    return out


def typed_error(exc: BaseException, text: str, usage: Usage | None) -> BaseException:
    """The error to raise for a failed generation, carrying what was produced: a
    provider's own error keeps its type and becomes a ``ProviderError`` too."""
    return with_partial(exc, text, usage)
