"""lmstream models inside LangChain, and LangChain models inside lmstream.

``to_langchain(model)`` gives a real langchain-core ``LLM`` that streams token by token
from an lmstream model (the embedded one included; a chat model gives a LangChain chat
model, see ``lmstream.langchain_chat``): LangChain's callbacks and
``astream_events`` see every token, usage and ``finish_reason`` arrive on the last
chunk's ``generation_info``, and a consumer that stops early stops the model.

``from_langchain(llm)`` wraps any LangChain LLM as an lmstream model (a chat model as
an lmstream chat model, see ``lmstream.langchain_chat``; ``LangChainLLM(chat)`` reads one
as text), so it works with lmstream's CLI, server, batch and events; the model id
``langchain:module.Class`` builds one from its import path, its settings given as
keyword arguments (``--option KEY=VALUE`` on the command line).

Needs langchain-core: ``pip install 'lmstream[langchain]'``.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator
from typing import Any, overload

try:
    from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
    from langchain_core.language_models import BaseChatModel, BaseLanguageModel
    from langchain_core.language_models import BaseLLM as LangChainRoot
    from langchain_core.language_models.llms import LLM as LangChainBaseLLM
    from langchain_core.outputs import Generation as LangChainGeneration
    from langchain_core.outputs import GenerationChunk as LangChainChunk
    from langchain_core.outputs import LLMResult as LangChainResult
except ImportError as exc:  # pragma: no cover - exercised without the extra only
    raise ImportError(
        "lmstream.langchain needs langchain-core: pip install 'lmstream[langchain]'"
    ) from exc

from lmstream._utils import aclose, close
from lmstream.chat_model import BaseChatModel as BaseChatModelOurs
from lmstream.chunks import GenerationChunk, LLMResult, Usage
from lmstream.errors import InvalidInputError
from lmstream.langchain_chat import (
    LangChainChatModel,
    LMStreamLangChainChatModel,
    from_langchain_chat,
    to_langchain_chat,
)
from lmstream.llm import LLM, BaseLLM

__all__ = ["LMStreamLangChainLLM", "LangChainLLM", "from_langchain", "load", "to_langchain"]


def _info(info: dict[str, Any] | None) -> dict[str, Any] | None:
    """lmstream chunk metadata in LangChain's shape: usage as a plain dict."""
    if not info:
        return None
    usage = info.get("usage")
    if isinstance(usage, Usage):
        info = {**info, "usage": {"prompt_tokens": usage.prompt_tokens,
                                  "completion_tokens": usage.completion_tokens,
                                  "total_tokens": usage.total_tokens}}  # fmt: skip
    return info


def _result(result: LLMResult) -> LangChainResult:
    """An lmstream ``LLMResult`` as LangChain's."""
    generations = [
        [LangChainGeneration(text=g.text, generation_info=_info(g.generation_info)) for g in gens]
        for gens in result.generations
    ]
    return LangChainResult(generations=generations, llm_output=result.llm_output)


