"""Structured output that streams: JSON and pydantic parsers, and reasoning split out.

``JsonOutputParser`` streams partial dicts (or JSON-patch operations with ``diff=True``) as
the text arrives, in one pass over each chunk (see ``lmstream._jsonstream``);
``PydanticOutputParser`` streams partial model instances and ends with the strictly validated
model. ``ReasoningParser`` keeps a model's ``<think>...</think>`` out of its answer. All
read plain strings and any chunk or message with a ``.text``/``.content`` string.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from lmstream._accumulate import AddableDict
from lmstream._execution import acall_with_config, call_with_config
from lmstream._jsonstream import JsonStream
from lmstream._partial import Partial, PartialBuilder, partial_model
from lmstream._reasoning import ReasoningSplitter
from lmstream._types import RunnableConfig
from lmstream.errors import InvalidInputError, OutputParserError
from lmstream.runnable import StreamingStep
from lmstream.runs import Run

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "JsonOutputParser",
    "Partial",
    "PydanticOutputParser",
    "ReasoningParser",
    "ReasoningSplitter",
    "chunk_text",
]

M = TypeVar("M", bound="BaseModel")

SKIP: Any = object()
"""What a streamer's ``feed``/``end`` give when there is nothing to yield."""

JSON_FORMAT_INSTRUCTIONS = """The output should be formatted as a JSON instance that \
conforms to the JSON schema below.

As an example, for the schema {{"properties": {{"foo": {{"title": "Foo", "description": "a list \
of strings", "type": "array", "items": {{"type": "string"}}}}}}, "required": ["foo"]}}
the object {{"foo": ["bar", "baz"]}} is a well-formatted instance of the schema. The object \
{{"properties": {{"foo": ["bar", "baz"]}}}} is not well-formatted.

Here is the output schema:
```
{schema}
```"""


def chunk_text(value: Any) -> str:
    """The text of a string, a chunk or message (``.text``, else ``.content``), or a
    ``{"content": ...}`` dict such as ``ReasoningParser`` streams."""
    if isinstance(value, str):
        return value
    text = getattr(value, "text", None)
    if isinstance(text, str):
        return text
    if isinstance(value, Mapping) and ("content" in value or "reasoning" in value):
        content = value.get("content", "")
    else:
        content = getattr(value, "content", None)
    if isinstance(content, str):
        return content
    raise InvalidInputError(f"cannot read text from {type(value).__name__}")


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    schema = dict(model.model_json_schema())
    schema.pop("title", None)
    schema.pop("type", None)
    return schema


class _Streamer:
    """One stream through a parser: the pure per-chunk work the sync and async shells share."""

    __slots__ = ("last", "parser", "state", "stream")

    def __init__(self, parser: JsonOutputParser) -> None:
        self.parser = parser
        self.stream = JsonStream(patches=parser.diff)
        self.state = parser._start()
        self.last: Any = SKIP

    def feed(self, chunk: Any) -> Any:
        """What to yield for ``chunk`` (``SKIP`` when nothing changed)."""
        if not self.stream.feed(chunk_text(chunk)):
            return SKIP
        out = self.parser._emit(self.stream, self.state)
        if out is not SKIP:
            self.last = out
        return out

    def end(self) -> Any:
        """The final value (strictly validated), or ``SKIP`` when the last partial was it."""
        out = self.parser._final(self.stream)
        return SKIP if out is SKIP or (self.last is not SKIP and out == self.last) else out


