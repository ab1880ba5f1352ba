"""What the sub-commands share: the model options, their defaults, and how errors end."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

from lmstream import InvalidInputError, LMStreamError
from lmstream._json import dumps
from lmstream.registry import DEFAULT_MODEL

__all__ = [
    "DEFAULT_MODEL",
    "GENERATION_OPTIONS",
    "SUBCOMMANDS",
    "HelpFormatter",
    "add_model_options",
    "call_kwargs",
    "close",
    "guarded",
    "print_events",
    "provider_options",
]


GENERATION_OPTIONS = ("max_tokens", "temperature", "seed", "stop")
"""The generation parameters the commands accept, as the model's keyword names."""

SUBCOMMANDS = ("chat", "batch", "serve", "models")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' own line breaks, and shows defaults written in the help."""


def add_model_options(parser: argparse.ArgumentParser, *, request_defaults: str = "") -> None:
    """``-m`` and the generation options; with ``request_defaults`` (serve), the
    generation options are defaults for requests, and that text says so."""
    group = parser.add_argument_group("model", request_defaults or None)
    default = "the request's, else the model's" if request_defaults else "the model's"
    group.add_argument(
        "-m", "--model", default=DEFAULT_MODEL, metavar="ID",
        help="the model, as provider:model (default: %(default)s; see lmstream models)",
    )  # fmt: skip
    group.add_argument(
        "--max-tokens", type=int, metavar="N", help=f"most tokens to generate (default: {default})"
    )
    group.add_argument(
        "--temperature", type=float, metavar="T", help=f"sampling temperature (default: {default})"
    )
    group.add_argument("--seed", type=int, metavar="S", help=f"sampling seed (default: {default})")
    group.add_argument(
        "--stop", action="append", metavar="TEXT",
        help=f"a stop sequence (repeatable; default: {default})",
    )  # fmt: skip
    group.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE",
        help="a provider setting, e.g. n_ctx=4096 or base_url=http://...; values are read as "
        "JSON when they parse (repeatable; default: the provider's)",
    )  # fmt: skip
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def provider_options(args: argparse.Namespace) -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs; values are read as JSON when they parse."""
    options: dict[str, Any] = {}
    for item in args.option:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InvalidInputError(f"--option takes KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(raw)
        except json.JSONDecodeError:
            options[key] = raw
    return options


def call_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The generation parameters given on the command line."""
    return {k: getattr(args, k) for k in GENERATION_OPTIONS if getattr(args, k, None) is not None}


async def print_events(model: Any, given: Any, args: argparse.Namespace, out: Any) -> int:
    """``--events``: the model's ``astream_events`` for ``given``, one JSON line each, until
    they end or ``out`` (a ``_term.Output``) is closed."""
    events = model.astream_events(given, version=args.events, **call_kwargs(args))
    try:
        async for event in events:
            out.write(dumps(event) + "\n")
            if out.closed:
                break
    finally:
        await events.aclose()
    return 0


def close(it: Any) -> None:
    """Close a stream now (which stops its model), if it can be closed."""
    fn = getattr(it, "close", None)
    if fn is not None:
        fn()


def guarded(args: argparse.Namespace, body: Callable[[], int]) -> int:
    """Run ``body``; typed errors become one line on stderr and exit code 1."""
    try:
        return int(body())
    except KeyboardInterrupt:
        sys.stderr.write("\nlmstream: stopped\n")
        return 130
    except (LMStreamError, ImportError, OSError) as exc:
        if getattr(args, "debug", False):
            traceback.print_exc()
        sys.stderr.write(f"lmstream: error: {type(exc).__name__}: {exc}\n")
        return 1
