"""The base of HTTP text providers: ``HTTPLLM``, the shared HTTP I/O (``_http_model``)
under the text models' hooks.

A provider declares its settings (``lmstream.setting``) and says what to send and how to
read the answer: ``_request`` gives one call's URL and JSON body, ``_wire(limits)`` an
object fed the streamed body's bytes (returning chunks, with ``done`` and ``end()``),
``_parse(raw)`` reads a whole answer. Time limits per phase, retries before the first
chunk, size limits, the key and the pooled clients are described in ``_http_model``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

from lmstream.chunks import Generation, GenerationChunk
from lmstream.llm import LLM
from lmstream.providers._http import SizeLimits
from lmstream.providers._http_model import HTTPModel

__all__ = ["HTTPLLM", "Wire"]


class Wire(Protocol):
    """Reads one streamed answer: ``feed`` bytes, get chunks; ``end`` gives the last one."""

    done: bool

    def feed(self, data: bytes) -> list[GenerationChunk]: ...

    def end(self) -> GenerationChunk: ...


class HTTPLLM(HTTPModel, LLM):
    """Base of the providers that talk HTTP: subclass it, declare settings, implement
    ``_request``, ``_wire`` and ``_parse``. Time limits (seconds, ``None``: none) and retries
    are settings of every HTTP provider, and may be given per call."""

    def _request(
        self, prompt: str, stop: list[str] | None, settings: dict[str, Any], stream: bool
    ) -> tuple[str, dict[str, Any]]:
        """The URL and JSON body of one call; ``settings`` are the call's settings (the
        instance's, with the call's own arguments applied)."""
        raise NotImplementedError

    def _wire(self, limits: SizeLimits) -> Wire:
        """A reader for one streamed answer, holding no more than ``limits`` allow."""
        raise NotImplementedError

    def _parse(self, raw: bytes) -> Generation:
        """A whole (non-streamed) answer."""
        raise NotImplementedError

    def _keep_last(self, chunk: GenerationChunk) -> bool:
        return bool(chunk.text or chunk.generation_info)

    def _stream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[GenerationChunk]:
        return self._http_stream(prompt, stop, kwargs)

    def _call(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> Generation:
        result: Generation = self._http_call(prompt, stop, kwargs)
        return result

    def _astream(
        self, prompt: str, stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[GenerationChunk]:
        return self._http_astream(prompt, stop, kwargs)

    async def _acall(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> Generation:
        result: Generation = await self._http_acall(prompt, stop, kwargs)
        return result
