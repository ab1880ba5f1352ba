"""``lmstream``: stream from any model in the terminal.

    lmstream "Write me a 1 verse song about sparkling water." --sep "|"
    echo "prompt" | lmstream --model openai:gpt-3.5-turbo-instruct
    lmstream "prompt" --events v2          # one JSON event per line
    lmstream batch prompts.jsonl -o out.jsonl --concurrency 4 --resume
    lmstream models

Text goes to stdout as it arrives; diagnostics go to stderr. Ctrl-C stops the model at
once, keeps what was printed and exits 130; a closed pipe stops the model and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from lmstream.cli._term import Output, Spinner
from lmstream._execution import close
from lmstream._json import dumps, to_jsonable
from lmstream.errors import InvalidInputError, LMStreamError
from lmstream.llm import BaseLLM
from lmstream.registry import DEFAULT_MODEL, available_providers, load_llm

__all__ = ["main"]

COMMANDS = ("batch", "models", "prompt", "serve")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-m", "--model", default=DEFAULT_MODEL, help="provider:model id")
    parser.add_argument("--max-tokens", type=int, help="most tokens to generate")
    parser.add_argument("--temperature", type=float, help="sampling temperature")
    parser.add_argument("--seed", type=int, help="sampling seed")
    parser.add_argument("--stop", action="append", help="stop sequence (repeatable)")
    parser.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE",
        help="provider setting, e.g. n_ctx=4096 or base_url=http://... (repeatable)",
    )  # fmt: skip
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


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


def _prompt_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lmstream",
        description="Stream a completion. Also: lmstream batch | models | serve (see --help).",
    )
    parser.add_argument("prompt", nargs="?", help="the prompt; '-' or none reads stdin")
    _add_model_options(parser)
    parser.add_argument("--sep", default="", help="printed after every chunk, e.g. '|'")
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--events", choices=("v1", "v2"), help="print events as JSON lines")
    out.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def call_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The generation parameters given on the command line."""
    names = ("max_tokens", "temperature", "seed", "stop")
    return {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}


def _read_prompt(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    if args.prompt not in (None, "-"):
        return str(args.prompt)
    if args.prompt is None and sys.stdin.isatty():
        parser.error("give a prompt, or pipe one in")
    return sys.stdin.read()


def _stream_text(llm: BaseLLM, prompt: str, args: argparse.Namespace, out: Output) -> int:
    spinner = Spinner(f"loading {args.model}").start()
    stream = llm.stream_chunks(prompt, **call_kwargs(args))
    try:
        for chunk in stream:
            spinner.stop()
            if chunk.text or chunk.generation_info is None:
                out.write(chunk.text + args.sep)
            if out.closed:
                return 0  # the reader went away: closing the stream stops the model
    except KeyboardInterrupt:
        close(stream)
        sys.stderr.write(f"\nlmstream: stopped after {out.writes} chunks\n")
        return 130
    finally:
        spinner.stop()
        close(stream)
    if out.wrote and sys.stdout.isatty():
        out.write("\n")
    return 0


def _print_json(llm: BaseLLM, prompt: str, args: argparse.Namespace, out: Output) -> int:
    with Spinner(f"loading {args.model}"):
        chunks = list(llm.stream_chunks(prompt, **call_kwargs(args)))
    info: dict[str, Any] = {}
    for chunk in chunks:
        info.update({k: v for k, v in (chunk.generation_info or {}).items() if v is not None})
    result = {
        "model": args.model,
        "text": "".join(c.text for c in chunks),
        "finish_reason": info.get("finish_reason"),
        "usage": to_jsonable(info.get("usage")),
    }
    out.write(dumps(result) + "\n")
    return 0


async def _print_events(llm: BaseLLM, prompt: str, args: argparse.Namespace, out: Output) -> int:
    events = llm.astream_events(prompt, version=args.events, **call_kwargs(args))
    try:
        async for event in events:
            out.write(dumps(event) + "\n")
            if out.closed:
                break
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    return 0


def _run_prompt(argv: Sequence[str]) -> int:
    parser = _prompt_parser()
    args = parser.parse_args(argv)
    prompt = _read_prompt(args, parser)
    return _guarded(args, lambda: _generate(args, prompt))


def _generate(args: argparse.Namespace, prompt: str) -> int:
    out = Output()
    with Spinner(f"loading {args.model}"):
        llm = load_llm(args.model, **provider_options(args))
    if args.events:
        try:
            return asyncio.run(_print_events(llm, prompt, args, out))
        except KeyboardInterrupt:
            sys.stderr.write("\nlmstream: stopped\n")
            return 130
    if args.json:
        return _print_json(llm, prompt, args, out)
    with out:
        return _stream_text(llm, prompt, args, out)


def _guarded(args: argparse.Namespace, body: Any) -> int:
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


def _run_models(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="lmstream models", description="List providers.")
    parser.parse_args(argv)
    out = Output()
    for info in available_providers():
        state = "installed" if info.installed else f"needs: pip install 'lmstream[{info.extra}]'"
        out.write(f"{info.name:<10} {state:<12}  {info.description}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The ``lmstream`` command."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else None
    if command == "models":
        return _run_models(args[1:])
    if command == "batch":
        from lmstream.cli.batch import run_batch

        return run_batch(args[1:])
    if command == "serve":
        from lmstream.cli.serve import run_serve

        return run_serve(args[1:])
    if command == "prompt":
        args = args[1:]
    return _run_prompt(args)


if __name__ == "__main__":
    sys.exit(main())
