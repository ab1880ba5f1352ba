"""Where an LLM's chunks come from: the provider's hooks, and the fallbacks between them.

``source``/``asource`` give the chunk stream for ``stream``/``astream``: ``_stream`` (or
``_astream``) when the provider has it, a sync ``_stream`` through one worker thread for
``astream``, else one chunk from the non-streaming path. ``complete``/``acomplete`` give
the whole generation for ``invoke``/``ainvoke``, from whichever hook the provider has.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from lmstream._accumulate import TEXT
from lmstream._llmcore import AsyncRunManager, RunManager
from lmstream._threads import iterate_in_thread, run_in_thread, run_sync
from lmstream._types import RunnableConfig
from lmstream._utils import accepts_param
from lmstream.chunks import Generation, GenerationChunk
from lmstream.errors import StreamingUnsupportedError
from lmstream.runs import Run

if TYPE_CHECKING:
    from lmstream.llm import BaseLLM

__all__ = ["acomplete", "as_chunk", "asource", "call_hook", "complete", "join_chunks", "source"]


def as_chunk(out: Any) -> GenerationChunk:
    if isinstance(out, Generation):
        return GenerationChunk(out.text, out.generation_info)
    if not isinstance(out, str):
        raise TypeError(f"a provider returned {type(out).__name__}, expected str")
    return GenerationChunk(out)


def join_chunks(chunks: Iterator[GenerationChunk]) -> GenerationChunk:
    joined: GenerationChunk = TEXT.join(chunks)
    return joined


async def _ajoin(llm: BaseLLM, chunks: AsyncIterator[GenerationChunk]) -> GenerationChunk:
    return llm._join_chunks(iter([c async for c in chunks]))


def call_hook(
    fn: Any, prompt: str | list[str], stop: Any, manager: RunManager, kwargs: dict[str, Any]
) -> Any:
    if accepts_param(fn, "run_manager"):
        return fn(prompt, stop=stop, run_manager=manager, **kwargs)
    return fn(prompt, stop=stop, **kwargs)


def unstreamable(llm: BaseLLM, config: RunnableConfig, flavour: str) -> None:
    if config.get("strict"):
        raise StreamingUnsupportedError(
            f"{llm.get_name()} cannot {flavour}: it would return the whole text as one "
            "chunk (strict streaming is on)"
        )


def source(
    llm: BaseLLM, prompt: str, stop: Any, run: Run, kwargs: dict[str, Any], config: RunnableConfig
) -> Iterator[GenerationChunk]:
    if llm.can_stream and llm._has["_stream"]:
        return call_hook(llm._stream, prompt, stop, RunManager(run, reports=False), kwargs)  # type: ignore[no-any-return]
    unstreamable(llm, config, "stream")
    return iter((complete(llm, prompt, stop, run, kwargs),))


def asource(
    llm: BaseLLM, prompt: str, stop: Any, run: Run, kwargs: dict[str, Any], config: RunnableConfig
) -> AsyncIterator[GenerationChunk]:
    if llm.can_stream and llm._has["_astream"]:
        manager: RunManager = AsyncRunManager(run, reports=False)
        source: AsyncIterator[GenerationChunk] = call_hook(
            llm._astream, prompt, stop, manager, kwargs
        )
        return source
    if llm.can_stream and llm._has["_stream"]:
        manager = RunManager(run, reports=False)
        return iterate_in_thread(
            lambda: call_hook(llm._stream, prompt, stop, manager, kwargs),
            maxsize=llm.bridge_buffer,
        )
    unstreamable(llm, config, "astream")
    return one_chunk(llm, prompt, stop, run, kwargs)


async def one_chunk(
    llm: BaseLLM, prompt: str, stop: Any, run: Run, kwargs: dict[str, Any]
) -> AsyncIterator[GenerationChunk]:
    yield await acomplete(llm, prompt, stop, run, kwargs)


def _first(result: Any) -> GenerationChunk:
    """The first candidate of the first prompt of a ``_generate`` result."""
    return as_chunk(result.generations[0][0])


async def _agenerated(
    llm: BaseLLM, prompt: str, stop: Any, run: Run, kwargs: dict[str, Any]
) -> GenerationChunk:
    """One prompt through ``_agenerate``, or ``_generate`` in a worker thread."""
    if not llm._has["_agenerate"]:
        return await run_in_thread(complete, llm, prompt, stop, run, kwargs)
    manager = AsyncRunManager(run, reports=True)
    return _first(await call_hook(llm._agenerate, [prompt], stop, manager, kwargs))


def complete(
    llm: BaseLLM, prompt: str, stop: Any, run: Run, kwargs: dict[str, Any]
) -> GenerationChunk:
    has, one, join = llm._has, llm._to_chunk, llm._join_chunks
    if has["_generate"]:  # LangChain's batch hook, for one prompt
        return _first(
            call_hook(llm._generate, [prompt], stop, RunManager(run, reports=True), kwargs)
        )
    if has["_call"]:
        return one(call_hook(llm._call, prompt, stop, RunManager(run, reports=True), kwargs))
    if has["_acall"]:
        manager = AsyncRunManager(run, reports=True)
        return one(run_sync(call_hook(llm._acall, prompt, stop, manager, kwargs)))
    if has["_stream"]:
        return join(call_hook(llm._stream, prompt, stop, RunManager(run, reports=False), kwargs))
    manager = AsyncRunManager(run, reports=False)
    return run_sync(_ajoin(llm, call_hook(llm._astream, prompt, stop, manager, kwargs)))


async def acomplete(
    llm: BaseLLM, prompt: str, stop: Any, run: Run, kwargs: dict[str, Any]
) -> GenerationChunk:
    has, one, join = llm._has, llm._to_chunk, llm._join_chunks
    manager: RunManager
    if has["_agenerate"] or has["_generate"]:
        return await _agenerated(llm, prompt, stop, run, kwargs)
    if has["_acall"]:
        manager = AsyncRunManager(run, reports=True)
        return one(await call_hook(llm._acall, prompt, stop, manager, kwargs))
    if has["_call"]:
        manager = RunManager(run, reports=True)
        return one(await run_in_thread(call_hook, llm._call, prompt, stop, manager, kwargs))
    if has["_astream"]:
        manager = AsyncRunManager(run, reports=False)
        return await _ajoin(llm, call_hook(llm._astream, prompt, stop, manager, kwargs))
    manager = RunManager(run, reports=False)
    return await run_in_thread(lambda: join(call_hook(llm._stream, prompt, stop, manager, kwargs)))
