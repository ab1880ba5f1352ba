"""Parsers of a chat model's tool calls that stream: each call's arguments fill in while
the model streams them.

``JsonOutputToolsParser`` streams the calls as ``{"args": ..., "type": name}`` dicts (with
``"id"`` under ``return_id=True``), ``JsonOutputKeyToolsParser`` the arguments of the calls
to one tool, ``PydanticToolsParser`` ``Partial[Model]`` instances that end as strictly
validated models. They read a stream of ``AIMessageChunk``s (the fragments of every call,
merged by index as ``AIMessageChunk + AIMessageChunk`` merges them) or a whole
``AIMessage``; each fragment is read once (``lmstream._jsonstream``), so a chunk costs the
same however long the arguments have grown. Every partial is a snapshot: keeping it is
safe, the next one does not change it.

Where LangChain's parsers drop a call whose arguments are not JSON, these raise
``OutputParserError`` carrying the raw arguments.
"""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from lmstream._execution import acall_with_config, call_with_config
from lmstream._jsonstream import JsonStream, PartialDict, PartialList
from lmstream._message_merge import _owner
from lmstream._partial import PartialBuilder, partial_model
from lmstream._types import RunnableConfig
from lmstream.errors import OutputParserError
from lmstream.runnable import StreamingStep
from lmstream.runs import Run
from lmstream.structured import SKIP

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "JsonOutputKeyToolsParser",
    "JsonOutputToolsParser",
    "PydanticToolsParser",
    "ToolCallStream",
]


class _Call:
    """One tool call of a streamed message: who it is and its arguments so far."""

    __slots__ = ("args", "builder", "dirty", "id", "index", "item", "name", "stream")

    def __init__(self, fragment: dict[str, Any]) -> None:
        self.index = fragment.get("index")
        self.id: str | None = fragment.get("id") or None
        self.name: str | None = fragment.get("name") or None
        self.stream = JsonStream()
        self.args: dict[str, Any] = PartialDict()  # the arguments so far: an object
        self.item: Any = SKIP  # what a parser last made of this call
        self.dirty = True  # changed since a parser made ``item``
        self.builder: PartialBuilder | None = None

    def final_args(self) -> Any:
        """The whole arguments, strictly validated (no text at all is ``{}``)."""
        if not self.stream.started and not self.stream.text.strip():
            return {}
        args = self.stream.finish()
        if not isinstance(args, dict):
            raise OutputParserError(
                f"The arguments of the call to {self.name!r} are not a JSON object",
                llm_output=self.stream.text,
            )
        return args


def _fragments(message: Any) -> list[dict[str, Any]]:
    """The tool-call fragments ``message`` carries: a chunk's own, else its whole calls."""
    fragments = getattr(message, "tool_call_chunks", None)
    if fragments:
        return list(fragments)
    calls = getattr(message, "tool_calls", None)
    if calls is None:
        raise OutputParserError(
            f"a tool-call parser reads chat messages, not {type(message).__name__}",
            llm_output=message if isinstance(message, str) else "",
        )
    import json  # on use: it is not needed to import lmstream

    out = [{"name": c.get("name"), "id": c.get("id"), "args": json.dumps(c.get("args", {}))}
           for c in calls]  # fmt: skip
    out += [{"name": c.get("name"), "id": c.get("id"), "args": c.get("args") or ""}
            for c in getattr(message, "invalid_tool_calls", None) or ()]  # fmt: skip
    return out


class ToolCallStream:
    """The tool calls of one streamed message, each call's arguments parsed as they arrive.

    ``feed(chunk)`` reads a chunk's fragments (merged into calls by index, else by id, as
    ``AIMessageChunk`` merges them) and says whether any call changed."""

    __slots__ = ("_keys", "calls")

    def __init__(self) -> None:
        self.calls: list[_Call] = []
        self._keys: list[dict[str, Any]] = []  # each call's index and id, for ``_owner``

    def feed(self, message: Any) -> bool:
        """Read ``message``'s fragments; whether a call changed (it is then ``dirty``)."""
        changed: set[int] = set()
        for fragment in _fragments(message):
            at = _owner(self._keys, fragment)
            if at < 0:
                at = len(self.calls)
                self.calls.append(_Call(fragment))
                self._keys.append({"index": fragment.get("index"), "id": fragment.get("id")})
                changed.add(at)
            call = self.calls[at]
            if not call.name and fragment.get("name"):
                call.name = fragment["name"]
                changed.add(at)
            if not call.id and fragment.get("id"):
                call.id = self._keys[at]["id"] = fragment["id"]
                changed.add(at)
            if (args := fragment.get("args")) and call.stream.feed(args):
                partial = call.stream.partial()
                if isinstance(partial, dict):
                    call.args = partial
                    changed.add(at)
        for at in changed:
            self.calls[at].dirty = True
        return bool(changed)


