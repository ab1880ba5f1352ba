"""``POST /v1/chat/completions`` (streaming or not), OpenAI's chat wire format, from any
served model: a chat model answers with its messages (text, reasoning under both
``reasoning_content`` and ``reasoning``, tool calls as OpenAI deltas); a text model answers
the messages through its chat template (or as ``Role: text`` lines without one)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from lmstream.chunks import GenerationChunk, Usage
from lmstream.errors import InvalidInputError
from lmstream.message_input import convert_to_messages
from lmstream.messages import AIMessageChunk, BaseMessage, add_chunks
from lmstream.server.admission import Ticket
from lmstream.server.errors import HTTPError, from_exception, inband, typed
from lmstream.server.kinds import as_text, chat_side, is_chat, usage_of
from lmstream.server.openai_routes import call_kwargs, check_fields, stream_answer, usage_dict
from lmstream.server.schemas import ChatCompletionRequest
from lmstream.server.state import RequestLog, ServedModel, ServerState
from lmstream.server.streaming import frame, release, stream_error, until_disconnect

__all__ = ["router"]

router = APIRouter()


_REFUSED = (
    ("n", lambda b: b.n != 1, "only n=1 is supported"),
    ("logprobs", lambda b: bool(b.logprobs), "logprobs are not supported"),
    ("top_logprobs", lambda b: b.top_logprobs is not None, "top_logprobs are not supported"),
    ("logit_bias", lambda b: bool(b.logit_bias), "logit_bias is not supported"),
    ("presence_penalty", lambda b: bool(b.presence_penalty), "presence_penalty is not supported"),
    ("frequency_penalty", lambda b: bool(b.frequency_penalty),
     "frequency_penalty is not supported"),
)  # fmt: skip


def _kwargs(body: ChatCompletionRequest, served: ServedModel, state: ServerState) -> dict[str, Any]:
    """The model's call arguments; what it cannot honour is a 400 naming the parameter."""
    for param, refused, message in _REFUSED:
        if refused(body):
            raise HTTPError(400, message, param=param)
    check_fields(body)
    if body.max_tokens is None:
        body.max_tokens = body.max_completion_tokens
    # response_format is settled below, where a chat request's rules for it are
    kwargs = call_kwargs(body.model_copy(update={"response_format": None}), state, default_max=None)
    chat = is_chat(served.llm)
    if body.tools and body.tool_choice != "none":
        if not chat:
            raise HTTPError(400, f"{served.name} is a text model: it takes no tools", param="tools")
        kwargs["tools"] = body.tools
        if body.tool_choice is not None:
            kwargs["tool_choice"] = body.tool_choice
        if body.parallel_tool_calls is not None:
            kwargs["parallel_tool_calls"] = body.parallel_tool_calls
    fmt = body.response_format
    if fmt is not None and fmt.get("type") != "text":
        if not (chat and getattr(served.llm, "supports_response_format", False)):
            raise HTTPError(
                400, f"{served.name} cannot hold its output to a response_format",
                param="response_format",
            )  # fmt: skip
        kwargs["response_format"] = fmt
    return kwargs


def _tool_deltas(chunk: AIMessageChunk) -> list[dict[str, Any]]:
    deltas = []
    for part in chunk.tool_call_chunks:
        delta: dict[str, Any] = {"index": part.get("index") or 0}
        function: dict[str, Any] = {"arguments": part.get("args") or ""}
        if part.get("id"):
            delta["id"], delta["type"] = part["id"], "function"
        if part.get("name"):
            function["name"] = part["name"]
        deltas.append({**delta, "function": function})
    return deltas


def _delta(chunk: Any) -> dict[str, Any]:
    """The OpenAI delta of one chunk of either kind."""
    if not isinstance(chunk, AIMessageChunk):
        return {"content": chunk.text} if chunk.text else {}
    delta: dict[str, Any] = {}
    if reasoning := chunk.reasoning:
        delta["reasoning_content"] = delta["reasoning"] = reasoning
    if text := chunk.text:
        delta["content"] = text
    if chunk.tool_call_chunks:
        delta["tool_calls"] = _tool_deltas(chunk)
    return delta


