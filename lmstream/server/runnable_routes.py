"""Runnable endpoints: ``/invoke``, ``/batch``, ``/stream`` and ``/stream_events``.

Streams are SSE: ``event: metadata`` (the run id) first for ``/stream``, then one
``event: data`` frame per chunk or event, and always an explicit last frame:
``event: end`` with the outcome, or ``event: error`` with the typed error and whatever
was produced before it. ``RemoteLLM`` is the client. A served chat model takes messages
and streams message chunks (``AIMessageChunk.to_dict()``); its ``output`` is the message.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.responses import Response

from lmstream._accumulate import aggregate
from lmstream._json import error_dict, to_jsonable
from lmstream._types import RunnableConfig
from lmstream._utils import uuid7
from lmstream.chunks import GenerationChunk
from lmstream.errors import InvalidInputError
from lmstream.messages import AIMessageChunk, add_chunks
from lmstream.server.admission import Ticket
from lmstream.server.errors import HTTPError, typed
from lmstream.server.kinds import as_text, is_chat
from lmstream.server.openai_routes import call_kwargs, check_fields
from lmstream.server.schemas import BatchRequest, EventsRequest, InvokeRequest, RunConfig
from lmstream.server.state import RequestLog, ServedModel, ServerState
from lmstream.server.streaming import (
    EventStreamResponse,
    frame,
    release,
    stream_error,
    until_disconnect,
)

__all__ = ["router"]

router = APIRouter(tags=["runnable"])


def _config(config: RunConfig) -> RunnableConfig:
    out: RunnableConfig = {"tags": list(config.tags), "metadata": dict(config.metadata)}
    if config.run_name:
        out["run_name"] = config.run_name
    return out


def _result(whole: GenerationChunk | AIMessageChunk) -> dict[str, Any]:
    # a chat model's output is its message (text, reasoning, tool calls) as a dict
    chunk = as_text(whole)
    output = to_jsonable(whole.to_message()) if isinstance(whole, AIMessageChunk) else chunk.text
    return {
        "output": output,
        "finish_reason": chunk.finish_reason,
        "usage": to_jsonable(chunk.usage),
    }


async def _generate(
    served: ServedModel, value: Any, config: RunnableConfig, kwargs: dict[str, Any], log: RequestLog
) -> GenerationChunk | AIMessageChunk:
    chunks: list[Any] = []
    async for chunk in served.llm.astream_chunks(value, config, **kwargs):
        chunks.append(chunk)
        log.token(bool(chunk.text), as_text(chunk).usage)
    if is_chat(served.llm):
        return add_chunks(chunks)
    return aggregate(chunks) if chunks else GenerationChunk("")


def _setup(
    request: Request, body: Any
) -> tuple[ServerState, ServedModel, dict[str, Any], RequestLog]:
    state: ServerState = request.app.state.lmstream
    served = state.resolve(body.model)
    check_fields(body)
    kwargs = call_kwargs(body.kwargs, state, default_max=None, model=served.llm)
    if isinstance(body, BatchRequest) and len(body.inputs) > state.settings.max_batch:
        raise HTTPError(400, f"at most {state.settings.max_batch} inputs", param="inputs")
    try:  # bad input is a 400 before any stream starts, never an in-band error
        for value in body.inputs if isinstance(body, BatchRequest) else [body.input]:
            served.llm.validate(value, **kwargs)
    except InvalidInputError as exc:
        raise HTTPError(400, str(exc), param="input") from exc
    log: RequestLog = request.scope["lmstream.log"]
    log.model = served.name
    return state, served, kwargs, log


@router.post("/invoke", response_model=None)
async def invoke(body: InvokeRequest, request: Request) -> Response:
    """Run the model on one input; the answer carries finish_reason, usage and run id."""
    _, served, kwargs, log = _setup(request, body)
    config = {**_config(body.config), "run_id": uuid7()}

    async def work() -> GenerationChunk | AIMessageChunk:
        async with served.gate.slot():
            return await _generate(served, body.input, config, kwargs, log)  # type: ignore[arg-type]

    try:
        expired = request.app.state.lmstream.expired
        finished, chunk = await until_disconnect(request.receive, work(), expired)
    except HTTPError as answer:
        typed(answer, answer.__cause__)  # so a RemoteLLM raises what the model raised
        raise
    if not finished or chunk is None:
        log.outcome = "cancelled"
        return Response(status_code=499)
    return JSONResponse({**_result(chunk), "run_id": str(config["run_id"]), "model": served.name})


async def _one(
    served: ServedModel, value: Any, config: RunnableConfig, kwargs: dict[str, Any], log: RequestLog
) -> dict[str, Any]:
    try:
        return _result(await _generate(served, value, config, kwargs, log))
    except Exception as exc:
        return {"error": error_dict(exc)}


@router.post("/batch", response_model=None)
async def batch(body: BatchRequest, request: Request) -> Response:
    """Run the model on many inputs; each gets its own result or its own error.

    Each generation takes its own turn at the model's gate, like a request of its own:
    the batch runs at most ``max_concurrency`` of them at once (never more than the model
    admits), and other requests are served in between."""
    _, served, kwargs, log = _setup(request, body)
    lanes = body.max_concurrency or (8 if served.llm.thread_safe else 1)
    window = asyncio.Semaphore(min(lanes, served.gate.max_active))
    config = _config(body.config)

    async def one(value: Any, ticket: Ticket | None) -> dict[str, Any]:
        async with window:
            # the batch was admitted with its first ticket: the others queue past the limit
            ticket = ticket or served.gate.reserve(admitted=True)
            try:
                await ticket.wait()
                return await _one(served, value, config, kwargs, log)
            finally:
                ticket.release()

    async def work() -> list[dict[str, Any]]:
        first = served.gate.reserve()  # 429 when the queue is full
        try:
            tickets = [first, *[None] * (len(body.inputs) - 1)]
            return list(await asyncio.gather(*map(one, body.inputs, tickets)))
        finally:
            first.release()

    finished, results = await until_disconnect(
        request.receive, work(), request.app.state.lmstream.expired
    )
    if not finished or results is None:
        log.outcome = "cancelled"
        return Response(status_code=499)
    if any("error" in r for r in results):
        log.outcome = "partial"
    return JSONResponse({"results": results})


def _error_frame(exc: BaseException) -> bytes:
    return frame(error_dict(exc), event="error")


async def _framed(
    source: AsyncIterator[Any],
    ticket: Ticket,
    log: RequestLog,
    counts: Callable[[Any], bool],
    head: bytes = b"",
    outcome: Callable[[], dict[str, Any]] = dict,
    shape: Callable[[Any], Any] = lambda item: item,
) -> AsyncIterator[bytes]:
    """One ``data`` frame per item, then ``end`` (with ``outcome()``), or ``error`` with
    what went wrong; the source is closed the moment the client leaves, so the model
    stops with it."""
    try:
        await ticket.wait()
        if head:
            yield head
        async for item in source:
            if counts(item):
                log.token(1, getattr(item, "usage", None))
            yield frame(to_jsonable(shape(item)), event="data")
        yield frame(to_jsonable(outcome()), event="end")
    except BaseException as exc:
        if (error := stream_error(log, exc, _error_frame)) is None:
            raise
        yield error
    finally:
        await release(source, ticket)


def _chunk_frames(
    served: ServedModel,
    body: InvokeRequest,
    kwargs: dict[str, Any],
    ticket: Ticket,
    log: RequestLog,
) -> AsyncIterator[bytes]:
    run_id = uuid7()
    config: RunnableConfig = {**_config(body.config), "run_id": run_id}
    chunks = served.llm.astream_chunks(body.input, config, **kwargs)
    head = frame({"run_id": str(run_id), "model": served.name}, event="metadata")
    seen: dict[str, Any] = {}

    def counts(chunk: Any) -> bool:
        info = as_text(chunk).generation_info  # a chat model's message chunks too
        if info:
            seen.update(info)  # the last chunk carries the outcome
        return bool(chunk.text)

    def outcome() -> dict[str, Any]:
        return {"finish_reason": seen.get("finish_reason"), "usage": seen.get("usage")}

    return _framed(chunks, ticket, log, counts, head, outcome)


def _event_frames(
    served: ServedModel,
    body: EventsRequest,
    kwargs: dict[str, Any],
    ticket: Ticket,
    log: RequestLog,
) -> AsyncIterator[bytes]:
    config = _config(body.config)
    events = served.llm.astream_events(body.input, config, version=body.version, **kwargs)
    # tags and metadata go out when they change, not again in every event: an event
    # without them has those of the last event that had them
    last: dict[str, Any] = {}

    def shape(event: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in event.items():
            if key in ("tags", "metadata"):
                if key in last and value == last[key]:
                    continue
                last[key] = value
            out[key] = value
        return out

    def counts(event: dict[str, Any]) -> bool:
        return bool(event["event"].endswith("_stream"))

    return _framed(events, ticket, log, counts, shape=shape)


def _stream_response(state: ServerState, frames: AsyncIterator[bytes], ticket: Ticket) -> Response:
    shutdown = frame(
        {"type": "ServerShutdown", "message": "The server is shutting down."}, event="error"
    )
    return EventStreamResponse(
        frames, expired=state.expired, shutdown_frame=shutdown, on_close=ticket.release
    )


@router.post("/stream", response_model=None)
async def stream(body: InvokeRequest, request: Request) -> Response:
    """Stream the model's chunks as SSE, ending with an ``end`` or ``error`` frame."""
    state, served, kwargs, log = _setup(request, body)
    ticket = served.gate.reserve()
    return _stream_response(state, _chunk_frames(served, body, kwargs, ticket, log), ticket)


@router.post("/stream_events", response_model=None)
async def stream_events(body: EventsRequest, request: Request) -> Response:
    """Stream the run's events (v2 or v1 schema) as SSE, ending with ``end`` or ``error``."""
    state, served, kwargs, log = _setup(request, body)
    ticket = served.gate.reserve()
    return _stream_response(state, _event_frames(served, body, kwargs, ticket, log), ticket)
