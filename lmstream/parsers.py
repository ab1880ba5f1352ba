"""Output parsers that stream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from lmstream._execution import acall_with_config, call_with_config
from lmstream._types import RunnableConfig
from lmstream.chunks import Generation
from lmstream.errors import InvalidInputError
from lmstream.messages import BaseMessage
from lmstream.runnable import StreamingStep
from lmstream.runs import Run

__all__ = ["StrOutputParser"]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (Generation, BaseMessage)):
        return value.text  # a message's text leaves its reasoning out
    content = getattr(value, "content", None)
    if isinstance(content, str):
        return content
    raise InvalidInputError(f"StrOutputParser cannot read text from {type(value).__name__}")


class StrOutputParser(StreamingStep[Any, str]):
    """Turns model output (strings, chunks, messages) into strings, chunk by chunk."""

    run_type = "parser"

    def parse(self, text: str) -> str:
        """The text itself."""
        return text

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> str:
        """The text of ``input``."""
        return call_with_config(self, lambda v, r, c: _text(v), input, config, run_type="parser")

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> str:
        """Async ``invoke``."""

        async def parse(value: Any, run: Run, cfg: RunnableConfig) -> str:
            return _text(value)

        return await acall_with_config(self, parse, input, config, run_type="parser")

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[str]:
        for chunk in source:
            yield _text(chunk)

    async def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[str]:
        async for chunk in source:
            yield _text(chunk)

    def __repr__(self) -> str:
        return "StrOutputParser()"
