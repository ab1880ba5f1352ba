"""ChatLlamaCpp: a local GGUF chat model through llama-cpp-python, offline by default.

It runs on the same engine as ``LlamaCpp`` (one loaded model per file, shared by every
instance of either class, one generation at a time in arrival order, stopped between two
tokens when its consumer leaves), and the messages go through the GGUF's own chat
template. ``ChatLlamaCpp()`` runs the embedded SmolLM2-135M-Instruct.

* ``tools`` (``bind_tools``): the model is told about the tools and its output is held to
  a grammar built from their JSON schemas, so the call it makes is always well-formed
  JSON naming a tool with arguments that fit its schema (whether it is the *right* call is
  up to the model). It makes one call, or several, one per line, when
  ``parallel_tool_calls=True`` and ``tool_choice`` names no tool; each call streams as
  tool-call chunks of its own index and id, its arguments as the model writes them.
  Stop sequences cut an answer in text, never a call.
* ``response_format``: ``{"type": "json_object"}`` or ``{"type": "json_schema", ...}``
  holds the text to JSON (to the schema) the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

from lmstream._threads import iterate_in_thread
from lmstream.chat_model import BaseChatModel
from lmstream.chunks import GenerationChunk
from lmstream.errors import ModelLoadError
from lmstream.llm import BaseLLM
from lmstream.messages import AIMessage, AIMessageChunk, BaseMessage, UsageMetadata, add_chunks
from lmstream.providers._llamacpp_engine import Engine
from lmstream.providers._llamacpp_generate import Settings
from lmstream.providers._llamacpp_grammar import grammar_for
from lmstream.providers._llamacpp_model import LlamaCppModel, handing_off, run, sampling
from lmstream.providers._llamacpp_tools import (
    CallReader,
    TextStops,
    ToolPlan,
    plan,
    release_for,
    written,
)
from lmstream.settings import for_call

__all__ = ["ChatLlamaCpp"]

_ROLES = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}


def _turn(message: BaseMessage) -> dict[str, str]:
    content = written(message) if isinstance(message, AIMessage) else message.text
    return {"role": _ROLES.get(message.type, message.type), "content": content}


class ChatLlamaCpp(LlamaCppModel, BaseChatModel):
    """A local GGUF chat model run by llama.cpp; by default the embedded SmolLM2-135M-Instruct.

    The sampling settings are ``LlamaCpp``'s, and may be passed per call as there; so may
    ``tools``, ``tool_choice`` and ``response_format``.
    """

    native_async = False  # the async paths run the sync stream in one worker thread

    def _load(self) -> Engine:
        engine = super()._load()
        if engine.template is None:
            raise ModelLoadError(
                f"{self.model_path} has no chat template (tokenizer.chat_template): "
                "use LlamaCpp for this model",
                path=self.model_path,
            )
        return engine

    @property
    def _llm_type(self) -> str:
        return "llamacpp-chat"

    def get_num_tokens_from_messages(self, messages: Any) -> int:
        """Tokens of ``messages`` as the model sees them, chat template included."""
        return len(self._tokens(list(messages), None))

    def _tokens(self, messages: list[BaseMessage], note: str | None) -> list[int]:
        turns = [_turn(m) for m in messages]
        if note is not None:
            if turns and turns[0]["role"] == "system":
                turns[0] = {"role": "system", "content": f"{turns[0]['content']}\n\n{note}"}
            else:
                turns.insert(0, {"role": "system", "content": note})
        return self._engine.prompt_tokens(self._engine.render(turns), True)

    def _plan(self, kwargs: dict[str, Any]) -> tuple[Settings, ToolPlan | None]:
        """The sampling settings of a call, grammar included, and how it offers tools."""
        tools, choice = kwargs.pop("tools", None), kwargs.pop("tool_choice", None)
        parallel = kwargs.pop("parallel_tool_calls", None)
        kwargs.pop("stream", None)
        values = for_call(self, BaseLLM, kwargs)
        offer = plan(tools, choice, parallel)
        # without tools, the same grammar as LlamaCpp's for the same response_format
        grammar = offer.grammar if offer else grammar_for(values["response_format"])
        return sampling(values, grammar, release=release_for(offer)), offer

    def _stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> Generator[AIMessageChunk, None, None]:
        settings, offer = self._plan(dict(kwargs))
        tokens = self._tokens(messages, None if offer is None else offer.note)
        stops = self.stop if stop is None else stop
        # with tools offered they cut a text answer, never a call
        cut = TextStops(stops) if offer is not None and stops else stops
        read = self._read_text if offer is None else self._read_calls
        with contextlib.closing(run(self._engine, tokens, settings, cut)) as chunks:
            yield from read(chunks)

    def _read_text(self, chunks: Iterator[GenerationChunk]) -> Iterator[AIMessageChunk]:
        for chunk in chunks:
            if chunk.generation_info is None:
                yield AIMessageChunk(chunk.text)
            else:
                yield self._last(chunk.text, chunk.generation_info)

    def _read_calls(self, chunks: Iterator[GenerationChunk]) -> Iterator[AIMessageChunk]:
        """An answer that may call a tool: text as it comes, or the call's fragments."""
        reader = CallReader()
        for chunk in chunks:
            text, calls = reader.feed(chunk.text)
            if chunk.generation_info is None:
                if text or calls:
                    yield AIMessageChunk(text, tool_call_chunks=calls or None)
                continue
            info = dict(chunk.generation_info)
            if reader.called:
                info["finish_reason"] = "tool_calls"
            yield self._last(text + reader.flush(), info, tool_call_chunks=calls or None)

    def _last(self, text: str, info: dict[str, Any], **fields: Any) -> AIMessageChunk:
        usage = info["usage"]
        metadata: UsageMetadata = {
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        }
        meta = {"finish_reason": info["finish_reason"], "model_name": self.model_name}
        return AIMessageChunk(text, usage_metadata=metadata, response_metadata=meta, **fields)

    def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        return iterate_in_thread(
            lambda: handing_off(self._stream(messages, stop, **kwargs)), maxsize=self.bridge_buffer
        )

    def _call(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AIMessage:
        return _whole(list(self._stream(messages, stop, **kwargs)))

    async def _acall(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AIMessage:
        # through the stream's worker thread, so that a cancelled task stops the model too
        return _whole([chunk async for chunk in self._astream(messages, stop, **kwargs)])


def _whole(chunks: list[AIMessageChunk]) -> AIMessage:
    return add_chunks(chunks).to_message()
