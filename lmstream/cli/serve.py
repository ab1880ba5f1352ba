"""``lmstream serve``: serve models over HTTP (OpenAI-compatible and runnable endpoints).

Without API keys the server listens on loopback only unless told otherwise, and says so.
On SIGTERM or Ctrl-C it stops accepting connections, lets in-flight streams finish for
``--grace`` seconds, then ends the rest with an error frame.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import socket
import sys
from typing import Any

from lmstream import load_chat_model, load_llm
from lmstream.cli.common import (
    DEFAULT_MODEL,
    HelpFormatter,
    add_model_options,
    call_kwargs,
    guarded,
    provider_options,
)

__all__ = ["parser", "run_serve"]

DESCRIPTION = """Serve models over HTTP: OpenAI-compatible and runnable endpoints.

Without API keys the server listens on loopback only unless told otherwise, and says so.
On SIGTERM or Ctrl-C it stops accepting connections, lets in-flight streams finish for
--grace seconds, then ends the rest with an error frame."""

REQUEST_DEFAULTS = """--max-tokens, --temperature, --seed and --stop are the defaults for requests
that do not set them, on every endpoint (without either, /v1/completions
generates {} tokens, as OpenAI's does)"""

LIMITS = (  # option, the ServerSettings field holding its default, type, help
    ("--max-waiting", "max_waiting", int, "requests waiting for a busy model; past them, 429"),
    ("--max-concurrency", "max_concurrency", int, "generations at once per thread-safe model"),
    ("--max-tokens-cap", "max_tokens_cap", int, "the most max_tokens a request may ask for"),
    ("--max-body-bytes", "max_body_bytes", int, "the largest request body accepted, in bytes"),
    ("--max-batch", "max_batch", int, "inputs per /batch request"),
    ("--grace", "grace_seconds", float, "seconds requests in flight get on shutdown"),
    ("--max-connections", "max_connections", int, "open connections at most"),
    ("--header-timeout", "header_timeout", float, "seconds a client has to send a request head"),
    ("--idle-timeout", "idle_timeout", float,
     "seconds a connection may be silent between requests or inside a body"),
    ("--send-timeout", "send_timeout", float,
     "seconds a client may leave the answer unread before it is dropped"),
)  # fmt: skip


def parser() -> argparse.ArgumentParser:
    """The parser of ``lmstream serve`` (it needs the server extra)."""
    from lmstream.server import ServerSettings

    defaults = ServerSettings()
    parser = argparse.ArgumentParser(
        prog="lmstream serve", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=8000, metavar="N",
        help="port to listen on; 0 picks a free one (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--served-model-name", action="append", default=[], metavar="NAME",
        help="a name the model answers to; the first is reported (repeatable; default: its id)",
    )  # fmt: skip
    parser.add_argument(
        "--api-key", action="append", default=[], metavar="KEY",
        help="an accepted bearer key (repeatable); other users of the machine can read it in "
        "`ps`: prefer LMSTREAM_API_KEYS, comma-separated keys (default: none)",
    )  # fmt: skip
    for option, field, kind, text in LIMITS:
        default = getattr(defaults, field)
        parser.add_argument(
            option, type=kind, default=default, metavar="N", help=f"{text} (default: {default})"
        )
    _add_log_options(parser)
    _add_connection_options(parser)
    add_model_options(parser, request_defaults=REQUEST_DEFAULTS.format(defaults.default_max_tokens))
    _add_serving_options(parser)
    return parser


def _add_log_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"),
        help="what the server logs; info: one line per request (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--log-format", choices=("text", "json"), default="text",
        help="log lines as text, or as one JSON object each (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--metrics-public", action="store_true",
        help="answer GET /metrics without an API key (default: the key is needed)",
    )  # fmt: skip


def _add_serving_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--extra-model", action="append", default=[], metavar="ID",
        help="serve another model too, under its id (repeatable; default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--upstream", action="append", default=[], metavar="URL",
        help="serve, instead of a model, a router over these OpenAI-compatible servers, "
        "completions and chat completions each to their own; -m names their model (default: "
        "the first they list); --option sets the router's settings, e.g. policy=least "
        "(repeatable; default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--ray", action="store_true",
        help="run the server as a Ray Serve deployment, on the cluster RAY_ADDRESS names or a "
        "local one (needs lmstream[ray]; default: one process)",
    )  # fmt: skip
    parser.add_argument(
        "--replicas", type=int, default=1, metavar="N",
        help="with --ray, copies of the server; Ray places them (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--chat", action="store_true",
        help="load -m as a chat model (fake:TEXT, llamacpp; with --upstream, the router's "
        "chat side); it answers /v1/chat/completions with messages, tool calls and reasoning, "
        "and /v1/completions too (default: text model)",
    )  # fmt: skip


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allowed-hosts", default=None, metavar="NAMES",
        help="comma-separated host names to answer ('*' any, '*.example.com' a domain; "
        "default: loopback names only without keys, any with keys); "
        "browser requests must come from one of them too",
    )  # fmt: skip


def _router(args: argparse.Namespace) -> Any:
    import logging

    from lmstream.providers.router import Router, served_model

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per probe
    options = provider_options(args)
    model = args.model
    if model == DEFAULT_MODEL:  # not given: ask the upstreams what they serve
        model = served_model(args.upstream, options.get("api_key")) or "default"
    router = Router(args.upstream, model=model, **options)
    return router.chat_model() if args.chat else router  # chat is served either way


