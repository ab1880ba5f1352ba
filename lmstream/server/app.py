"""The ASGI app behind ``lmstream serve``.

FastAPI, for the OpenAPI document it derives from the request models and for request
validation; every error, including validation, auth, size limits and unknown routes, is
answered in OpenAI's error shape and never as a 500 for bad input. Auth, body-size and
request logging are plain ASGI middleware, so streams pass through them untouched.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lmstream.llm import BaseLLM
from lmstream.server import chat_routes, openai_routes, runnable_routes
from lmstream.server.errors import HTTPError, error_body
from lmstream.server.hosts import HostPolicy
from lmstream.server.metrics import install as install_metrics
from lmstream.server.state import RequestLog, ServerSettings, ServerState
from lmstream.server.telemetry import ServerTelemetry, fastapi_options, route_paths

__all__ = ["create_app"]

logger = logging.getLogger("lmstream.server")
Scope = dict[str, Any]


async def _send_json(
    send: Any, status: int, body: dict[str, Any], headers: Mapping[str, str] = {}
) -> None:
    import json

    raw = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    head += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": raw})


class _TooLarge(BaseException):
    """Raised from ``receive``; not an Exception, so body parsing can't turn it into a 400."""


class _TooSlow(BaseException):
    """Raised from ``receive`` when a request body stops arriving."""


class Guard:
    """ASGI middleware: one log line per request, allowed hosts and origins, API keys,
    and the body's size and pace."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state
        self.keys = [k.encode() for k in state.settings.api_keys]
        self.hosts = HostPolicy(state.settings.allowed_hosts, keyed=bool(self.keys))

    def _authorized(self, scope: Scope) -> bool:
        if not self.keys:
            return True
        header = dict(scope.get("headers") or []).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        # compare with every key in constant time, whatever matches
        return any([hmac.compare_digest(token, key) for key in self.keys])  # noqa: C419

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        log = RequestLog(scope["method"], scope["path"])
        scope["lmstream.log"] = log

        async def logged_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                log.status = message["status"]
            await send(message)

        try:
            await self._guarded(scope, receive, logged_send, log)
        finally:
            log.write()

    async def _guarded(self, scope: Scope, receive: Any, send: Any, log: RequestLog) -> None:
        if await self._misdirected(scope, send, log):
            return
        scope["lmstream.authorized"] = self._authorized(scope)
        if not scope["lmstream.authorized"] and scope["path"] != "/health":
            log.outcome = "unauthorized"
            body = error_body(
                "Invalid or missing API key.", "invalid_request_error", code="invalid_api_key"
            )
            await _send_json(send, 401, body, {"WWW-Authenticate": "Bearer"})
            return
        limit = self.state.settings.max_body_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(send, log, limit)
            return
        seen, idle, body_done = 0, self.state.settings.idle_timeout, False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen, body_done
            if body_done:  # after the body, only a disconnect can come: no time limit
                return dict(await receive())
            try:
                message: dict[str, Any] = await asyncio.wait_for(receive(), idle)
            except TimeoutError:
                raise _TooSlow from None
            seen += len(message.get("body", b""))
            body_done = not message.get("more_body", False)
            if seen > limit:
                raise _TooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._too_large(send, log, limit)
        except _TooSlow:
            log.outcome = "rejected"
            message = f"The request body stopped arriving for {idle:g} s."
            await _send_json(
                send, 408, error_body(message, "invalid_request_error", code="timeout")
            )

    async def _misdirected(self, scope: Scope, send: Any, log: RequestLog) -> bool:
        """Answer a request for a host or from an origin that is not allowed."""
        headers = dict(scope.get("headers") or [])
        if not self.hosts.allows_host(headers.get(b"host")):
            status, code = 400, "host_not_allowed"
            message = "This host name is not allowed here (see --allowed-hosts)."
        elif not self.hosts.allows_origin(headers.get(b"origin")):
            status, code = 403, "origin_not_allowed"
            message = "Requests from this origin are not allowed (see --allowed-hosts)."
        else:
            return False
        log.outcome = "rejected"
        await _send_json(send, status, error_body(message, "invalid_request_error", code=code))
        return True

    async def _too_large(self, send: Any, log: RequestLog, limit: int) -> None:
        log.outcome = "rejected"
        message = f"The request body is larger than {limit} bytes."
        body = error_body(message, "invalid_request_error", code="request_too_large")
        await _send_json(send, 413, body)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "Invalid request.", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    param = ".".join(loc) or None
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON.", None
    return f"{param or 'body'}: {first.get('msg', 'invalid value')}", param


def _install_handlers(app: FastAPI, state: ServerState) -> None:
    @app.exception_handler(HTTPError)
    async def http_error(request: Request, exc: HTTPError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        if "json" not in request.headers.get("content-type", ""):
            message = "Send a JSON body with Content-Type: application/json."
        return JSONResponse(
            error_body(message, "invalid_request_error", param=param), status_code=400
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_exc(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error on %s", request.url.path)
        request.scope["lmstream.log"].outcome = "failed"
        from lmstream.server.errors import from_exception

        answer = from_exception(exc)
        return JSONResponse(answer.body, status_code=answer.status)


def create_app(
    models: Mapping[str, BaseLLM],
    settings: ServerSettings | None = None,
    aliases: Mapping[str, str] | None = None,
) -> Any:
    """The ASGI app serving ``models`` (name -> LLM); ``aliases`` maps extra names."""
    if not models:
        raise ValueError("serve at least one model")
    state = ServerState(dict(models), settings or ServerSettings(), dict(aliases or {}))
    app = FastAPI(
        title="lmstream",
        summary="Streaming completions from lmstream models.",
        redirect_slashes=False,  # a redirect would point at the request's own Host
        **fastapi_options(),
    )
    app.state.lmstream = state
    app.include_router(openai_routes.router)
    app.include_router(chat_routes.router)
    app.include_router(runnable_routes.router)

    @app.get("/health", tags=["operations"])
    async def health(request: Request) -> JSONResponse:
        """Liveness (no key needed), and the served models when the key is given."""
        status = "draining" if state.draining.is_set() else "ok"
        body: dict[str, Any] = {"status": status}
        if request.scope.get("lmstream.authorized", True):
            body["models"] = list(state.models)
        return JSONResponse(body, status_code=503 if state.draining.is_set() else 200)

    _install_handlers(app, state)
    metrics = install_metrics(app, state)
    return ServerTelemetry(Guard(app, state), metrics, route_paths(app))
