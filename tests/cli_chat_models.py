"""A LangChain chat model that answers with the conversation it received, for the
``lmstream chat`` tests: loaded by the CLI as ``langchain:cli_chat_models.Echo``, it shows
which messages reached the model. It streams word by word (after its reasoning, when it
has some), and can pause between words so that a test can interrupt it."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult


def transcript(messages: list[BaseMessage]) -> str:
    """``system: ... / human: ... / ai: ...``, the conversation in one line."""
    return " / ".join(f"{m.type}: {m.content}" for m in messages)


class Echo(BaseChatModel):
    """Answers with the transcript of the messages it was sent."""

    reasoning: str = ""
    delay: float = 0.0

    @property
    def _llm_type(self) -> str:
        return "echo"

    def _generate(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(transcript(messages)))])

    def _stream(
        self, messages: list[BaseMessage], stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        if self.reasoning:
            block = {"type": "reasoning", "reasoning": self.reasoning}
            yield ChatGenerationChunk(message=AIMessageChunk(content=[block]))
        for word in re.findall(r"\S+\s*", transcript(messages)):
            if self.delay:
                time.sleep(self.delay)
            yield ChatGenerationChunk(message=AIMessageChunk(content=word))
