"""``lmstream chat``: stream a chat model's answer, or hold a conversation.

With a prompt (or a prompt piped into stdin), one answer streams to stdout as it arrives
and ends with a newline. Reasoning, when the model gives it, goes to stderr (dimmed on a
terminal), so the answer on stdout is only the answer. Without a prompt on a terminal,
``lmstream chat`` is an interactive session that keeps the conversation. Ctrl-C stops
the answer at once and keeps what was printed (exit 130, or the next turn in a
session); a closed pipe stops the model and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from lmstream import AIMessageChunk, BaseMessage, HumanMessage, SystemMessage, load_chat_model
from lmstream._json import dumps, error_dict, to_jsonable
from lmstream.cli._term import Output, Spinner
from lmstream.cli.common import (
    HelpFormatter,
    add_model_options,
    call_kwargs,
    close,
    guarded,
    print_events,
    provider_options,
)

__all__ = ["Answer", "answer", "outcome", "parser", "run_chat"]

DIM, RESET = "\033[2m", "\033[0m"

EPILOG = """in a session (no prompt, on a terminal):
  /system TEXT   set the system message (none: remove it)
  /reset         forget the conversation, keep the system message
  /save FILE     write the conversation to FILE as JSON
  exit, Ctrl-D   leave; Ctrl-C stops the answer being written

examples:
  lmstream chat "Name a fish." --system "Answer in one word."
  echo "Name a fish." | lmstream chat -m openai:gpt-4o-mini
  lmstream chat "Name a fish." --json
  lmstream chat"""


def parser() -> argparse.ArgumentParser:
    """The parser of ``lmstream chat``."""
    parser = argparse.ArgumentParser(
        prog="lmstream chat",
        description="Stream a chat model's answer, or hold a conversation with one.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "prompt", nargs="?",
        help="the message; '-' reads stdin, and none starts a session on a terminal",
    )  # fmt: skip
    parser.add_argument("--system", metavar="TEXT", help="the system message (default: none)")
    parser.add_argument(
        "--sep", default="", metavar="TEXT",
        help="printed after every chunk of text, e.g. '|' (default: none)",
    )  # fmt: skip
    out = parser.add_mutually_exclusive_group()
    out.add_argument(
        "--events", choices=("v1", "v2"), help="print the events as JSON lines (default: the text)"
    )
    out.add_argument(
        "--json", action="store_true",
        help="print every message chunk, then the outcome, as JSON lines",
    )  # fmt: skip
    add_model_options(parser)
    return parser


# -- one answer, printed ----------------------------------------------------------------------


class Answer:
    """Prints one streamed answer: text to ``out``, reasoning to stderr (dimmed on a
    terminal), and keeps the message as far as it got (``message``)."""

    def __init__(self, out: Output, sep: str = "") -> None:
        self.out, self.sep = out, sep
        self.message: AIMessageChunk | None = None
        self._last = ""
        self._reasoned = ""
        self._tty = sys.stderr.isatty()

    @property
    def chunks(self) -> int:
        """Chunks of text printed (counted by ``out``, so a Ctrl-C never splits the two)."""
        return self.out.writes

    @property
    def text(self) -> str:
        """The answer's text so far."""
        return "" if self.message is None else self.message.text

    def show(self, chunk: AIMessageChunk) -> None:
        """Add a chunk to the message and print what it carries."""
        self.message = chunk if self.message is None else self.message + chunk
        if chunk.reasoning:
            self._reason(chunk.reasoning)
        if chunk.text:
            self._end_reasoning()
            self._last = chunk.text + self.sep
            self.out.write(self._last)

    def finish(self) -> None:
        """End the answer on a line of its own, like a terminal's prompt expects."""
        self._end_reasoning()
        if self._last and not self._last.endswith("\n"):
            self.out.write("\n")
            self._last = "\n"

    def _reason(self, text: str) -> None:
        self._reasoned += text
        _stderr(f"{DIM}{text}{RESET}" if self._tty else text)

    def _end_reasoning(self) -> None:
        if self._reasoned and not self._reasoned.endswith("\n"):
            _stderr("\n")
        self._reasoned = ""


def _stderr(text: str) -> None:
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except OSError:
        pass  # whoever read stderr left; the answer goes on


def stream_answer(
    model: Any, messages: list[BaseMessage], args: Any, answer: Answer, waiting: str = "loading"
) -> bool:
    """Stream one answer into ``answer``; false when the reader of stdout went away.
    ``KeyboardInterrupt`` and the model's errors come out after the stream is closed."""
    spinner = Spinner(f"{waiting} {args.model}").start()
    stream = model.stream(messages, **call_kwargs(args))
    try:
        for chunk in stream:
            spinner.stop()
            answer.show(chunk)
            if answer.out.closed:
                return False  # closing the stream (below) stops the model
    finally:
        spinner.stop()
        close(stream)
    return True


