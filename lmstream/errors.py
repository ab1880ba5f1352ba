"""The one error hierarchy of lmstream.

::

    LMStreamError
    ├── InvalidInputError            (also ValueError and TypeError) bad prompt, config, params
    │   ├── ContextLengthError       the prompt does not fit the model's context
    │   │   └── APIContextLengthError    ... as a server said it (also a BadRequestError)
    │   ├── MissingVariablesError    (also KeyError) a template was not given all its variables
    │   └── UnsupportedMethodError   (also NotImplementedError) the model can't do it that way
    ├── StreamingUnsupportedError    strict streaming: a step would buffer the stream
    ├── ModelLoadError               a model file is missing, unreadable or corrupt
    ├── CallbackError                (also RuntimeError) no parent run for a custom event
    ├── OutputParserError            (also ValueError) output is not the JSON/object asked for
    └── GenerationError              a run failed; carries the partial text and usage
        ├── ProviderError            the backend failed (a foreign error keeps its type)
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

A provider's own exception keeps its type: ``as_provider_error`` makes it an instance of
a subclass of both its class and ``ProviderError`` (see that function), so
``except MyError``, ``except ProviderError`` and ``partial_text`` all work on it.
"""

from __future__ import annotations

import weakref
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
    "MissingVariablesError",
    "ModelLoadError",
    "NotFoundError",
    "OutputParserError",
    "PermissionDeniedError",
    "ProtocolError",
    "ProviderError",
    "RateLimitError",
    "ServerError",
    "StreamingUnsupportedError",
    "UnsupportedMethodError",
    "as_provider_error",
    "status_error",
    "with_partial",
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


class MissingVariablesError(InvalidInputError, KeyError):
    """A prompt template was formatted without some of its variables.

    Also a ``KeyError``, which is what the reference raises there."""

    def __str__(self) -> str:  # a KeyError's str() would quote the message
        return str(self.args[0]) if self.args else ""


class UnsupportedMethodError(InvalidInputError, NotImplementedError):
    """A model cannot do what was asked the way it was asked (``with_structured_output``'s
    ``method``): ``method`` is what was asked, ``instead`` the method it can do (or None).

    Also a ``NotImplementedError``, which is what the reference raises there."""

    def __init__(self, message: str, *, method: str, instead: str | None = None) -> None:
        super().__init__(message)
        self.method = method
        self.instead = instead


class StreamingUnsupportedError(LMStreamError):
    """Strict streaming was asked for and a step would buffer the stream."""


class ModelLoadError(LMStreamError):
    """A model could not be loaded; ``path`` names what was tried."""

    def __init__(self, message: str, *, path: str | None = None):
        super().__init__(message)
        self.path = path


class CallbackError(LMStreamError, RuntimeError):
    """A callback could not be dispatched (for example, a custom event outside any run).

    Also a ``RuntimeError``, which is what the reference raises there."""


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
    """A run failed. ``partial_text`` and ``usage`` hold what it produced before failing
    (a chat model's error also holds the partial ``AIMessageChunk`` in ``partial_message``)."""

    partial_message: Any = None

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
    """An HTTP backend failed. ``body`` is the decoded error body where there is one;
    ``backend`` the URL of the server that failed, when a ``Router`` chose it."""

    backend: str | None = None

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


# Each foreign exception class's subclass that is also a ProviderError (None: the class
# cannot be subclassed). Weak keys: a class created at run time may go away.
_AS_PROVIDER: weakref.WeakKeyDictionary[type, type | None] = weakref.WeakKeyDictionary()
_KEPT: weakref.WeakSet[type] = weakref.WeakSet()  # the classes made here


def with_partial(exc: BaseException, partial_text: str, usage: Usage | None) -> BaseException:
    """The error to raise for a failed generation, carrying what it produced.

    lmstream's own generation errors get the partial text and usage filled in where
    they have none; its other errors (bad input) and non-``Exception``s pass unchanged;
    anything else is a provider's own error, which keeps its type
    (``as_provider_error``).
    """
    if isinstance(exc, GenerationError) and type(exc) not in _KEPT:
        if not exc.partial_text:
            exc.partial_text = partial_text
        if exc.usage is None:
            exc.usage = usage
        return exc
    if (isinstance(exc, LMStreamError) and type(exc) not in _KEPT) or not isinstance(
        exc, Exception
    ):
        return exc
    return as_provider_error(exc, partial_text, usage)


def _rebuild(base: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """Unpickle an error made by ``as_provider_error``."""
    cls = _provider_type(base) or base
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


def _reduce(self: BaseException) -> tuple[Any, ...]:
    return _rebuild, (type(self).__bases__[0], self.args, dict(self.__dict__))


def _provider_type(base: type[BaseException]) -> type | None:
    try:
        return _AS_PROVIDER[base]
    except KeyError:
        pass
    namespace = {
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
        "__doc__": base.__doc__,
        "__reduce__": _reduce,
    }
    try:
        made = type(base.__name__, (base, ProviderError), namespace)
    except TypeError:  # a class that cannot be subclassed, or not together with ours
        _AS_PROVIDER[base] = None
        return None
    _KEPT.add(made)
    _AS_PROVIDER[base] = made
    return made


def as_provider_error(exc: Exception, partial_text: str, usage: Usage | None) -> Exception:
    """``exc``, a provider's own exception, made also a ``ProviderError`` carrying the
    partial text and usage, without changing the type users filter on.

    ``except`` matches by the real class (``PyType_IsSubtype``), so no ``isinstance`` hook
    can make a foreign error match ``ProviderError``. Instead the error's class becomes a
    subclass of both its own class and ``ProviderError``, made once per class, with the
    same name and module: ``except MyError``, ``except ProviderError``,
    ``exceptions_to_handle=(MyError,)`` and ``retry_if_exception_type=(MyError,)`` all
    match, and ``str``/``repr`` and the traceback read as before. The same object is
    raised when its class can be swapped (any exception class defined in Python); an
    instance of a built-in class (``ValueError("...")``) is copied into the new class,
    its args, attributes, cause, context and traceback kept. A class that cannot be
    subclassed falls back to a plain ``ProviderError`` whose ``__cause__`` is ``exc``.
    """
    if type(exc) in _KEPT:  # raised again (the same object): what it carries is new
        error: Exception = exc
    elif (cls := _provider_type(type(exc))) is None:
        error = ProviderError(
            f"{type(exc).__name__}: {exc}", partial_text=partial_text, usage=usage
        )
        error.__cause__ = exc
        return error
    else:
        error = _retyped(exc, cls)
    error.partial_text = partial_text  # type: ignore[attr-defined]
    error.usage = usage  # type: ignore[attr-defined]
    return error


def _retyped(exc: Exception, cls: type) -> Exception:
    try:
        exc.__class__ = cls
        return exc
    except TypeError:  # a built-in exception's class cannot be swapped: copy it
        error: Exception = cls.__new__(cls, *exc.args)
        error.args = exc.args
        error.__dict__.update(getattr(exc, "__dict__", {}))
        error.__cause__, error.__context__ = exc.__cause__, exc.__context__
        error.__suppress_context__ = exc.__suppress_context__
        return error.with_traceback(exc.__traceback__)