class _Streamer:
    """One stream through a tool-call parser: the per-chunk work both flavours share."""

    __slots__ = ("calls", "last", "parser", "text")

    def __init__(self, parser: JsonOutputToolsParser) -> None:
        self.parser = parser
        self.calls = ToolCallStream()
        self.last: list[Any] | None = None  # the items last handed on
        self.text: list[str] = []  # the message's text, for an error without calls

    def feed(self, chunk: Any) -> Any:
        """What to yield for ``chunk`` (``SKIP`` when the output did not change)."""
        if text := getattr(chunk, "text", None):
            self.text.append(text)
        if not self.calls.feed(chunk):
            return SKIP
        calls = [c for c in self.parser._calls(self.calls.calls) if c.name is not None]
        for call in calls:
            if call.dirty:
                call.dirty = False
                if (item := self.parser._partial(call)) is not SKIP:
                    call.item = item
        items = [c.item for c in calls if c.item is not SKIP]
        last = self.last
        if last is not None and len(items) == len(last) and all(map(operator.is_, items, last)):
            return SKIP
        self.last = items
        return self.parser._shape(items, partial=True)

    def final(self) -> list[Any]:
        """The items of the final output, strictly validated."""
        items = [self.parser._final(c) for c in self.parser._calls(self.calls.calls)]
        if not items and self.parser.required:
            text = "".join(self.text)
            answered = f", it answered {text[:80]!r}" if text else ""
            raise OutputParserError(f"The model called no tool{answered}", llm_output=text)
        return items

    def end(self) -> Any:
        """The final output, strictly validated (``SKIP`` when the last partial was it)."""
        items = self.final()
        if self.last is not None and items == self.last:
            return SKIP
        return self.parser._shape(items, partial=False)