def _message(chunks: list[Any]) -> tuple[dict[str, Any], str | None, Usage | None]:
    """The whole assistant message, its finish reason and usage."""
    if not chunks or not isinstance(chunks[0], AIMessageChunk):
        whole = as_text(chunks[-1]) if chunks else GenerationChunk("")
        text = "".join(c.text for c in chunks)
        return {"role": "assistant", "content": text}, whole.finish_reason, whole.usage
    total = add_chunks(chunks)
    message: dict[str, Any] = {"role": "assistant", "content": total.text or None}
    if total.reasoning:
        message["reasoning_content"] = message["reasoning"] = total.reasoning
    if total.tool_calls:
        message["tool_calls"] = [
            {"id": call["id"], "type": "function",
             "function": {"name": call["name"], "arguments": json.dumps(call["args"])}}
            for call in total.tool_calls
        ]  # fmt: skip
    elif message["content"] is None:
        message["content"] = ""
    return message, total.response_metadata.get("finish_reason"), usage_of(total)


def _error_frame(exc: BaseException) -> bytes:
    """The in-band error, typed for lmstream's clients."""
    return frame(inband(typed(from_exception(exc), exc)))


class _Chat:
    """One chat completion request: the model, its input and the response ids."""

    def __init__(self, served: ServedModel, messages: list[BaseMessage], kwargs: dict[str, Any]):
        self.served, self.messages, self.kwargs = served, messages, kwargs
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def body(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.served.name, "choices": choices, **extra}  # fmt: skip

    def delta(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return frame(self.body([{"index": 0, "delta": delta, "finish_reason": finish}]))

    def open(self) -> AsyncIterator[Any]:
        return self.served.llm.astream_chunks(self.messages, **self.kwargs)

    async def collect(self, log: RequestLog) -> list[Any]:
        chunks = []
        async for chunk in self.open():
            chunks.append(chunk)
            log.token(bool(chunk.text))
        return chunks

    async def frames(self, ticket: Ticket, log: RequestLog, usage: bool) -> AsyncIterator[bytes]:
        chunks: list[Any] = []
        stream: AsyncIterator[Any] | None = None
        try:
            await ticket.wait()
            yield self.delta({"role": "assistant", "content": ""})
            stream = self.open()
            async for chunk in stream:
                chunks.append(chunk)
                log.token(bool(chunk.text))
                if delta := _delta(chunk):
                    yield self.delta(delta)
            _, finish, total = _message(chunks)
            log.usage = total  # the answer's usage, once: the metrics count it
            yield self.delta({}, finish or "stop")
            if usage:
                yield frame(self.body([], usage=usage_dict(total)))
            yield frame("[DONE]")
        except BaseException as exc:
            if (error := stream_error(log, exc, _error_frame)) is None:
                raise
            yield error  # in-band error, then the stream ends
        finally:
            await release(stream, ticket)


async def _answer(chat: _Chat, request: Request, log: RequestLog) -> Response:
    async def work() -> list[Any]:
        async with chat.served.gate.slot():
            return await chat.collect(log)

    state: ServerState = request.app.state.lmstream
    try:
        finished, chunks = await until_disconnect(request.receive, work(), state.expired)
    except HTTPError as answer:
        typed(answer, answer.__cause__)  # a RemoteChatModel raises what the model raised
        raise
    if not finished or chunks is None:
        log.outcome = "cancelled"
        return Response(status_code=499)
    message, finish, usage = _message(chunks)
    log.usage = usage  # the answer's usage, once: the metrics count it
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish or "stop"}
    body = chat.body([choice], usage=usage_dict(usage))
    return JSONResponse({**body, "object": "chat.completion"})


@router.post("/v1/chat/completions", response_model=None, tags=["openai"])
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
    """Answer a conversation; ``stream: true`` answers with SSE deltas."""
    state: ServerState = request.app.state.lmstream
    served = state.resolve(body.model)
    served = replace(served, llm=chat_side(served.llm))  # a router: its upstreams' chat
    kwargs = _kwargs(body, served, state)
    log: RequestLog = request.scope["lmstream.log"]
    log.model = served.name
    try:  # bad input is a 400 before any stream starts, never an in-band error
        messages = convert_to_messages(body.messages)
        served.llm.validate(messages, **kwargs)
    except InvalidInputError as exc:
        raise HTTPError(400, str(exc), param="messages") from exc
    chat = _Chat(served, messages, kwargs)
    if not body.stream:
        return await _answer(chat, request, log)
    return stream_answer(state, served, body, log, chat.frames)