class JsonOutputParser(StreamingStep[Any, Any]):
    """Parses a model's JSON output; streams partial values (``diff=True``: JSON-patch ops).

    ``pydantic_object`` (optional) only shapes ``get_format_instructions()``. A stream ends
    with the strictly validated value, or ``OutputParserError`` carrying the raw text.
    """

    run_type = "parser"

    def __init__(self, pydantic_object: type[BaseModel] | None = None, *, diff: bool = False):
        self.pydantic_object = pydantic_object
        self.diff = diff

    def parse(self, text: str) -> Any:
        """The JSON value in ``text`` (a Markdown code fence around it is fine)."""
        stream = JsonStream()
        stream.feed(text)
        return stream.finish()

    def get_format_instructions(self) -> str:
        """What to tell the model about the output's shape."""
        if self.pydantic_object is None:
            return "Return a JSON object."
        import json  # on use: it is not needed to import lmstream

        schema = json.dumps(_schema_of(self.pydantic_object), ensure_ascii=False)
        return JSON_FORMAT_INSTRUCTIONS.format(schema=schema)

    def _start(self) -> Any:
        """Per-stream state for ``_emit``."""
        return None

    def _streamer(self) -> _Streamer:
        """A stream through this parser: ``feed(chunk)`` and ``end()`` give what to yield,
        or ``SKIP``."""
        return _Streamer(self)

    def _emit(self, stream: JsonStream, state: Any) -> Any:
        return stream.patch() if self.diff else stream.partial()

    def _final(self, stream: JsonStream) -> Any:
        value = stream.finish()
        if self.diff and stream.started and value == stream.partial():
            return SKIP
        return [{"op": "replace", "path": "", "value": value}] if self.diff else value

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """The parsed value of ``input``'s text."""
        return call_with_config(
            self, lambda v, r, c: self._invoke(v), input, config, run_type="parser"
        )

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Async ``invoke``."""

        async def parse(value: Any, run: Run, cfg: RunnableConfig) -> Any:
            return self._invoke(value)

        return await acall_with_config(self, parse, input, config, run_type="parser")

    def _invoke(self, value: Any) -> Any:
        if self.diff:  # a whole answer as patches: one op that sets it
            return [{"op": "replace", "path": "", "value": self.parse(chunk_text(value))}]
        return self.parse(chunk_text(value))

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        streamer = self._streamer()
        for chunk in source:
            if (out := streamer.feed(chunk)) is not SKIP:
                yield out
        if (out := streamer.end()) is not SKIP:
            yield out

    async def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        streamer = self._streamer()
        async for chunk in source:
            if (out := streamer.feed(chunk)) is not SKIP:
                yield out
        if (out := streamer.end()) is not SKIP:
            yield out

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(diff={self.diff})" if self.diff else f"{type(self).__name__}()"
        )


class PydanticOutputParser(JsonOutputParser, Generic[M]):
    """Parses JSON into ``pydantic_object``. While streaming it yields ``Partial[Model]``
    instances (every field optional), each a valid partial object; the last item is the
    strictly validated ``Model``. Invalid output raises ``OutputParserError`` with the text."""

    def __init__(self, pydantic_object: type[M], *, partial: bool = True) -> None:
        super().__init__(pydantic_object)
        self.model: type[M] = pydantic_object
        self.partial = partial
        self.partial_model = partial_model(pydantic_object) if partial else None

    def parse(self, text: str) -> M:
        """The validated model in ``text``."""
        stream = JsonStream()
        stream.feed(text)
        out: M = self._final(stream)
        return out

    def _start(self) -> Any:
        return None if self.partial_model is None else PartialBuilder(self.partial_model)

    def _emit(self, stream: JsonStream, state: Any) -> Any:
        if state is None:
            return SKIP
        from pydantic import ValidationError

        try:
            return state.build(stream.partial())
        except ValidationError:  # e.g. a string that is not yet one of an enum's values
            return SKIP

    def _final(self, stream: JsonStream) -> Any:
        from pydantic import ValidationError

        value = stream.finish()
        try:
            return self.model.model_validate(value)
        except ValidationError as exc:
            raise OutputParserError(
                f"Failed to parse {self.model.__name__} from the output: {exc}",
                llm_output=stream.text,
                errors=exc.errors(include_url=False),
            ) from exc

    def _invoke(self, value: Any) -> Any:
        return self.parse(chunk_text(value))

    def __repr__(self) -> str:
        return f"PydanticOutputParser({self.model.__name__})"


def _out(reasoning: str, content: str) -> AddableDict | None:
    if not reasoning and not content:
        return None
    out = AddableDict()
    if reasoning:
        out["reasoning"] = reasoning
    if content:
        out["content"] = content
    return out


class ReasoningParser(StreamingStep[Any, AddableDict]):
    """Splits a model's text into ``{"reasoning": ..., "content": ...}`` chunks.

    Text between ``open_tag`` and ``close_tag`` is reasoning, the rest content, however the
    stream is chunked; the chunks add up (``+``) to the whole split. ``leading_only=True``
    counts only a block at the start. A ``JsonOutputParser`` after it reads the content.
    """

    run_type = "parser"

    def __init__(
        self, open_tag: str = "<think>", close_tag: str = "</think>", *, leading_only: bool = False
    ) -> None:
        ReasoningSplitter(open_tag, close_tag)  # the tags are checked once, here
        self.open_tag, self.close_tag, self.leading_only = open_tag, close_tag, leading_only

    def _splitter(self) -> ReasoningSplitter:
        return ReasoningSplitter(self.open_tag, self.close_tag, leading_only=self.leading_only)

    def parse(self, text: str) -> AddableDict:
        """The whole split of ``text``: both keys, always."""
        splitter = self._splitter()
        reasoning, content = splitter.feed(text)
        more_reasoning, more_content = splitter.flush()
        return AddableDict(reasoning=reasoning + more_reasoning, content=content + more_content)

    def invoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AddableDict:
        """The split of ``input``'s text."""
        return call_with_config(
            self, lambda v, r, c: self.parse(chunk_text(v)), input, config, run_type="parser"
        )

    async def ainvoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> AddableDict:
        """Async ``invoke``."""

        async def parse(value: Any, run: Run, cfg: RunnableConfig) -> AddableDict:
            return self.parse(chunk_text(value))

        return await acall_with_config(self, parse, input, config, run_type="parser")

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[AddableDict]:
        splitter = self._splitter()
        for chunk in source:
            if out := _out(*splitter.feed(chunk_text(chunk))):
                yield out
        if out := _out(*splitter.flush()):
            yield out

    async def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[AddableDict]:
        splitter = self._splitter()
        async for chunk in source:
            if out := _out(*splitter.feed(chunk_text(chunk))):
                yield out
        if out := _out(*splitter.flush()):
            yield out

    def __repr__(self) -> str:
        return f"ReasoningParser({self.open_tag!r}, {self.close_tag!r})"
