"""``lmstream serve``: serve models over HTTP (OpenAI-compatible and runnable endpoints).

Without API keys the server listens on loopback only unless told otherwise, and says so.
On SIGTERM or Ctrl-C it stops accepting connections, lets in-flight streams finish for
``--grace`` seconds, then ends the rest with an error frame.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

__all__ = ["run_serve"]


def _parser() -> argparse.ArgumentParser:
    from lmstream.cli import _add_model_options

    parser = argparse.ArgumentParser(prog="lmstream serve", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--served-model-name",
        action="append",
        default=[],
        help="a name the model answers to; the first is reported (repeatable)",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        default=[],
        help="an accepted bearer key (repeatable; or LMSTREAM_API_KEYS)",
    )
    parser.add_argument("--max-waiting", type=int, default=32, help="queued requests per model")
    parser.add_argument(
        "--max-concurrency", type=int, default=256, help="generations at once per thread-safe model"
    )
    parser.add_argument("--max-tokens-cap", type=int, default=4096)
    parser.add_argument("--max-body-bytes", type=int, default=1_000_000)
    parser.add_argument("--max-batch", type=int, default=64, help="inputs per /batch request")
    parser.add_argument("--grace", type=float, default=10.0, help="seconds streams get on shutdown")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--log-format", choices=["text", "json"], default="text")
    parser.add_argument(
        "--metrics-public", action="store_true", help="answer GET /metrics without a key"
    )
    _add_model_options(parser)
    parser.set_defaults(model=None)
    parser.add_argument(
        "--extra-model",
        action="append",
        default=[],
        metavar="ID",
        help="serve another model too, under its id (repeatable)",
    )
    return parser


def _models(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    from lmstream.cli import provider_options
    from lmstream.registry import DEFAULT_MODEL, load_llm

    primary_id = args.model or DEFAULT_MODEL
    names = args.served_model_name or [primary_id]
    models = {names[0]: load_llm(primary_id, **provider_options(args))}
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


def _banner(args: argparse.Namespace, keys: list[str], names: list[str]) -> str:
    where = f"http://{args.host}:{args.port}"
    if keys:
        return f"lmstream: serving {', '.join(names)} on {where} ({len(keys)} API key(s) required)"
    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    note = "no API key: loopback only" if loopback else "WARNING: no API key and not on loopback"
    return f"lmstream: serving {', '.join(names)} on {where} ({note})"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from lmstream.server.app import create_app
    from lmstream.server.state import ServerSettings

    keys = [*args.api_key, *filter(None, os.environ.get("LMSTREAM_API_KEYS", "").split(","))]
    settings = ServerSettings(
        api_keys=keys,
        max_body_bytes=args.max_body_bytes,
        max_tokens_cap=args.max_tokens_cap,
        max_waiting=args.max_waiting,
        grace_seconds=args.grace,
        max_concurrency=args.max_concurrency,
        max_batch=args.max_batch,
        metrics_public=args.metrics_public,
    )
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
    )
    sys.stderr.write(_banner(args, keys, [*models, *aliases]) + "\n")
    sys.stderr.flush()
    Server(config).run()
    return 0


def run_serve(argv: list[str]) -> int:
    """The ``lmstream serve`` command."""
    import logging

    from lmstream.cli import _guarded

    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(message)s", stream=sys.stderr)
    if args.log_format == "json":
        from lmstream.server.telemetry import JsonFormatter

        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    return _guarded(args, lambda: _serve(args))
