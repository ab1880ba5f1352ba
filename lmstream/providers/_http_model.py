"""The I/O shared by HTTP providers, text and chat alike: one request per call with time
limits per phase, retries before the first chunk, and the response closed the moment the
consumer stops. ``HTTPLLM`` (text) and the chat providers put their model base's hooks
over ``_http_stream``/``_http_call`` and their async twins; ``_http_llm`` says what a
provider writes. The key goes in the header the class names (``auth_header``, with
``auth_prefix``), from ``api_key`` or the environment variable ``key_variable``. Sync runs
on ``httpx.Client`` and async on ``httpx.AsyncClient``, natively; one pooled client per
instance (per event loop for async), made on first use and released by
``close()``/``aclose()`` or a ``with`` block.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncGenerator, Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, Self

import httpx

from lmstream._otel import trace_headers
from lmstream.errors import APIError, InvalidInputError
from lmstream.llm import BaseLLM
from lmstream.providers._clients import Clients
from lmstream.providers._http import Call, RetryPolicy, SizeLimits, TimeLimits
from lmstream.providers._http_errors import failure, usable
from lmstream.providers._reads import afinish, anext_piece, aread_all, finish, next_piece, read_all
from lmstream.settings import STOP, for_call, number, positional, setting

__all__ = ["HTTPModel", "Reader"]

_LIMITS, _POLICY, _SIZES = TimeLimits(), RetryPolicy(), SizeLimits()  # defaults, stated once
_SECONDS, _BYTES = number(above=0), number(1, integer=True)
_ERROR_BODY = 2**20  # bytes of an error answer read; the rest is dropped


class Reader(Protocol):
    """Reads one streamed answer: ``feed`` bytes, get chunks; ``end`` gives the last one
    (``None``: nothing more to say)."""

    done: bool

    def feed(self, data: bytes) -> list[Any]: ...

    def end(self) -> Any: ...


if TYPE_CHECKING:  # a mixin to the type checker; a model (for its settings) when run
    _Base = object
else:
    _Base = BaseLLM


class HTTPModel(_Base):
    """The HTTP I/O of a provider: declare settings, implement ``_request``, ``_wire`` and
    ``_parse``. Time limits (seconds, ``None``: none) and retries are settings of every
    HTTP provider, and may be given per call."""

    auth_header: ClassVar[str] = "Authorization"
    """The header that carries the key."""
    auth_prefix: ClassVar[str] = "Bearer "
    """What comes before the key in that header."""
    key_variable: ClassVar[str | None] = None
    """The environment variable read for the key when ``api_key`` is not given."""
    default_headers: ClassVar[Mapping[str, str]] = {}
    """Headers sent with every request (a protocol version, for instance)."""
    positional: ClassVar[tuple[str, ...]] = ()
    """Settings that may also be given by position (``OpenAI("gpt-x")``)."""
    constructor_arguments: ClassVar[tuple[str, ...]] = (
        "api_key", "callbacks", "metadata", "name", "tags",
    )  # fmt: skip

    stop: list[str] | None = setting(None, STOP)
    timeout: float | None = setting(_LIMITS.total, _SECONDS, per_call=True, nullable=True)
    connect_timeout: float | None = setting(_LIMITS.connect, _SECONDS, per_call=True, nullable=True)
    first_token_timeout: float | None = setting(
        _LIMITS.first_token, _SECONDS, per_call=True, nullable=True
    )
    idle_timeout: float | None = setting(_LIMITS.idle, _SECONDS, per_call=True, nullable=True)
    max_retries: int = setting(_POLICY.max_retries, number(0, integer=True), per_call=True)
    retry_backoff: float = setting(_POLICY.backoff, number(0), per_call=True)
    max_event_bytes: int | None = setting(_SIZES.event, _BYTES, nullable=True)
    """The longest line, and the most data of one event, a streamed answer may send."""
    max_body_bytes: int | None = setting(_SIZES.body, _BYTES, nullable=True)
    """The most bytes an answer may have once decompressed, a streamed one included."""

    def __init__(self, *args: Any, api_key: str | None = None, **settings: Any) -> None:
        values = positional(type(self).__name__, self.positional, args, settings)
        super().__init__(**values)
        if api_key is not None and not isinstance(api_key, str):
            raise InvalidInputError(f"{type(self).__name__}: api_key must be a str")
        from lmstream import __version__

        key = api_key if api_key is not None else os.environ.get(self.key_variable or "")
        self._headers = {"User-Agent": f"lmstream/{__version__}", **self.default_headers}
        if key:
            self._headers[self.auth_header] = self.auth_prefix + key
        self._clients = Clients()

    def _request(
        self, prompt: Any, stop: list[str] | None, settings: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError  # the URL and JSON body of one call

    def _wire(self, limits: SizeLimits) -> Reader:
        raise NotImplementedError  # a reader for one streamed answer within ``limits``

    def _limits(self) -> SizeLimits:
        return SizeLimits(self.max_event_bytes, self.max_body_bytes)

    def _parse(self, raw: bytes) -> Any:
        raise NotImplementedError  # a whole (non-streamed) answer

    def _keep_last(self, chunk: Any) -> bool:
        """Whether the last chunk of a stream (``Reader.end()``) says anything."""
        return chunk is not None

    def _failure(
        self, status: int, headers: httpx.Headers, raw: bytes
    ) -> tuple[APIError, float | None]:
        """The typed error for an error answer, and the Retry-After it gave."""
        return failure(status, headers, raw)

    def _plan(self, prompt: Any, stop: list[str] | None, kw: dict[str, Any], stream: bool) -> Call:
        # read at each call: settings assigned after construction apply, as in LangChain
        s = for_call(self, BaseLLM, kw)
        url, body = self._request(prompt, stop, s, stream)
        limits = TimeLimits(
            s["connect_timeout"], s["first_token_timeout"], s["idle_timeout"], s["timeout"]
        )
        policy = RetryPolicy(s["max_retries"], s["retry_backoff"])
        accept = "text/event-stream" if stream else "application/json"
        headers = {**self._headers, "Accept": accept, **trace_headers()}
        return Call(url, body, headers, limits, policy, stream=stream)

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

    def _stream_once(self, call: Call) -> Iterator[Any]:
        state = self._wire(self._limits())
        response = self._send(call)
        guard, chunks = call.watch(response), response.iter_bytes()
        try:
            while (data := next_piece(state, chunks, call, guard)) is not None:
                for chunk in state.feed(data):
                    yield chunk
                    call.handed_on()
            last = state.end()
            if self._keep_last(last):
                yield last
        except httpx.HTTPError as exc:
            raise call.error(exc, guard) from exc
        finally:
            finish(guard, response, chunks)

    def _http_stream(
        self, prompt: Any, stop: list[str] | None, kwargs: Any
    ) -> Generator[Any, None, None]:
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

    def _fetch(self, call: Call) -> Any:
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

    def _http_call(self, prompt: Any, stop: list[str] | None, kwargs: Any) -> Any:
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

    async def _astream_once(self, call: Call) -> AsyncGenerator[Any, None]:
        state = self._wire(self._limits())
        response = await self._asend(call)
        guard, chunks = call.watch(response), response.aiter_bytes()
        try:
            while (data := await anext_piece(state, chunks, call, guard)) is not None:
                for chunk in state.feed(data):
                    yield chunk
                    call.handed_on()
            last = state.end()
            if self._keep_last(last):
                yield last
        except httpx.HTTPError as exc:
            raise call.error(exc, guard) from exc
        finally:
            await afinish(guard, response, chunks)

    async def _http_astream(
        self, prompt: Any, stop: list[str] | None, kwargs: Any
    ) -> AsyncGenerator[Any, None]:
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

    async def _afetch(self, call: Call) -> Any:
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

    async def _http_acall(self, prompt: Any, stop: list[str] | None, kwargs: Any) -> Any:
        call = self._plan(prompt, stop, kwargs, False)
        while True:
            try:
                return await self._afetch(call)
            except APIError as error:
                delay = call.retry_delay(error)
                if delay is None:
                    raise
            await asyncio.sleep(delay)