def _models(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    load = load_chat_model if args.chat else load_llm
    primary: Any = _router(args) if args.upstream else load(args.model, **provider_options(args))
    names = args.served_model_name or [primary.model if args.upstream else args.model]
    models = {names[0]: primary}
    for model_id in args.extra_model:
        models[model_id] = load_llm(model_id)
    return models, dict.fromkeys(names[1:], names[0])


class _Shutdown:
    """Turns uvicorn's exit signal into: drain now, end the streams after the grace."""

    def __init__(self, state: Any, grace: float) -> None:
        self.state, self.grace = state, grace
        self.loop: asyncio.AbstractEventLoop | None = None

    def begin(self) -> None:
        loop = self.loop
        if loop is None or self.state.draining.is_set():
            return
        loop.call_soon_threadsafe(self.state.draining.set)
        loop.call_soon_threadsafe(loop.call_later, self.grace, self.state.expired.set)


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything claims to serve: a taken port is one
    clear error, and ``--port 0`` gets a free port the banner can name. It listens at once:
    a client that connects as soon as the banner shows waits in the backlog until the
    server accepts, instead of being refused."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
    except OSError as exc:
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            reason = "the port is already in use (choose another with --port)"
        else:
            reason = exc.strerror or str(exc)
        raise OSError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


def _banner(args: argparse.Namespace, port: int, keys: list[str], names: list[str]) -> str:
    where = f"http://{args.host}:{port}"
    if keys:
        return f"lmstream: serving {', '.join(names)} on {where} ({len(keys)} API key(s) required)"
    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    note = (
        "no API key: loopback only"
        if loopback
        else "WARNING: no API key and not on loopback; "
        + ("answering " + args.allowed_hosts if args.allowed_hosts else "loopback host names only")
    )
    return f"lmstream: serving {', '.join(names)} on {where} ({note})"


def _settings(args: argparse.Namespace, keys: list[str]) -> Any:
    from lmstream.server import ServerSettings

    return ServerSettings(
        api_keys=keys,
        max_body_bytes=args.max_body_bytes,
        max_tokens_cap=args.max_tokens_cap,
        max_waiting=args.max_waiting,
        grace_seconds=args.grace,
        max_concurrency=args.max_concurrency,
        max_batch=args.max_batch,
        request_defaults=call_kwargs(args),
        allowed_hosts=args.allowed_hosts.split(",") if args.allowed_hosts else None,
        max_connections=args.max_connections,
        header_timeout=args.header_timeout,
        idle_timeout=args.idle_timeout,
        send_timeout=args.send_timeout,
        metrics_public=args.metrics_public,
    )


def _serve_on_ray(args: argparse.Namespace, settings: Any, keys: list[str]) -> int:
    """The server as a Ray Serve deployment of ``--replicas`` replicas."""
    import functools

    from lmstream.ray import application, run

    app = application(functools.partial(_models, args), replicas=args.replicas, settings=settings)
    names = args.served_model_name or [args.model]
    banner = _banner(args, args.port, keys, names)
    sys.stderr.write(banner.replace("serving", f"serving on Ray ({args.replicas} replicas)") + "\n")
    run(app, host=args.host, port=args.port)
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from lmstream.server import create_app, uvicorn_options

    keys = [*args.api_key, *filter(None, os.environ.get("LMSTREAM_API_KEYS", "").split(","))]
    if args.ray:
        return _serve_on_ray(args, _settings(args, keys), keys)
    settings = _settings(args, keys)
    sock = _listen(args.host, args.port)  # before the model loads: a taken port fails fast
    models, aliases = _models(args)
    app = create_app(models, settings, aliases)
    shutdown = _Shutdown(app.state, args.grace)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            shutdown.loop = asyncio.get_running_loop()
            await super().startup(sockets)

        def handle_exit(self, sig: int, frame: Any) -> None:
            shutdown.begin()
            super().handle_exit(sig, frame)

    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        timeout_graceful_shutdown=args.grace + 2,
        lifespan="off",
        log_config=None if args.log_format == "json" else LOGGING_CONFIG,  # uvicorn's too
        **uvicorn_options(settings),
    )
    sys.stderr.write(_banner(args, sock.getsockname()[1], keys, [*models, *aliases]) + "\n")
    sys.stderr.flush()
    Server(config).run(sockets=[sock])
    return 0


def run_serve(argv: list[str]) -> int:
    """The ``lmstream serve`` command."""
    import logging

    try:
        parse = parser()
    except ImportError as exc:  # the server extra is missing
        sys.stderr.write(f"lmstream: error: {exc}\n")
        return 1
    args = parse.parse_args(argv)
    if args.max_tokens is not None and args.max_tokens > args.max_tokens_cap:
        parse.error("--max-tokens must be at most --max-tokens-cap")  # or every request is a 400
    logging.basicConfig(level=args.log_level.upper(), format="%(message)s", stream=sys.stderr)
    if args.log_format == "json":
        from lmstream.server.telemetry import JsonFormatter

        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    return guarded(args, lambda: _serve(args))