class LMStreamLangChainLLM(LangChainBaseLLM):
    """A langchain-core ``LLM`` backed by an lmstream model (see ``to_langchain``)."""

    model: Any
    """The lmstream model (a ``BaseLLM``)."""

    @property
    def _llm_type(self) -> str:
        return "lmstream"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model.get_name(), **self.model.asdict()}

    def _call(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> str:
        return str(self.model.invoke(prompt, stop=stop, **kwargs))

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LangChainResult:
        return _result(self.model.generate(prompts, stop=stop, **kwargs))

    async def _agenerate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LangChainResult:
        return _result(await self.model.agenerate(prompts, stop=stop, **kwargs))

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[LangChainChunk]:
        chunks = self.model.stream_chunks(prompt, stop=stop, **kwargs)
        try:  # closed at once when LangChain's consumer stops: the model stops too
            for chunk in chunks:
                out = LangChainChunk(text=chunk.text, generation_info=_info(chunk.generation_info))
                if run_manager is not None:
                    run_manager.on_llm_new_token(out.text, chunk=out)
                yield out
        finally:
            chunks.close()

    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[LangChainChunk]:
        chunks = self.model.astream_chunks(prompt, stop=stop, **kwargs)
        try:
            async for chunk in chunks:
                out = LangChainChunk(text=chunk.text, generation_info=_info(chunk.generation_info))
                if run_manager is not None:
                    await run_manager.on_llm_new_token(out.text, chunk=out)
                yield out
        finally:
            await chunks.aclose()


@overload
def to_langchain(model: BaseChatModelOurs, **fields: Any) -> LMStreamLangChainChatModel: ...
@overload
def to_langchain(model: BaseLLM, **fields: Any) -> LMStreamLangChainLLM: ...
def to_langchain(model: Any, **fields: Any) -> Any:
    """A langchain-core ``LLM`` that streams from ``model`` (a ``BaseChatModel`` for a chat
    model); ``fields`` are LangChain's (``callbacks``, ``tags``, ``metadata``, ``name``...)."""
    if isinstance(model, BaseChatModelOurs):
        return to_langchain_chat(model, **fields)
    if isinstance(model, LangChainLLM):
        raise InvalidInputError("this model is a LangChain model already: use model.llm")
    if not isinstance(model, BaseLLM):
        raise InvalidInputError(f"to_langchain takes an lmstream model, not {type(model)!r}")
    fields.setdefault("name", model.get_name())
    return LMStreamLangChainLLM(model=model, **fields)


def _text(chunk: Any) -> str:
    """The text of what a LangChain model streams: a str, or a message chunk's content."""
    if isinstance(chunk, str):
        return chunk
    content = getattr(chunk, "content", chunk)
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks: the text ones
        return "".join(
            b if isinstance(b, str) else str(b.get("text", "")) for b in content
            if isinstance(b, str) or (isinstance(b, dict) and b.get("type") == "text")
        )  # fmt: skip
    raise InvalidInputError(f"cannot read text from a LangChain output {chunk!r}")


class LangChainLLM(LLM):
    """An lmstream model backed by a LangChain LLM or chat model (see ``from_langchain``)."""

    def __init__(self, llm: Any, **fields: Any) -> None:
        if not isinstance(llm, BaseLanguageModel):
            raise InvalidInputError(
                f"from_langchain takes a LangChain LLM or chat model, not {type(llm)!r}"
            )
        super().__init__(**fields)
        self.llm = llm
        self.name = self.name or llm.get_name()
        base: Any = BaseChatModel if isinstance(llm, BaseChatModel) else LangChainRoot
        kind: Any = type(llm)
        hooks = ("_stream", "_astream", "stream", "astream")
        self.can_stream = any(getattr(kind, h) is not getattr(base, h) for h in hooks)

    @property
    def _llm_type(self) -> str:
        return f"langchain:{type(self.llm).__name__}"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"langchain": type(self.llm).__module__ + "." + type(self.llm).__qualname__}

    def _call(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> str:
        return _text(self.llm.invoke(prompt, stop=stop, **kwargs))

    async def _acall(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> str:
        return _text(await self.llm.ainvoke(prompt, stop=stop, **kwargs))

    def _stream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        chunks = self.llm.stream(prompt, stop=stop, **kwargs)
        try:
            for chunk in chunks:
                yield GenerationChunk(_text(chunk))
        finally:  # the LangChain model stops when lmstream's consumer does
            close(chunks)

    async def _astream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[GenerationChunk]:
        chunks = self.llm.astream(prompt, stop=stop, **kwargs)
        try:
            async for chunk in chunks:
                yield GenerationChunk(_text(chunk))
        finally:
            await aclose(chunks)


@overload
def from_langchain(llm: BaseChatModel, **fields: Any) -> LangChainChatModel: ...
@overload
def from_langchain(llm: Any, **fields: Any) -> LangChainLLM: ...
def from_langchain(llm: Any, **fields: Any) -> Any:
    """An lmstream model backed by ``llm``, a LangChain LLM (or chat model: an lmstream
    chat model); ``fields`` are lmstream's (``callbacks``, ``tags``, ``metadata``, ``name``)."""
    if isinstance(llm, LMStreamLangChainLLM):
        raise InvalidInputError("this model is an lmstream model already: use llm.model")
    if isinstance(llm, BaseChatModel):
        return from_langchain_chat(llm, **fields)
    return LangChainLLM(llm, **fields)


def load(path: str | None = None, **settings: Any) -> LangChainLLM:
    """The model for the id ``langchain:module.Class``: ``module.Class(**settings)``,
    which must be a LangChain LLM or chat model."""
    if not path or "." not in path:
        raise InvalidInputError(
            "a LangChain model id names its class: langchain:module.Class "
            "(for example langchain:langchain_core.language_models.FakeListLLM)"
        )
    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise InvalidInputError(f"cannot import {path!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, BaseLanguageModel)):
        raise InvalidInputError(f"{path!r} is not a LangChain LLM or chat model class")
    return LangChainLLM(cls(**settings))