def _one_answer(model: Any, messages: list[BaseMessage], args: Any) -> int:
    out = Output()
    answer = Answer(out, args.sep)
    with out:
        try:
            if not stream_answer(model, messages, args, answer):
                return 0
        except KeyboardInterrupt:
            sys.stderr.write(f"\nlmstream: stopped after {answer.chunks} chunks\n")
            return 130
        answer.finish()
    return 0


# -- JSON lines and events --------------------------------------------------------------------


def chunk_record(chunk: AIMessageChunk) -> dict[str, Any]:
    """What one message chunk carries: text, reasoning, tool-call fragments, usage and the
    finish reason, each only when present."""
    record: dict[str, Any] = {"type": "chunk"}
    if chunk.text:
        record["text"] = chunk.text
    if chunk.reasoning:
        record["reasoning"] = chunk.reasoning
    if chunk.tool_call_chunks:
        record["tool_call_chunks"] = to_jsonable(chunk.tool_call_chunks)
    reason = chunk.response_metadata.get("finish_reason")
    if reason is not None:
        record["finish_reason"] = reason
    if chunk.usage_metadata is not None:
        record["usage"] = to_jsonable(chunk.usage_metadata)
    if chunk.chunk_position == "last":
        record["last"] = True
    return record


def outcome(model_id: str, message: AIMessageChunk | None) -> dict[str, Any]:
    """The whole answer: text, reasoning, tool calls, finish reason and usage (with
    ``estimated`` when the provider sent none)."""
    meta = {} if message is None else message.response_metadata
    usage = None if message is None else to_jsonable(message.usage_metadata)
    if usage is not None:
        usage["estimated"] = bool(meta.get("usage_estimated"))
    return {
        "type": "result",
        "model": model_id,
        "text": "" if message is None else message.text,
        "reasoning": "" if message is None else message.reasoning,
        "tool_calls": [] if message is None else to_jsonable(message.tool_calls),
        "finish_reason": meta.get("finish_reason"),
        "usage": usage,
    }


def _json_lines(model: Any, messages: list[BaseMessage], args: Any, out: Output) -> int:
    message: AIMessageChunk | None = None
    with Spinner(f"loading {args.model}") as spinner:
        stream: Iterator[AIMessageChunk] = model.stream(messages, **call_kwargs(args))
        try:
            for chunk in stream:
                spinner.stop()
                message = chunk if message is None else message + chunk
                out.write(dumps(chunk_record(chunk)) + "\n")
                if out.closed:
                    return 0
        except Exception as exc:
            out.write(dumps({"type": "error", "error": error_dict(exc)}) + "\n")
            raise
        finally:
            close(stream)
    out.write(dumps(outcome(args.model, message)) + "\n")
    return 0


# -- the command ------------------------------------------------------------------------------


def opening(system: str | None) -> list[BaseMessage]:
    """The conversation before its first turn: the system message, if there is one."""
    return [SystemMessage(system)] if system else []


def answer(args: argparse.Namespace, prompt: str) -> int:
    """One chat turn: ``args.system`` and ``prompt`` in, the answer streamed out as
    ``args.json``/``args.events``/``args.sep`` say."""
    with Spinner(f"loading {args.model}"):
        model = load_chat_model(args.model, **provider_options(args))
    messages = [*opening(args.system), HumanMessage(prompt)]
    if args.events:
        try:
            return asyncio.run(print_events(model, messages, args, Output()))
        except KeyboardInterrupt:
            sys.stderr.write("\nlmstream: stopped\n")
            return 130
    if args.json:
        return _json_lines(model, messages, args, Output())
    return _one_answer(model, messages, args)


def _session(args: argparse.Namespace) -> int:
    from lmstream.cli._chat_session import Session

    with Spinner(f"loading {args.model}"):
        model = load_chat_model(args.model, **provider_options(args))
    return Session(model, args).run()


def run_chat(argv: Sequence[str]) -> int:
    """The ``lmstream chat`` command."""
    parse = parser()
    args = parse.parse_args(argv)
    if args.prompt is None and sys.stdin.isatty():
        if args.json or args.events:
            parse.error("--json and --events answer one prompt: give one, or pipe one in")
        return guarded(args, lambda: _session(args))
    prompt = args.prompt if args.prompt not in (None, "-") else sys.stdin.read().rstrip("\n")
    return guarded(args, lambda: answer(args, str(prompt)))
