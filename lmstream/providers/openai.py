"""OpenAI: any OpenAI-compatible ``/v1/completions`` server, streamed token by token.

OpenAI itself, vLLM, SGLang, llama.cpp's server, Ollama, LM Studio, ``lmstream serve``:
the sync path runs on ``httpx.Client``, the async path on ``httpx.AsyncClient`` (native,
no threads). One pooled client per instance (per event loop for async), made on first
use; ``close()``/``aclose()`` or a ``with`` block release it.

Time limits per phase (connect, first token, idle gap, total) and retries before the
first chunk are described in ``_http``; the protocol itself (SSE, ``[DONE]``, in-band
errors, usage) in ``_openai_wire``. When the consumer stops, the response is closed at
once, so the server sees the disconnect and can stop generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import Any

from lmstream._llmcore import check_stop
from lmstream.chunks import Generation, GenerationChunk

try:
    import httpx
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("the OpenAI provider needs httpx: pip install 'lmstream[openai]'") from exc

from lmstream import __version__
from lmstream.errors import APIError
from lmstream.llm import LLM
from lmstream.providers._clients import Clients, afinish, aread, finish, read
from lmstream.providers._http import Call
from lmstream.providers._openai_errors import APIContextLengthError, failure, usable
from lmstream.providers._openai_params import build_call, check, check_base_url, merged
from lmstream.providers._openai_wire import CompletionStream, parse_completion

__all__ = ["APIContextLengthError", "OpenAI"]

_SETTINGS = (
    "model", "temperature", "max_tokens", "top_p", "seed", "n", "logprobs", "extra_body",
    "stream_usage", "timeout", "connect_timeout", "first_token_timeout", "idle_timeout",
    "max_retries", "retry_backoff",
)  # fmt: skip


class OpenAI(LLM):
    """An LLM served by any OpenAI-compatible ``/v1/completions`` endpoint."""

    model: str = "gpt-3.5-turbo-instruct"
    base_url: str = ""
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    seed: int | None = None
    n: int = 1
    logprobs: int | None = None
    extra_body: dict[str, Any] | None = None
    stream_usage: bool = True
    timeout: float | None = None
    connect_timeout: float | None = 5.0
    first_token_timeout: float | None = 600.0
    idle_timeout: float | None = 60.0
    max_retries: int = 2
    retry_backoff: float = 0.5

    def __init__(
        self,
        model: str = "gpt-3.5-turbo-instruct",
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        top_p: float | None = None,
        stop: str | list[str] | None = None,
        seed: int | None = None,
        n: int = 1,
        logprobs: int | None = None,
        extra_body: dict[str, Any] | None = None,
        stream_usage: bool = True,
        timeout: float | None = None,
        connect_timeout: float | None = 5.0,
        first_token_timeout: float | None = 600.0,
        idle_timeout: float | None = 60.0,
        max_retries: int = 2,
        retry_backoff: float = 0.5,
        **kwargs: Any,
    ) -> None:
        given = locals()
        settings = {name: given[name] for name in _SETTINGS}
        for name, value in settings.items():
            check(name, value)
        url = check_base_url(
            base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        )
        stops = check_stop(stop)
        super().__init__(**kwargs, **settings, base_url=url, stop=stops)
        key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._headers = {"User-Agent": f"lmstream/{__version__}"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._clients = Clients()

    @property
    def _llm_type(self) -> str:
        return "openai"

    def _plan(self, prompt: str, stop: list[str] | None, kw: dict[str, Any], stream: bool) -> Call:
        # read at each call: settings assigned after construction apply, as in LangChain
        settings = {name: getattr(self, name) for name in _SETTINGS}
        settings = merged(settings, kw) if kw else settings
        url = f"{self.base_url}/completions"
        return build_call(url, self._headers, settings, prompt, stop, stream)

    # -- clients -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync client's connections (a later call opens new ones)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Close the connections of the async client of the running event loop."""
        await self._clients.aclose()

    def __enter__(self) -> OpenAI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> OpenAI:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- sync ----------------------------------------------------------------------------

    def _send(self, call: Call) -> httpx.Response:
        client = self._clients.sync()
        try:
            response = client.send(call.request(client), stream=True)
            if usable(response.status_code, response.headers, call.json["stream"]):
                return response
            try:
                raw = response.read()
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise call.error(exc) from exc
        raise call.failed(*failure(response.status_code, response.headers, raw))

    def _stream_once(self, call: Call) -> Iterator[GenerationChunk]:
        response = self._send(call)
        guard, chunks, state = call.watch(response), response.iter_bytes(), CompletionStream()
        try:
            while not state.done and (data := read(chunks, call, guard)) is not None:
                for chunk in state.feed(data):
                    yield chunk
                    call.handed_on()
            yield state.end()
        except httpx.HTTPError as exc:
            raise call.error(exc, guard) from exc
        finally:
            finish(guard, response, chunks)

    def _stream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        call = self._plan(prompt, stop, kwargs, True)
        while True:
            try:
                yield from self._stream_once(call)
                return
            except APIError as error:
                delay = call.retry_delay(error)
                if delay is None:
                    raise
            time.sleep(delay)

    def _fetch(self, call: Call) -> Generation:
        response = self._send(call)
        guard = call.watch(response)
        try:
            if guard is not None:
                guard.arm(*call.deadline())
            raw = response.read()
        except httpx.HTTPError as exc:
            raise call.error(exc, guard) from exc
        finally:
            finish(guard, response)
        return parse_completion(raw)

    def _call(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> Generation:
        call = self._plan(prompt, stop, kwargs, False)
        while True:
            try:
                return self._fetch(call)
            except APIError as error:
                delay = call.retry_delay(error)
                if delay is None:
                    raise
            time.sleep(delay)

    # -- async ---------------------------------------------------------------------------

    async def _asend(self, call: Call) -> httpx.Response:
        client = await self._clients.current()
        try:
            response = await client.send(call.request(client), stream=True)
            if usable(response.status_code, response.headers, call.json["stream"]):
                return response
            try:
                raw = await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise call.error(exc) from exc
        raise call.failed(*failure(response.status_code, response.headers, raw))

    async def _astream_once(self, call: Call) -> AsyncGenerator[GenerationChunk, None]:
        response = await self._asend(call)
        guard, chunks, state = call.watch(response), response.aiter_bytes(), CompletionStream()
        try:
            while not state.done and (data := await aread(chunks, call, guard)) is not None:
                for chunk in state.feed(data):
                    yield chunk
                    call.handed_on()
            yield state.end()
        except httpx.HTTPError as exc:
            raise call.error(exc, guard) from exc
        finally:
            await afinish(guard, response, chunks)

    async def _astream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[GenerationChunk]:
        call = self._plan(prompt, stop, kwargs, True)
        while True:
            try:
                async with contextlib.aclosing(self._astream_once(call)) as chunks:
                    async for chunk in chunks:
                        yield chunk
                return
            except APIError as error:
                delay = call.retry_delay(error)
                if delay is None:
                    raise
            await asyncio.sleep(delay)

    async def _afetch(self, call: Call) -> Generation:
        response = await self._asend(call)
        guard = call.watch(response)
        try:
            if guard is not None:
                guard.arm(*call.deadline())
            raw = await response.aread()
        except httpx.HTTPError as exc:
            raise call.error(exc, guard) from exc
        finally:
            await afinish(guard, response)
        return parse_completion(raw)

    async def _acall(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> Generation:
        call = self._plan(prompt, stop, kwargs, False)
        while True:
            try:
                return await self._afetch(call)
            except APIError as error:
                delay = call.retry_delay(error)
                if delay is None:
                    raise
            await asyncio.sleep(delay)