class JsonOutputToolsParser(StreamingStep[Any, Any]):
    """The tool calls of a chat message as ``{"args": {...}, "type": name}`` dicts (with
    ``"id"`` when ``return_id``); ``first_tool_only``: the first call alone (``None``
    without one). Streams a snapshot whenever a call's arguments grow."""

    run_type = "parser"

    def __init__(
        self, *, strict: bool = False, return_id: bool = False, first_tool_only: bool = False
    ) -> None:
        self.strict = strict
        self.return_id = return_id
        self.first_tool_only = first_tool_only
        self.required = False
        """Whether a message without a call is an ``OutputParserError`` (else ``[]``/``None``)."""

    # -- what each parser makes of a call ---------------------------------------------------

    def _dict(self, call: _Call, args: Any) -> dict[str, Any]:
        item = PartialDict(args=args)
        if self.return_id:
            item["id"] = call.id
        item["type"] = call.name
        return item

    def _partial(self, call: _Call) -> Any:
        return self._dict(call, call.args)

    def _final(self, call: _Call) -> Any:
        args = call.final_args()
        if self.strict:
            import json

            try:
                json.loads(call.stream.text or "{}")
            except ValueError as exc:
                raise OutputParserError(
                    f"Invalid JSON in the call to {call.name!r}: {exc}", llm_output=call.stream.text
                ) from exc
        return self._dict(call, args)

    def _calls(self, calls: list[_Call]) -> list[_Call]:
        """The calls this parser hands on."""
        return calls[:1] if self.first_tool_only else calls

    def _shape(self, items: list[Any], *, partial: bool) -> Any:
        if self.first_tool_only:
            return items[0] if items else None
        return PartialList(items) if partial else list(items)

    # -- running ----------------------------------------------------------------------------

    def _streamer(self) -> _Streamer:
        """A stream through this parser: ``feed(chunk)`` and ``end()`` give what to yield,
        or ``SKIP``."""
        return _Streamer(self)

    def parse_message(self, message: Any) -> Any:
        """The parsed calls of a whole message (an ``AIMessage`` or its chunk)."""
        streamer = _Streamer(self)
        streamer.feed(message)
        return self._shape(streamer.final(), partial=False)

    _invoke = parse_message

    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """The parsed calls of ``input``, a chat message."""
        return call_with_config(
            self, lambda v, r, c: self.parse_message(v), input, config, run_type="parser"
        )

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        """Async ``invoke``."""

        async def parse(value: Any, run: Run, cfg: RunnableConfig) -> Any:
            return self.parse_message(value)

        return await acall_with_config(self, parse, input, config, run_type="parser")

    def _transform(
        self, source: Iterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> Iterator[Any]:
        streamer = _Streamer(self)
        for chunk in source:
            if (out := streamer.feed(chunk)) is not SKIP and out is not None:
                yield out
        if (out := streamer.end()) is not SKIP and out is not None:
            yield out

    async def _atransform(
        self, source: AsyncIterator[Any], run: Run, config: RunnableConfig, **kwargs: Any
    ) -> AsyncIterator[Any]:
        streamer = _Streamer(self)
        async for chunk in source:
            if (out := streamer.feed(chunk)) is not SKIP and out is not None:
                yield out
        if (out := streamer.end()) is not SKIP and out is not None:
            yield out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(first_tool_only={self.first_tool_only})"


class JsonOutputKeyToolsParser(JsonOutputToolsParser):
    """The arguments of the calls to the tool ``key_name`` (the whole call dicts under
    ``return_id=True``); ``first_tool_only``: the first such call alone."""

    def __init__(
        self, key_name: str, *, first_tool_only: bool = False, return_id: bool = False,
        strict: bool = False,
    ) -> None:  # fmt: skip
        super().__init__(strict=strict, return_id=return_id, first_tool_only=first_tool_only)
        self.key_name = key_name

    def _dict(self, call: _Call, args: Any) -> Any:
        return super()._dict(call, args) if self.return_id else args

    def _calls(self, calls: list[_Call]) -> list[_Call]:
        mine = [call for call in calls if call.name == self.key_name]
        return mine[:1] if self.first_tool_only else mine

    def __repr__(self) -> str:
        return f"JsonOutputKeyToolsParser({self.key_name!r})"


def _tool_name(model: type[BaseModel]) -> str:
    title = model.model_config.get("title")
    return title if isinstance(title, str) else model.__name__


class PydanticToolsParser(JsonOutputToolsParser):
    """Each tool call as an instance of the tool's pydantic model, found by name. While
    streaming: ``Partial[Model]`` instances (every field optional, each a valid partial
    object); at the end the strictly validated models. A call to a tool not in ``tools``,
    or arguments that do not validate, raise ``OutputParserError`` with the raw arguments."""

    def __init__(self, tools: Sequence[type[BaseModel]], *, first_tool_only: bool = False) -> None:
        super().__init__(first_tool_only=first_tool_only)
        self.tools = list(tools)
        # by the name LangChain gives the tool (its title) and the one bind_tools gives it
        self._models = {n: t for t in self.tools for n in (t.__name__, _tool_name(t))}

    def _model(self, call: _Call) -> type[BaseModel]:
        model = self._models.get(call.name or "")
        if model is None:
            raise OutputParserError(
                f"The model called {call.name!r}, which is not among the tools "
                f"{sorted(self._models)}",
                llm_output=call.stream.text,
            )
        return model

    def _partial(self, call: _Call) -> Any:
        from pydantic import ValidationError

        if call.builder is None:
            call.builder = PartialBuilder(partial_model(self._model(call)))
        try:
            return call.builder.build(call.args)
        except ValidationError:  # e.g. an enum's value still being typed: keep the last
            return call.item if call.item is not SKIP else call.builder.cls()

    def _final(self, call: _Call) -> Any:
        from pydantic import ValidationError

        model = self._model(call)
        try:
            return model.model_validate(call.final_args())
        except ValidationError as exc:
            raise OutputParserError(
                f"Failed to parse {model.__name__} from the call's arguments: {exc}",
                llm_output=call.stream.text,
                errors=exc.errors(include_url=False),
            ) from exc

    def __repr__(self) -> str:
        return f"PydanticToolsParser({[t.__name__ for t in self.tools]})"
