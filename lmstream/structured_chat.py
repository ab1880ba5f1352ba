"""``with_structured_output``: a chat model that answers with an object, streamed as it fills in.

Three ways to get the object, as LangChain's OpenAI integration names them:

* ``"json_schema"``: the provider's ``response_format`` holds the answer to the schema
  (OpenAI's structured outputs; a grammar on the embedded model); the text is parsed.
* ``"function_calling"``: the schema is bound as the one tool and the model is made to call
  it (a forced ``tool_choice``); the call's arguments are parsed as they stream.
* ``"json_mode"``: ``response_format={"type": "json_object"}``; the schema goes in the
  prompt, written by the caller.

The answer streams: a pydantic schema gives ``Partial[Model]`` snapshots and ends with the
strictly validated model, any other schema partial dicts and then the whole dict.
``include_raw=True`` gives LangChain's ``{"raw", "parsed", "parsing_error"}`` instead, with
the raw message streamed alongside.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

from lmstream._accumulate import AddableDict
from lmstream._execution import acall_with_config, call_with_config
from lmstream._partial import _is_model
from lmstream._types import RunnableConfig
from lmstream.errors import InvalidInputError, OutputParserError, UnsupportedMethodError
from lmstream.runnable import Runnable, StreamingStep
from lmstream.runs import Run
from lmstream.structured import SKIP, JsonOutputParser, PydanticOutputParser
from lmstream.tool_parsers import JsonOutputKeyToolsParser, PydanticToolsParser
from lmstream.tools import convert_to_openai_tool

if TYPE_CHECKING:
    from lmstream.chat_model import BaseChatModel

__all__ = ["StructuredChunk", "WithRaw", "structured_output"]

Method = Literal["json_schema", "function_calling", "json_mode"]
_METHODS = ("json_schema", "function_calling", "json_mode")


def _strict(schema: Any) -> Any:
    """``schema`` with every object closed (``additionalProperties: false``), as OpenAI's
    strict mode asks."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _tool(schema: Any, strict: bool | None) -> dict[str, Any]:
    tool = copy.deepcopy(convert_to_openai_tool(schema))
    if strict is not None:
        function = tool["function"]
        function["strict"] = strict
        if strict:
            function["parameters"] = _strict(function["parameters"])
    return tool


def _response_format(schema: Any, strict: bool | None) -> dict[str, Any]:
    """OpenAI's ``{"type": "json_schema", "json_schema": {name, schema, ...}}``."""
    if isinstance(schema, Mapping) and schema.get("type") == "json_schema":
        return dict(schema)  # already a response_format
    function = _tool(schema, strict)["function"]
    spec = {"name": function["name"]}
    if function.get("description"):
        spec["description"] = function["description"]
    spec["schema"] = function["parameters"]
    if strict is not None:
        spec["strict"] = strict
    return {"type": "json_schema", "json_schema": spec}


def _method(model: Any, method: str | None) -> str:
    """The method to use: ``method``, or the model's best; a clear error when it can't."""
    formats = bool(getattr(model, "supports_response_format", False))
    tools = bool(getattr(model, "supports_tool_calling", False))
    if method is None:
        return "json_schema" if formats or not tools else "function_calling"
    if method not in _METHODS:
        raise InvalidInputError(f"method must be one of {_METHODS}, got {method!r}")
    name = type(model).__name__
    if method in ("json_schema", "json_mode") and not formats:
        instead = "use method='function_calling'" if tools else "it takes no tools either"
        raise UnsupportedMethodError(
            f"{name} cannot hold its output to a response_format, so method={method!r} "
            f"is not available: {instead}",
            method=method, instead="function_calling" if tools else None,
        )  # fmt: skip
    if method == "function_calling" and not tools:
        instead = "use method='json_schema'" if formats else "nor a response_format"
        raise UnsupportedMethodError(
            f"{name} cannot be made to call a tool, so method='function_calling' is not "
            f"available: {instead}",
            method=method, instead="json_schema" if formats else None,
        )  # fmt: skip
    return method


