"""The ``lmstream`` command: ``lmstream PROMPT`` streams a completion; ``chat``, ``batch``,
``serve`` and ``models`` are sub-commands, each in its own module here."""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """The ``lmstream`` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else None
    if command == "models":
        from lmstream.cli.models import run_models

        return run_models(args[1:])
    if command == "batch":
        from lmstream.cli.batch import run_batch

        return run_batch(args[1:])
    if command == "chat":
        from lmstream.cli.chat import run_chat

        return run_chat(args[1:])
    if command == "serve":
        from lmstream.cli.serve import run_serve

        return run_serve(args[1:])
    from lmstream.cli.stream import run_stream

    return run_stream(args[1:] if command == "prompt" else args)
