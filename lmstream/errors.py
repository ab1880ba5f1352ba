"""The one error hierarchy of lmstream.

::

    LMStreamError
    ├── InvalidInputError            (also ValueError and TypeError) bad prompt, config, params
    │   └── ContextLengthError       the prompt does not fit the model's context
    │       └── APIContextLengthError    ... as a server said it (also a BadRequestError)
    ├── StreamingUnsupportedError    strict streaming: a step would buffer the stream
    ├── ModelLoadError               a model file is missing, unreadable or corrupt
    ├── CallbackError                no parent run to dispatch a custom event to
    ├── OutputParserError            (also ValueError) output is not the JSON/object asked for
    └── GenerationError              a run failed; carries the partial text and usage
        ├── ProviderError            the backend failed (wraps foreign exceptions)
        ├── APIError                 an HTTP backend failed
        │   ├── APIStatusError       the server answered an error status
        │   │   ├── BadRequestError          400 (and 422)
        │   │   ├── AuthenticationError      401
        │   │   ├── PermissionDeniedError    403
        │   │   ├── NotFoundError            404
        │   │   ├── RateLimitError           429, with retry_after
        │   │   └── ServerError              5xx
        │   ├── APIConnectionError   the server could not be reached or dropped the connection
        │   ├── APITimeoutError      a time limit passed (connect, first_token, idle, total)
        │   └── ProtocolError        the server broke the protocol (malformed or cut stream)
        └── ... provider-specific subclasses

Every ``GenerationError`` carries what the run produced before it failed
(``partial_text``, ``usage``), so a failed stream loses nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lmstream.chunks import Usage

__all__ = [
    "APIConnectionError",
    "APIContextLengthError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CallbackError",
    "ContextLengthError",
    "GenerationError",
    "InvalidInputError",
    "LMStreamError",
    "ModelLoadError",
    "NotFoundError",
    "OutputParserError",
    "PermissionDeniedError",
    "ProtocolError",
    "ProviderError",
    "RateLimitError",
    "ServerError",
    "StreamingUnsupportedError",
    "status_error",
]


class LMStreamError(Exception):
    """Base class of every error lmstream raises."""


class InvalidInputError(LMStreamError, ValueError, TypeError):
    """Bad input to a public entry point: wrong type, out-of-range value, unknown name."""


class ContextLengthError(InvalidInputError):
    """The prompt (plus the requested completion) does not fit the model's context."""

    def __init__(self, message: str, *, prompt_tokens: int | None = None, n_ctx: int | None = None):
        super().__init__(message)
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx


class StreamingUnsupportedError(LMStreamError):
    """Strict streaming was asked for and a step would buffer the stream."""


class ModelLoadError(LMStreamError):
    """A model could not be loaded; ``path`` names what was tried."""

    def __init__(self, message: str, *, path: str | None = None):
        super().__init__(message)
        self.path = path


class CallbackError(LMStreamError):
    """A callback could not be dispatched (for example, a custom event outside any run)."""


class OutputParserError(LMStreamError, ValueError):
    """A model's output is not what a parser asked for: not JSON, cut short, or not valid
    against the schema. ``llm_output`` is the raw text; ``errors`` the validation errors."""

    def __init__(
        self, message: str, *, llm_output: str = "", errors: list[Any] | None = None
    ) -> None:
        super().__init__(message)
        self.llm_output = llm_output
        self.errors = errors or []


class GenerationError(LMStreamError):
    """A run failed. ``partial_text`` and ``usage`` hold what it produced before failing."""

    def __init__(
        self,
        message: str = "",
        *,
        partial_text: str = "",
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message)
        self.partial_text = partial_text
        self.usage = usage


class ProviderError(GenerationError):
    """The backend failed; a foreign exception is wrapped here with ``__cause__`` set."""


class APIError(GenerationError):
    """An HTTP backend failed. ``body`` is the decoded error body where there is one."""

    def __init__(
        self,
        message: str = "",
        *,
        body: Any = None,
        partial_text: str = "",
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message, partial_text=partial_text, usage=usage)
        self.body = body


class APIStatusError(APIError):
    """The server answered with an error status code."""

    def __init__(
        self,
        message: str = "",
        *,
        status_code: int,
        body: Any = None,
        partial_text: str = "",
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message, body=body, partial_text=partial_text, usage=usage)
        self.status_code = status_code


class BadRequestError(APIStatusError):
    """400 or 422: the server rejected the request."""


class AuthenticationError(APIStatusError):
    """401: missing or wrong API key."""


class PermissionDeniedError(APIStatusError):
    """403: the key may not do this."""


class NotFoundError(APIStatusError):
    """404: unknown model or endpoint."""


class RateLimitError(APIStatusError):
    """429: too many requests. ``retry_after`` is in seconds when the server said."""

    def __init__(
        self,
        message: str = "",
        *,
        status_code: int = 429,
        body: Any = None,
        retry_after: float | None = None,
        partial_text: str = "",
        usage: Usage | None = None,
    ) -> None:
        super().__init__(
            message, status_code=status_code, body=body, partial_text=partial_text, usage=usage
        )
        self.retry_after = retry_after


class ServerError(APIStatusError):
    """5xx: the server failed."""


class APIConnectionError(APIError):
    """The server could not be reached, or the connection broke."""


class APITimeoutError(APIError):
    """A time limit passed. ``phase`` is "connect", "first_token", "idle" or "total"."""

    def __init__(
        self,
        message: str = "",
        *,
        phase: str,
        partial_text: str = "",
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message, partial_text=partial_text, usage=usage)
        self.phase = phase


class ProtocolError(APIError):
    """The server broke the protocol: a malformed stream, or one cut before its end."""


class APIContextLengthError(ContextLengthError, BadRequestError):
    """The server said the prompt does not fit the model's context (a 400).

    Both a ``ContextLengthError`` (what a local model raises for the same input) and a
    ``BadRequestError`` carrying ``status_code`` and ``body``.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 400,
        body: Any = None,
        prompt_tokens: int | None = None,
        n_ctx: int | None = None,
    ) -> None:
        BadRequestError.__init__(self, message, status_code=status_code, body=body)
        self.prompt_tokens = prompt_tokens
        self.n_ctx = n_ctx


_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: BadRequestError,
    429: RateLimitError,
}


def status_error(
    status_code: int, message: str, *, body: Any = None, retry_after: float | None = None
) -> APIStatusError:
    """The typed error for an HTTP error status."""
    if status_code == 429:
        return RateLimitError(message, body=body, retry_after=retry_after)
    cls = _STATUS.get(status_code)
    if cls is None:
        cls = ServerError if status_code >= 500 else APIStatusError
    return cls(message, status_code=status_code, body=body)
