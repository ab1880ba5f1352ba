"""``BaseLLM.generate``/``agenerate``: several prompts in, one ``LLMResult`` out, as in
LangChain. One LLM run per prompt, as the reference reports them.

A provider that implements LangChain's batch hook ``_generate`` (or ``_agenerate``) gets
one call with every prompt; any other provider generates prompt by prompt through the
usual loop (stop sequences, usage, outcomes), as the reference's ``LLM`` does.
``llm_output`` is the provider's own, or the usage added up over the prompts.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

from lmstream import _generation as loops
from lmstream._llmcore import RunManager
from lmstream._llmsources import acomplete, complete
from lmstream._threads import run_in_thread
from lmstream._types import RunnableConfig
from lmstream.chunks import LLMResult, Usage
from lmstream.errors import InvalidInputError, with_partial
from lmstream.runs import Run

if TYPE_CHECKING:
    from lmstream.llm import BaseLLM

__all__ = ["agenerate", "generate", "generate_config"]


def generate_config(
    prompts: Any, callbacks: Any, options: dict[str, Any]
) -> tuple[list[str], RunnableConfig]:
    """Check ``prompts`` (a list of str) and make the config from the reference's
    ``callbacks``/``tags``/``metadata``/``run_name``/``run_id`` arguments."""
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise InvalidInputError(
            f"generate() takes a list of prompts (str), not {type(prompts).__name__}; "
            "for one prompt, use invoke()"
        )
    if not all(isinstance(p, str) for p in prompts):
        raise InvalidInputError("generate() takes a list of str prompts")
    config = {k: v for k, v in {"callbacks": callbacks, **options}.items() if v is not None}
    return list(prompts), config  # type: ignore[return-value]


def _token_usage(results: list[LLMResult]) -> dict[str, Any] | None:
    total: Usage | None = None
    for result in results:
        usage = (result.generations[0][0].generation_info or {}).get("usage")
        if isinstance(usage, Usage):
            total = usage if total is None else total + usage
    if total is None:
        return None
    return {"token_usage": {"prompt_tokens": total.prompt_tokens,
                            "completion_tokens": total.completion_tokens,
                            "total_tokens": total.total_tokens}}  # fmt: skip


def _joined(results: list[LLMResult]) -> LLMResult:
    return LLMResult([r.generations[0] for r in results], llm_output=_token_usage(results))


class _Native:
    """One call of the provider's ``_generate``/``_agenerate`` for every prompt: a run
    per prompt, started before the call and ended with that prompt's generations."""

    def __init__(
        self, llm: BaseLLM, prompts: list[str], config: RunnableConfig, stop: Any, kw: Any
    ) -> None:
        prepared = [llm._prepare(p, config, stop, kw) for p in prompts]
        self.stop = prepared[0][2] if prepared else None
        self.runs: list[Run] = [llm._new_run(p, cfg, s, kw) for p, cfg, s in prepared]
        self.prompts, self.kwargs = prompts, kw
        self.result = LLMResult([])
        self.hook_kwargs = {"stop": self.stop, **kw}
        if self.runs:
            self.hook_kwargs["run_manager"] = RunManager(self.runs[0], reports=True)

    def acall(self, llm: BaseLLM) -> Awaitable[Any]:
        """The provider's ``_agenerate`` call, or its ``_generate`` in a worker thread."""
        if llm._has["_agenerate"]:
            return llm._agenerate(self.prompts, **self.hook_kwargs)
        return run_in_thread(lambda: llm._generate(self.prompts, **self.hook_kwargs))

    def ended(self, result: Any) -> list[tuple[Run, LLMResult]]:
        """Each run with its own part of ``result`` (usage reported once: on the first)."""
        if not isinstance(result, LLMResult) or len(result.generations) != len(self.prompts):
            raise TypeError(
                f"_generate must return an LLMResult with one list of generations per "
                f"prompt ({len(self.prompts)}), got {result!r}"
            )
        self.result = result
        parts = []
        for i, (run, gens) in enumerate(zip(self.runs, result.generations, strict=True)):
            output = result.llm_output if i == 0 else _without_usage(result.llm_output)
            parts.append((run, LLMResult([list(gens)], llm_output=output)))
        return parts

    def error(self, exc: BaseException) -> BaseException:
        """The error to raise: a provider's own keeps its type (and is a ProviderError)."""
        return with_partial(exc, "", None)


def _without_usage(output: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if output is None else {**output, "token_usage": {}}


def _each(
    llm: BaseLLM, prompts: list[str], config: RunnableConfig, stop: Any, kw: dict[str, Any]
) -> Iterator[tuple[Any, Any]]:
    """Each prompt's generation through the usual loop, and its hooks' arguments."""
    for prompt in prompts:
        gen, args, _ = llm._generation(prompt, config, stop, kw)
        yield gen, args


def _per_prompt(
    llm: BaseLLM, prompts: list[str], config: RunnableConfig, stop: Any, kw: dict[str, Any]
) -> LLMResult:
    each = _each(llm, prompts, config, stop, kw)
    return _joined([loops.invoke(g, partial(complete, *a)) for g, a in each])


async def _aper_prompt(
    llm: BaseLLM, prompts: list[str], config: RunnableConfig, stop: Any, kw: dict[str, Any]
) -> LLMResult:
    each = _each(llm, prompts, config, stop, kw)
    return _joined([await loops.ainvoke(g, partial(acomplete, *a)) for g, a in each])


def _reraise(error: BaseException, exc: BaseException) -> NoReturn:
    if error is exc:
        raise exc
    raise error from exc


def generate(
    llm: BaseLLM, prompts: list[str], config: RunnableConfig, stop: Any, kw: dict[str, Any]
) -> LLMResult:
    """The sync ``generate``."""
    if not llm._has["_generate"]:
        return _per_prompt(llm, prompts, config, stop, kw)
    call = _Native(llm, prompts, config, stop, kw)
    for run in call.runs:
        run.start()
    try:
        parts = call.ended(llm._generate(prompts, **call.hook_kwargs))
    except BaseException as exc:
        error = call.error(exc)
        for run in call.runs:
            run.settle(error)
        _reraise(error, exc)
    for run, part in parts:
        run.end(part)
    return call.result


async def agenerate(
    llm: BaseLLM, prompts: list[str], config: RunnableConfig, stop: Any, kw: dict[str, Any]
) -> LLMResult:
    """The async ``generate``: ``_agenerate`` natively, ``_generate`` in a thread."""
    if not (llm._has["_agenerate"] or llm._has["_generate"]):
        return await _aper_prompt(llm, prompts, config, stop, kw)
    call = _Native(llm, prompts, config, stop, kw)
    for run in call.runs:
        await run.astart()
    try:
        parts = call.ended(await call.acall(llm))
    except BaseException as exc:
        error = call.error(exc)
        for run in call.runs:
            await run.asettle(error)
        _reraise(error, exc)
    for run, part in parts:
        await run.aend(part)
    return call.result
