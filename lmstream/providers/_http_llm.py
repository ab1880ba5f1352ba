"""The I/O of HTTP providers, shared: one request per call with time limits per phase,
retries before the first chunk, and the response closed the moment the consumer stops.

A provider says what to send (``_plan``: a ``Call``) and how to read the answer
(``_wire(limits)``: an object fed the streamed body's bytes, returning chunks, with ``done``
and ``end()``; ``_parse(raw)``: a whole JSON answer). What a server can make the client
hold is bounded by ``max_event_bytes`` and ``max_body_bytes`` (see ``SizeLimits``).

Sync runs on ``httpx.Client`` and async on ``httpx.AsyncClient``, natively; one pooled
client per instance (per event loop for async), made on first use and released by
``close()``/``aclose()`` or a ``with`` block.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from lmstream.chunks import Generation, GenerationChunk
from lmstream.errors import APIError
from lmstream.llm import LLM
from lmstream.providers._clients import Clients
from lmstream.providers._http import MAX_BODY_BYTES, MAX_EVENT_BYTES, Call, SizeLimits
from lmstream.providers._openai_errors import failure, usable
from lmstream.providers._reads import afinish, aread, aread_all, finish, read, read_all

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["HTTPLLM", "Wire"]

_ERROR_BODY = 2**20  # bytes of an error answer read; the rest is dropped


class Wire(Protocol):
    """Reads one streamed answer: ``feed`` bytes, get chunks; ``end`` gives the last one."""

    done: bool

    def feed(self, data: bytes) -> list[GenerationChunk]: ...

    def end(self) -> GenerationChunk: ...


class HTTPLLM(LLM):
    """Base of the providers that talk HTTP."""

    _clients: Clients
    max_event_bytes: int | None = MAX_EVENT_BYTES
    """The longest line, and the most data of one event, a streamed answer may send."""
    max_body_bytes: int | None = MAX_BODY_BYTES
    """The most bytes an answer may have once decompressed, a streamed one included."""

    def _plan(self, prompt: str, stop: list[str] | None, kw: dict[str, Any], stream: bool) -> Call:
        raise NotImplementedError

    def _wire(self, limits: SizeLimits) -> Wire:
        raise NotImplementedError

    def _limits(self) -> SizeLimits:
        """The size limits, read at each call (a typed error when they are not valid)."""
        return SizeLimits(self.max_event_bytes, self.max_body_bytes)

    def _parse(self, raw: bytes) -> Generation:
        raise NotImplementedError

    def _connect(self, api_key: str | None, key_variable: str) -> None:
        """Headers (the key from ``api_key`` or the environment) and the pooled clients."""
        from lmstream import __version__

        key = api_key if api_key is not None else os.environ.get(key_variable)
        self._headers = {"User-Agent": f"lmstream/{__version__}"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        self._clients = Clients()
        self._limits()

    def _failure(
        self, status: int, headers: httpx.Headers, raw: bytes
    ) -> tuple[APIError, float | None]:
        """The typed error for an error answer, and the Retry-After it gave."""
        return failure(status, headers, raw)

    # -- clients -------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync client's connections (a later call opens new ones)."""
        self._clients.close()

    async def aclose(self) -> None:
        """Close the connections of the async client of the running event loop."""
        await self._clients.aclose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- sync ----------------------------------------------------------------------------

    def _send(self, call: Call) -> httpx.Response:
        client = self._clients.sync()
        try:
            response = client.send(call.request(client), stream=True)
            if usable(response.status_code, response.headers, call.stream):
                return response
            try:
                raw = read_all(response, call, None, _ERROR_BODY, cut=True)
            finally:
                response.close()
        except httpx.HTTPError as exc:
            raise call.error(exc) from exc
        raise call.failed(*self._failure(response.status_code, response.headers, raw))

    def _stream_once(self, call: Call) -> Iterator[GenerationChunk]:
        state = self._wire(self._limits())
        response = self._send(call)
        guard, chunks = call.watch(response), response.iter_bytes()
        try:
            while not state.done and (data := read(chunks, call, guard)) is not None:
                for chunk in state.feed(data):
                    yield chunk
                    call.handed_on()
            last = state.end()
            if last.text or last.generation_info:
                yield last
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
        limit = self._limits().body
        response = self._send(call)
        guard = call.watch(response)
        try:
            raw = read_all(response, call, guard, limit)
        except httpx.HTTPError as exc:
            raise call.error(exc, guard) from exc
        finally:
            finish(guard, response)
        return self._parse(raw)

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
            if usable(response.status_code, response.headers, call.stream):
                return response
            try:
                raw = await aread_all(response, call, None, _ERROR_BODY, cut=True)
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise call.error(exc) from exc
        raise call.failed(*self._failure(response.status_code, response.headers, raw))

    async def _astream_once(self, call: Call) -> AsyncGenerator[GenerationChunk, None]:
        state = self._wire(self._limits())
        response = await self._asend(call)
        guard, chunks = call.watch(response), response.aiter_bytes()
        try:
            while not state.done and (data := await aread(chunks, call, guard)) is not None:
                for chunk in state.feed(data):
                    yield chunk
                    call.handed_on()
            last = state.end()
            if last.text or last.generation_info:
                yield last
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
        limit = self._limits().body
        response = await self._asend(call)
        guard = call.watch(response)
        try:
            raw = await aread_all(response, call, guard, limit)
        except httpx.HTTPError as exc:
            raise call.error(exc, guard) from exc
        finally:
            await afinish(guard, response)
        return self._parse(raw)

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
