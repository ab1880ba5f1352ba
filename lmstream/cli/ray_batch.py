"""``lmstream batch --ray``: the same input file, generated on Ray Data (see
``lmstream.ray_data``); the output is a directory of JSON Lines files."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lmstream.cli.common import call_kwargs, provider_options

__all__ = ["add_ray_options", "run_ray_batch"]


def add_ray_options(parser: argparse.ArgumentParser) -> None:
    """``--ray`` and the options that go with it."""
    group = parser.add_argument_group(
        "Ray Data",
        "with --ray, -o names a directory of .jsonl files, -c is streams per actor, and the "
        "cluster is the one RAY_ADDRESS names, else a local one",
    )
    group.add_argument("--ray", action="store_true", help="run on Ray Data")
    group.add_argument(
        "--actors", type=int, default=1, metavar="N",
        help="Ray actors, each with its own model (default: %(default)s)",
    )  # fmt: skip
    group.add_argument(
        "--fail-on-error", action="store_true", help="stop the job at the first failed prompt"
    )
    group.add_argument(
        "--chat", action="store_true",
        help="-m names a chat model (as lmstream chat's -m): a prompt is one user message, a "
        "JSON line may add a system message (\"system\"); results add reasoning and tool_calls",
    )  # fmt: skip


def run_ray_batch(args: argparse.Namespace, inputs: list[dict[str, object]]) -> int:
    """Generate ``inputs`` (keyed by their ``index``) on Ray Data; exit 1 if any failed."""
    import ray

    from lmstream.ray_data import batch

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), include_dashboard=False)
    rows = [{"index": i, **item} for i, item in enumerate(inputs)]
    summary = batch(
        rows, args.model, output=Path(args.output), resume=args.resume, actors=args.actors,
        concurrency=args.concurrency, fail_on_error=args.fail_on_error, chat=args.chat,
        options=provider_options(args), **call_kwargs(args),
    )  # fmt: skip
    sys.stderr.write(
        f"lmstream: {summary.finished} finished, {summary.failed} failed "
        f"({summary.skipped} had finished before) in {args.output}\n"
    )
    return 1 if summary.failed else 0
