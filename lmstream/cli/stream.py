"""``lmstream PROMPT``: stream one completion to stdout.

Text goes to stdout as it arrives and ends with a newline, on a terminal or in a pipe;
diagnostics go to stderr. Ctrl-C stops the model at once, keeps what was printed and
exits 130; a closed pipe stops the model and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from functools import reduce
from operator import add
from typing import Any

from lmstream import BaseLLM, GenerationChunk, __version__, load_llm
from lmstream._json import dumps, to_jsonable
from lmstream.cli._term import Output, Spinner
from lmstream.cli.common import (
    SUBCOMMANDS,
    HelpFormatter,
    add_model_options,
    call_kwargs,
    close,
    guarded,
    print_events,
    provider_options,
)

__all__ = ["parser", "run_stream"]

USAGE = f"""lmstream [-h] [--version] [options] [PROMPT]
       lmstream {{{",".join(SUBCOMMANDS)}}} [-h] ..."""

EPILOG = """sub-commands (each has its own --help):
  chat     stream a chat model's answer, or hold a conversation
  batch    many prompts from a file, results appended as each one finishes
  serve    serve a model over HTTP (OpenAI-compatible and runnable endpoints)
  models   list the providers, their kinds and whether they are installed

examples:
  lmstream "Write me a 1 verse song about sparkling water." --sep "|"
  echo "Name a fish." | lmstream -m openai:gpt-3.5-turbo-instruct
  lmstream "Name a fish." --events v2
  lmstream "Name a fish." --system 'Answer in one word.'"""


def parser() -> argparse.ArgumentParser:
    """The parser of ``lmstream [options] PROMPT``."""
    parser = argparse.ArgumentParser(
        prog="lmstream",
        usage=USAGE,
        description="Stream a completion from any model, token by token.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("prompt", nargs="?", help="the prompt; '-' or none reads stdin")
    parser.add_argument("--version", action="version", version=f"lmstream {__version__}")
    parser.add_argument(
        "--sep",
        default="",
        metavar="TEXT",
        help="printed after every chunk, e.g. '|' (default: none)",
    )
    parser.add_argument(
        "--system", metavar="TEXT",
        help="a system message: the prompt becomes one chat turn with the chat model -m "
        "names, as in lmstream chat (default: none, a completion)",
    )  # fmt: skip
    out = parser.add_mutually_exclusive_group()
    out.add_argument(
        "--events", choices=("v1", "v2"), help="print the events as JSON lines (default: the text)"
    )
    out.add_argument(
        "--json", action="store_true", help="print the result, finish_reason and usage as JSON"
    )
    add_model_options(parser)
    return parser


def _read_prompt(args: argparse.Namespace, parser: argparse.ArgumentParser) -> str:
    if args.prompt not in (None, "-"):
        return str(args.prompt)
    if args.prompt is None and sys.stdin.isatty():
        parser.error("give a prompt, or pipe one in")
    return sys.stdin.read()


def _stream_text(llm: BaseLLM, prompt: str, args: argparse.Namespace, out: Output) -> int:
    spinner = Spinner(f"loading {args.model}").start()
    stream = llm.stream_chunks(prompt, **call_kwargs(args))
    last = ""
    try:
        for chunk in stream:
            spinner.stop()
            if chunk.text or chunk.generation_info is None:
                last = chunk.text + args.sep or last
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
    if out.wrote and not last.endswith("\n"):
        out.write("\n")  # like a terminal's prompt, a pipe's reader expects a final newline
    return 0


def _print_json(llm: BaseLLM, prompt: str, args: argparse.Namespace, out: Output) -> int:
    with Spinner(f"loading {args.model}"):
        chunks = list(llm.stream_chunks(prompt, **call_kwargs(args)))
    result = reduce(add, chunks, GenerationChunk(""))
    info = result.generation_info or {}
    record = {
        "model": args.model,
        "text": result.text,
        "finish_reason": info.get("finish_reason"),
        "usage": to_jsonable(info.get("usage")),
    }
    out.write(dumps(record) + "\n")
    return 0


def _generate(args: argparse.Namespace, prompt: str) -> int:
    if args.system is not None:
        from lmstream.cli.chat import answer

        return answer(args, prompt.rstrip("\n"))
    out = Output()
    with Spinner(f"loading {args.model}"):
        llm = load_llm(args.model, **provider_options(args))
    if args.events:
        try:
            return asyncio.run(print_events(llm, prompt, args, out))
        except KeyboardInterrupt:
            sys.stderr.write("\nlmstream: stopped\n")
            return 130
    if args.json:
        return _print_json(llm, prompt, args, out)
    with out:
        return _stream_text(llm, prompt, args, out)


def run_stream(argv: Sequence[str]) -> int:
    """The ``lmstream [options] PROMPT`` command."""
    parse = parser()
    args = parse.parse_args(argv)
    prompt = _read_prompt(args, parse)
    body: Any = lambda: _generate(args, prompt)  # noqa: E731
    return guarded(args, body)
