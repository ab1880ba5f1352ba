"""Chat messages and message chunks, with LangChain's fields. Plain slots objects: a chunk
is cheap to build, and ``chunk + chunk`` merges text, reasoning, tool-call fragments and
usage so that a stream adds up to the same message however it was cut."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from lmstream._message_merge import (
    ToolCall,
    ToolCallChunk,
    UsageMetadata,
    _blocks_text,
    add_usage,
    merge_content,
    merge_tool_call_chunks,
    parse_tool_calls,
)
from lmstream.chunks import merge_info

__all__ = [
    "AIMessage",
    "AIMessageChunk",
    "BaseMessage",
    "BaseMessageChunk",
    "HumanMessage",
    "HumanMessageChunk",
    "SystemMessage",
    "SystemMessageChunk",
    "ToolCall",
    "ToolCallChunk",
    "ToolMessage",
    "ToolMessageChunk",
    "UsageMetadata",
    "add_chunks",
]


class BaseMessage:
    """A message: ``content`` (a string or a list of content blocks) and metadata."""

    __slots__ = ("_additional_kwargs", "_response_metadata", "content", "id", "name")
    type: ClassVar[str] = "base"
    _fields: ClassVar[tuple[str, ...]] = ("content", "name", "id")

    def __init__(
        self,
        content: Any = "",
        *,
        id: str | None = None,
        name: str | None = None,
        additional_kwargs: dict[str, Any] | None = None,
        response_metadata: dict[str, Any] | None = None,
    ) -> None:
        self.content = content
        self.id = id
        self.name = name
        self._additional_kwargs = additional_kwargs
        self._response_metadata = response_metadata

    @property
    def additional_kwargs(self) -> dict[str, Any]:
        """Provider extras (LangChain's field)."""
        if self._additional_kwargs is None:
            self._additional_kwargs = {}
        return self._additional_kwargs

    @additional_kwargs.setter
    def additional_kwargs(self, value: dict[str, Any]) -> None:
        self._additional_kwargs = value

    @property
    def response_metadata(self) -> dict[str, Any]:
        """What the provider said about the response: ``finish_reason``, ``model_name``."""
        if self._response_metadata is None:
            self._response_metadata = {}
        return self._response_metadata

    @response_metadata.setter
    def response_metadata(self, value: dict[str, Any]) -> None:
        self._response_metadata = value

    @property
    def text(self) -> str:
        """The text of the content, reasoning left out."""
        content = self.content
        return content if type(content) is str else _blocks_text(content, "text")

    @property
    def reasoning(self) -> str:
        """The reasoning the model streamed in its own channel."""
        content = self.content
        return "" if type(content) is str else _blocks_text(content, "reasoning")

    @property
    def content_blocks(self) -> list[dict[str, Any]]:
        """The content as standard blocks (``text``, ``reasoning``, ``tool_call``)."""
        content = self.content
        if isinstance(content, str):
            return [{"type": "text", "text": content}] if content else []
        return [{"type": "text", "text": b} if isinstance(b, str) else dict(b) for b in content]

    def _key(self) -> tuple[Any, ...]:
        return (
            *(getattr(self, f) for f in self._fields),
            self._additional_kwargs or {},
            self._response_metadata or {},
        )

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = [f"{f}={getattr(self, f)!r}" for f in self._fields if f == "content"]
        shown += [f"{f}={v!r}" for f in self._fields if f != "content" and (v := getattr(self, f))]
        if self._additional_kwargs:
            shown.append(f"additional_kwargs={self._additional_kwargs!r}")
        if self._response_metadata:
            shown.append(f"response_metadata={self._response_metadata!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``type`` plus every field."""
        out: dict[str, Any] = {"type": self.type}
        for field in self._fields:
            out[field] = getattr(self, field)
        out["additional_kwargs"] = self.additional_kwargs
        out["response_metadata"] = self.response_metadata
        return out

    def pretty_repr(self) -> str:
        """A readable, titled rendering of the message."""
        title = f" {type(self).__name__.removesuffix('Chunk').replace('Message', ' Message')} "
        return f"{title:=^80}\n\n{self.text}"


class HumanMessage(BaseMessage):
    """A message from the user."""

    __slots__ = ()
    type: ClassVar[str] = "human"


class SystemMessage(BaseMessage):
    """Instructions for the model."""

    __slots__ = ()
    type: ClassVar[str] = "system"


class ToolMessage(BaseMessage):
    """The result of a tool call, sent back to the model."""

    __slots__ = ("artifact", "status", "tool_call_id")
    type: ClassVar[str] = "tool"
    _fields: ClassVar[tuple[str, ...]] = ("content", "name", "id", "tool_call_id", "status")

    def __init__(
        self,
        content: Any = "",
        *,
        tool_call_id: str,
        status: Literal["success", "error"] = "success",
        artifact: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(content, **kwargs)
        self.tool_call_id = tool_call_id
        self.status = status
        self.artifact = artifact


class AIMessage(BaseMessage):
    """A message from the model: content, tool calls, usage."""

    __slots__ = ("_invalid_tool_calls", "_tool_calls", "usage_metadata")
    type: ClassVar[str] = "ai"
    _fields: ClassVar[tuple[str, ...]] = (
        "content", "name", "id", "tool_calls", "invalid_tool_calls", "usage_metadata",
    )  # fmt: skip

    def __init__(
        self,
        content: Any = "",
        *,
        tool_calls: list[ToolCall] | None = None,
        invalid_tool_calls: list[dict[str, Any]] | None = None,
        usage_metadata: UsageMetadata | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(content, **kwargs)
        self._tool_calls = tool_calls
        self._invalid_tool_calls = invalid_tool_calls
        self.usage_metadata = usage_metadata

    @property
    def tool_calls(self) -> list[ToolCall]:
        """Complete tool calls."""
        if self._tool_calls is None:
            self._tool_calls = []
        return self._tool_calls

    @tool_calls.setter
    def tool_calls(self, value: list[ToolCall]) -> None:
        self._tool_calls = value

    @property
    def invalid_tool_calls(self) -> list[dict[str, Any]]:
        """Tool calls whose arguments are not a JSON object."""
        if self._invalid_tool_calls is None:
            self._invalid_tool_calls = []
        return self._invalid_tool_calls

    @invalid_tool_calls.setter
    def invalid_tool_calls(self, value: list[dict[str, Any]]) -> None:
        self._invalid_tool_calls = value

    @property
    def content_blocks(self) -> list[dict[str, Any]]:
        """Reasoning, text and tool-call blocks, as LangChain's standard content."""
        blocks = super().content_blocks
        known = {b.get("id") for b in blocks if b.get("type") == "tool_call"}
        for call in self.tool_calls:
            if call.get("id") is None or call.get("id") not in known:
                blocks.append({"type": "tool_call", "id": call.get("id"),
                               "name": call.get("name"), "args": call.get("args", {})})  # fmt: skip
        return blocks


class BaseMessageChunk(BaseMessage):
    """A piece of a message; pieces add up with ``+``."""

    __slots__ = ()

    def __add__(self, other: Any) -> Any:
        if type(other) is not type(self):
            if isinstance(other, (list, tuple)):
                out = self
                for item in other:
                    out = out + item
                return out
            raise TypeError(
                f"unsupported operand type(s) for +: '{type(self).__name__}' "
                f"and '{type(other).__name__}'"
            )
        return type(self)(
            merge_content(self.content, other.content),
            id=_merge_id(self.id, other.id),
            name=self.name or other.name,
            additional_kwargs=merge_info(self._additional_kwargs, other._additional_kwargs),
            response_metadata=merge_info(self._response_metadata, other._response_metadata),
        )


def _merge_id(left: str | None, right: str | None) -> str | None:
    if left is None or (right is not None and left.startswith("lc_") and right[:3] != "lc_"):
        return right
    return left


class HumanMessageChunk(HumanMessage, BaseMessageChunk):
    """A piece of a human message."""

    __slots__ = ()


class SystemMessageChunk(SystemMessage, BaseMessageChunk):
    """A piece of a system message."""

    __slots__ = ()


class ToolMessageChunk(ToolMessage, BaseMessageChunk):
    """A piece of a tool message."""

    __slots__ = ()

    def __add__(self, other: Any) -> Any:
        if type(other) is not ToolMessageChunk:
            return super().__add__(other)
        return ToolMessageChunk(
            merge_content(self.content, other.content),
            tool_call_id=self.tool_call_id,
            status="error" if "error" in (self.status, other.status) else "success",
            id=_merge_id(self.id, other.id),
            additional_kwargs=merge_info(self._additional_kwargs, other._additional_kwargs),
            response_metadata=merge_info(self._response_metadata, other._response_metadata),
        )


def _add_usage(left: AIMessageChunk, right: AIMessageChunk) -> tuple[UsageMetadata | None, bool]:
    """Usage of two chunks and whether it is a running total: a running total replaces
    what came before it; deltas add (so a stream is never counted twice)."""
    if right.usage_metadata is None:
        return left.usage_metadata, left.usage_running_total
    if right.usage_running_total or left.usage_metadata is None:
        return right.usage_metadata, right.usage_running_total or left.usage_running_total
    usage = add_usage(left.usage_metadata, right.usage_metadata)  # type: ignore[arg-type]
    return usage, left.usage_running_total  # type: ignore[return-value]


class AIMessageChunk(AIMessage, BaseMessageChunk):
    """A piece of a model's message. ``tool_call_chunks`` hold streamed tool-call
    fragments; ``tool_calls`` is parsed from them (partial arguments as far as they go).
    A provider that reports running usage totals sets ``usage_running_total``."""

    __slots__ = ("_tool_call_chunks", "chunk_position", "usage_running_total")
    _fields: ClassVar[tuple[str, ...]] = (
        *AIMessage._fields, "tool_call_chunks", "chunk_position",
    )  # fmt: skip

    def __init__(
        self,
        content: Any = "",
        *,
        id: str | None = None,
        tool_call_chunks: list[ToolCallChunk] | None = None,
        usage_metadata: UsageMetadata | None = None,
        response_metadata: dict[str, Any] | None = None,
        chunk_position: Literal["last"] | None = None,
        usage_running_total: bool = False,
        tool_calls: list[ToolCall] | None = None,
        invalid_tool_calls: list[dict[str, Any]] | None = None,
        name: str | None = None,
        additional_kwargs: dict[str, Any] | None = None,
    ) -> None:
        # assigned directly (no super chain): this runs once per streamed token
        self.content = content
        self.id = id
        self.name = name
        self._additional_kwargs = additional_kwargs
        self._response_metadata = response_metadata
        self._tool_call_chunks = tool_call_chunks
        self._tool_calls = tool_calls
        self._invalid_tool_calls = invalid_tool_calls
        self.usage_metadata = usage_metadata
        self.usage_running_total = usage_running_total
        self.chunk_position = chunk_position

    @property
    def tool_call_chunks(self) -> list[ToolCallChunk]:
        """Streamed tool-call fragments ``{name, args, id, index}``."""
        if self._tool_call_chunks is None:
            self._tool_call_chunks = []
        return self._tool_call_chunks

    @tool_call_chunks.setter
    def tool_call_chunks(self, value: list[ToolCallChunk]) -> None:
        self._tool_call_chunks = value
        self._tool_calls = self._invalid_tool_calls = None

    def _parse(self) -> None:
        merged = merge_tool_call_chunks(self._tool_call_chunks or [])  # type: ignore[arg-type]
        valid, invalid = parse_tool_calls(merged)
        self._tool_calls = valid  # type: ignore[assignment]
        self._invalid_tool_calls = invalid

    @property
    def tool_calls(self) -> list[ToolCall]:
        """Tool calls parsed from the fragments so far."""
        if self._tool_calls is None:
            if self._tool_call_chunks:
                self._parse()
            else:
                self._tool_calls = []
        return self._tool_calls  # type: ignore[return-value]

    @tool_calls.setter
    def tool_calls(self, value: list[ToolCall]) -> None:
        self._tool_calls = value

    @property
    def invalid_tool_calls(self) -> list[dict[str, Any]]:
        """Fragments whose arguments cannot be a JSON object."""
        if self._invalid_tool_calls is None:
            if self._tool_call_chunks:
                self._parse()
            else:
                self._invalid_tool_calls = []
        return self._invalid_tool_calls  # type: ignore[return-value]

    @invalid_tool_calls.setter
    def invalid_tool_calls(self, value: list[dict[str, Any]]) -> None:
        self._invalid_tool_calls = value

    def __add__(self, other: Any) -> AIMessageChunk:
        if type(other) is not AIMessageChunk:
            out: AIMessageChunk = BaseMessageChunk.__add__(self, other)
            return out
        left_calls, right_calls = self._tool_call_chunks, other._tool_call_chunks
        fragments = calls = None
        if left_calls or right_calls:
            fragments = merge_tool_call_chunks(left_calls or [], right_calls or [])  # type: ignore[arg-type]
        elif self._tool_calls or other._tool_calls:
            calls = [*(self._tool_calls or ()), *(other._tool_calls or ())]
        usage, running = _add_usage(self, other)
        return AIMessageChunk(
            merge_content(self.content, other.content),
            id=_merge_id(self.id, other.id),
            tool_call_chunks=fragments,  # type: ignore[arg-type]
            tool_calls=calls,
            usage_metadata=usage,
            response_metadata=merge_info(self._response_metadata, other._response_metadata),
            chunk_position="last"
            if "last" in (self.chunk_position, other.chunk_position)
            else None,
            usage_running_total=running,
            name=self.name or other.name,
            additional_kwargs=merge_info(self._additional_kwargs, other._additional_kwargs),
        )

    def to_message(self) -> AIMessage:
        """The complete message these chunks add up to."""
        return AIMessage(
            self.content,
            tool_calls=list(self.tool_calls),
            invalid_tool_calls=list(self.invalid_tool_calls),
            usage_metadata=self.usage_metadata,
            id=self.id,
            name=self.name,
            additional_kwargs=self._additional_kwargs,
            response_metadata=self._response_metadata,
        )


def add_chunks(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    """Chunks added up in linear time: text is joined once, not copied pair by pair, and
    only the chunks that carry more than text are merged one by one. Each pass over the
    chunks is a comprehension (one per thing to find), the cheapest loop there is."""
    texts = [c.content for c in chunks]
    try:
        text = "".join(texts)  # also the check that every content is a string
    except TypeError:
        return _fold(chunks)
    extras = [
        c for c in chunks
        if c._tool_call_chunks or c.usage_metadata is not None or c._response_metadata
        or c.chunk_position or c._tool_calls or c.name or c._additional_kwargs
    ]  # fmt: skip
    if any(c._tool_call_chunks for c in extras):
        return _fold(chunks)
    total = AIMessageChunk("")
    for c in extras:
        total = total + AIMessageChunk(
            "", usage_metadata=c.usage_metadata, tool_calls=c._tool_calls,
            response_metadata=c._response_metadata, chunk_position=c.chunk_position,
            usage_running_total=c.usage_running_total, name=c.name,
            additional_kwargs=c._additional_kwargs,
        )  # fmt: skip
    ids = {c.id for c in chunks}  # one, as a rule: then the order of ids does not matter
    ident = None
    for chunk_id in dict.fromkeys([c.id for c in chunks]) if len(ids) > 1 else ids:
        if chunk_id is not None:
            ident = _merge_id(ident, chunk_id)
    total.id = ident
    total.content = text
    return total


def _fold(chunks: list[AIMessageChunk]) -> AIMessageChunk:
    total = chunks[0]
    for chunk in chunks[1:]:
        total = total + chunk
    return total