def structured_output(
    model: BaseChatModel, schema: Any = None, *, method: Method | None = None,
    include_raw: bool = False, strict: bool | None = None, **kwargs: Any,
) -> Runnable[Any, Any]:  # fmt: skip
    """``model.with_structured_output(...)``: ``model`` bound for ``schema`` and piped into
    the parser that streams the object (see the module)."""
    if kwargs:
        raise InvalidInputError(f"with_structured_output takes no {sorted(kwargs)}")
    method = _method(model, method)  # type: ignore[assignment]
    if schema is None and method != "json_mode":
        raise InvalidInputError(f"method={method!r} needs a schema")
    pydantic = schema if _is_model(schema) else None
    parser: Any
    if method == "function_calling":
        tool = _tool(schema, strict)
        name = tool["function"]["name"]
        bound = model.bind_tools([tool], tool_choice=name)
        if pydantic is not None:
            parser = PydanticToolsParser([pydantic], first_tool_only=True)
        else:
            parser = JsonOutputKeyToolsParser(name, first_tool_only=True)
        parser.required = True
    else:
        fmt = _response_format(schema, strict) if method == "json_schema" else None
        bound = model.bind(response_format=fmt or {"type": "json_object"})
        parser = JsonOutputParser() if pydantic is None else PydanticOutputParser(pydantic)
    out: Runnable[Any, Any] = bound | (WithRaw(parser) if include_raw else parser)
    return out


class StructuredChunk(AddableDict):
    """A piece of an ``include_raw`` stream. They add up to ``{"raw", "parsed",
    "parsing_error"}``: ``raw`` message chunks add up, a later ``parsed`` replaces the
    one before (each is a snapshot of the whole object)."""

    def __add__(self, other: dict[str, Any]) -> StructuredChunk:
        out = StructuredChunk(self)
        for key, value in other.items():
            old = out.get(key)
            out[key] = old + value if key == "raw" and old is not None and value else value
        return out


class _RawStream:
    """One ``include_raw`` stream: the parser's partials next to the raw chunks, and a
    parsing failure kept for the end. Pure; both flavours share it."""

    __slots__ = ("error", "streamer")

    def __init__(self, parser: Any) -> None:
        self.streamer = parser._streamer()
        self.error: OutputParserError | None = None

    def feed(self, chunk: Any) -> StructuredChunk:
        out = StructuredChunk(raw=chunk)
        if self.error is None:
            try:
                parsed = self.streamer.feed(chunk)
            except OutputParserError as exc:
                self.error = exc
            else:
                if parsed is not SKIP and parsed is not None:
                    out["parsed"] = parsed
        return out

    def end(self) -> StructuredChunk:
        if self.error is None:
            try:
                parsed = self.streamer.end()
            except OutputParserError as exc:
                self.error = exc
            else:
                if parsed is SKIP or parsed is None:
                    return StructuredChunk(parsing_error=None)
                return StructuredChunk(parsed=parsed, parsing_error=None)
        return StructuredChunk(parsed=None, parsing_error=self.error)


class WithRaw(StreamingStep[Any, StructuredChunk]):
    """A parser's output next to the message it read: ``{"raw": message, "parsed": ...,
    "parsing_error": None}``, or ``parsed=None`` and the ``OutputParserError`` when the
    output does not parse. Streams the raw chunks as they come, with each partial."""

    run_type = "parser"

    def __init__(self, parser: Any) -> None:
        self.parser = parser

    def _whole(self, message: Any) -> StructuredChunk:
        try:
            parsed = self.parser._invoke(message)
        except OutputParserError as exc:
            return StructuredChunk(raw=message, parsed=None, parsing_error=exc)
        return StructuredChunk(raw=message, parsed=parsed, parsing_error=None)

    def invoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> StructuredChunk:
        """``input`` (a message) and what the parser makes of it."""
        return call_with_config(
            self, lambda v, r, c: self._whole(v), input, config, run_type="parser"
        )

    async def ainvoke(
        self, input: Any, config: RunnableConfig | None = None, **kwargs: Any
    ) -> StructuredChunk:
        """Async ``invoke``."""

        async def parse(value: Any, run: Run, cfg: RunnableConfig) -> StructuredChunk:
            return self._whole(value)

        return await acall_with_config(self, parse, input, config, run_type="parser")

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[StructuredChunk]:
        stream = _RawStream(self.parser)
        for chunk in source:
            yield stream.feed(chunk)
        yield stream.end()

    async def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[StructuredChunk]:
        stream = _RawStream(self.parser)
        async for chunk in source:
            yield stream.feed(chunk)
        yield stream.end()

    def __repr__(self) -> str:
        return f"WithRaw({self.parser!r})"
