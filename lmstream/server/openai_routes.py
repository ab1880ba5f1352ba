"""OpenAI-compatible endpoints: ``POST /v1/completions`` (streaming or not) and
``GET /v1/models``, so every OpenAI client streams from any lmstream model."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.responses import Response

from lmstream._accumulate import aggregate
from lmstream.chunks import GenerationChunk, Usage
from lmstream.errors import InvalidInputError
from lmstream.server.admission import Ticket
from lmstream.server.errors import HTTPError, error_body, from_exception, inband
from lmstream.server.kinds import text_stream
from lmstream.server.schemas import UNSUPPORTED, CompletionRequest, extra_fields
from lmstream.server.state import RequestLog, ServedModel, ServerState
from lmstream.server.streaming import (
    EventStreamResponse,
    frame,
    release,
    stream_error,
    until_disconnect,
)

__all__ = ["check_fields", "router", "stream_answer"]

router = APIRouter()
logger = logging.getLogger("lmstream.server")

_UNSUPPORTED: dict[str, tuple[str, Callable[[CompletionRequest], bool], str]] = {
    "n": ("n", lambda b: b.n != 1, "only n=1 is supported"),
    "echo": ("echo", lambda b: b.echo, "echo is not supported"),
    "best_of": ("best_of", lambda b: b.best_of not in (None, 1), "only best_of=1 is supported"),
    "logprobs": ("logprobs", lambda b: b.logprobs is not None, "logprobs are not supported"),
    "suffix": ("suffix", lambda b: b.suffix is not None, "suffix is not supported"),
    "logit_bias": ("logit_bias", lambda b: bool(b.logit_bias), "logit_bias is not supported"),
    "presence_penalty": (
        "presence_penalty",
        lambda b: bool(b.presence_penalty),
        "presence_penalty is not supported",
    ),
    "frequency_penalty": (
        "frequency_penalty",
        lambda b: bool(b.frequency_penalty),
        "frequency_penalty is not supported",
    ),
}


def call_kwargs(
    body: Any, state: ServerState, *, default_max: int | None, model: Any = None
) -> dict[str, Any]:
    """Generation kwargs from a request body over the server's request defaults, with the
    max_tokens cap applied; ``response_format`` only for a model that declares it."""
    if body.response_format is not None and not getattr(model, "supports_response_format", False):
        param = (
            "response_format" if isinstance(body, CompletionRequest) else "kwargs.response_format"
        )
        raise HTTPError(400, "response_format is not supported by this model", param=param)
    cap = state.settings.max_tokens_cap
    defaults = state.settings.request_defaults
    default_max = defaults.get("max_tokens", default_max)
    max_tokens = body.max_tokens if body.max_tokens is not None else default_max
    if max_tokens is not None and max_tokens > cap:
        raise HTTPError(
            400, f"max_tokens must be at most {cap}, got {max_tokens}", param="max_tokens"
        )
    kwargs = {
        "max_tokens": max_tokens,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "seed": body.seed,
        "stop": body.stop,
        "response_format": body.response_format,
    }
    return {**defaults, **{k: v for k, v in kwargs.items() if v is not None}}


def check_fields(body: BaseModel) -> None:
    """A parameter the server cannot honour is a 400 naming it; other unknown fields are
    ignored, and logged (escaped, so a field name cannot forge a log line)."""
    extras = extra_fields(body)
    for name in extras:
        leaf = name.rpartition(".")[2]
        if leaf in UNSUPPORTED:
            raise HTTPError(400, f"{leaf} is not supported by this server", param=name)
    if extras:
        names = ", ".join(repr(name[:64]) for name in extras[:16])
        logger.warning("ignored unknown request field(s): %s", names)


def _check(body: CompletionRequest, state: ServerState) -> list[str]:
    for param, unsupported, message in _UNSUPPORTED.values():
        if unsupported(body):
            raise HTTPError(400, message, param=param)
    check_fields(body)
    prompts = [body.prompt] if isinstance(body.prompt, str) else list(body.prompt)
    if not prompts:
        raise HTTPError(400, "prompt must not be an empty list", param="prompt")
    if len(prompts) > state.settings.max_batch:
        limit = state.settings.max_batch
        raise HTTPError(400, f"at most {limit} prompts per request", param="prompt")
    return prompts


def usage_dict(usage: Any) -> dict[str, Any] | None:
    """OpenAI's usage object; counted by lmstream rather than the model, it says
    ``"estimated": true`` (a field other clients ignore)."""
    if not isinstance(usage, Usage):
        return None
    out: dict[str, Any] = {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    if usage.estimated:
        out["estimated"] = True
    return out


Frames = Callable[[Ticket, RequestLog, bool], AsyncIterator[bytes]]


def stream_answer(
    state: ServerState, served: ServedModel, body: Any, log: RequestLog, frames: Frames
) -> Response:
    """A streamed answer: the model's slot reserved now (429 before the stream starts),
    usage sent last if the client asked for it, an OpenAI-shaped error at shutdown."""
    ticket = served.gate.reserve()
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    shutdown = frame(error_body("The server is shutting down.", "server_error", code="shutdown"))
    return EventStreamResponse(
        frames(ticket, log, include_usage),
        expired=state.expired,
        shutdown_frame=shutdown,
        on_close=ticket.release,
    )


def _error_frame(exc: BaseException) -> bytes:
    return frame(inband(from_exception(exc)))


class _Completion:
    """One /v1/completions request: the model, the prompts and the response ids."""

    def __init__(self, served: ServedModel, prompts: list[str], kwargs: dict[str, Any]) -> None:
        self.served, self.prompts, self.kwargs = served, prompts, kwargs
        self.id = f"cmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def chunk(self, index: int, text: str, finish: str | None) -> dict[str, Any]:
        choice = {"text": text, "index": index, "logprobs": None, "finish_reason": finish}
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.served.name,
            "choices": [choice],
        }

    async def collect(
        self, stream: AsyncIterator[GenerationChunk], log: RequestLog
    ) -> GenerationChunk:
        chunks = []
        async for chunk in stream:
            chunks.append(chunk)
            log.token(bool(chunk.text), chunk.usage)
        return aggregate(chunks) if chunks else GenerationChunk("")

    def validate(self) -> None:
        """Check every prompt now, so bad input is a 400, not an in-band error; the
        streams themselves are opened one at a time once the model is ours."""
        try:
            for prompt in self.prompts:
                self.served.llm.validate(prompt, **self.kwargs)
        except InvalidInputError as exc:
            raise HTTPError(400, str(exc), param="prompt") from exc

    def open(self, prompt: str) -> AsyncIterator[GenerationChunk]:
        return text_stream(self.served.llm, prompt, **self.kwargs)

    async def frames(
        self, ticket: Ticket, log: RequestLog, include_usage: bool
    ) -> AsyncIterator[bytes]:
        total: Usage | None = None
        stream: AsyncIterator[GenerationChunk] | None = None
        try:
            await ticket.wait()
            for index, prompt in enumerate(self.prompts):
                stream = self.open(prompt)
                async for chunk in stream:
                    log.token(bool(chunk.text), chunk.usage)
                    if chunk.text or chunk.finish_reason:
                        yield frame(self.chunk(index, chunk.text, chunk.finish_reason))
                    if chunk.usage is not None:
                        total = chunk.usage if total is None else total + chunk.usage
            if include_usage:
                yield frame({**self.chunk(0, "", None), "choices": [], "usage": usage_dict(total)})
            yield frame("[DONE]")
        except BaseException as exc:
            if (error := stream_error(log, exc, _error_frame)) is None:
                raise
            yield error  # in-band error, then the stream ends
        finally:
            await release(stream, ticket)


async def _answer(completion: _Completion, request: Request, log: RequestLog) -> Response:
    async def work() -> list[GenerationChunk]:
        ticket = completion.served.gate.reserve()
        try:
            await ticket.wait()
            return [await completion.collect(completion.open(p), log) for p in completion.prompts]
        finally:
            ticket.release()

    finished, results = await until_disconnect(
        request.receive, work(), request.app.state.lmstream.expired
    )
    if not finished or results is None:
        log.outcome = "cancelled"
        return Response(status_code=499)
    total: Usage | None = None
    choices = []
    for index, result in enumerate(results):
        choices.append(
            {
                "text": result.text,
                "index": index,
                "logprobs": None,
                "finish_reason": result.finish_reason,
            }
        )
        if result.usage is not None:
            total = result.usage if total is None else total + result.usage
    body = {**completion.chunk(0, "", None), "choices": choices, "usage": usage_dict(total)}
    return JSONResponse(body)


@router.post("/v1/completions", response_model=None, tags=["openai"])
async def completions(body: CompletionRequest, request: Request) -> Response:
    """Complete a prompt (or a list of prompts); ``stream: true`` answers with SSE."""
    state: ServerState = request.app.state.lmstream
    served = state.resolve(body.model)
    prompts = _check(body, state)
    default_max = state.settings.default_max_tokens
    kwargs = call_kwargs(body, state, default_max=default_max, model=served.llm)
    log: RequestLog = request.scope["lmstream.log"]
    log.model = served.name
    completion = _Completion(served, prompts, kwargs)
    completion.validate()
    if not body.stream:
        return await _answer(completion, request, log)
    return stream_answer(state, served, body, log, completion.frames)


@router.get("/v1/models", tags=["openai"])
async def models(request: Request) -> dict[str, Any]:
    """The served models, under every name they answer to."""
    state: ServerState = request.app.state.lmstream
    data = [
        {"id": name, "object": "model", "created": state.created, "owned_by": "lmstream"}
        for name in state.names
    ]
    return {"object": "list", "data": data}
