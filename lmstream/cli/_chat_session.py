"""``lmstream chat`` on a terminal: a conversation, one streamed answer per turn.

The line is read with readline (editing and history of what was typed). Every turn sends
the whole conversation. Ctrl-C during an answer stops it and keeps what was written as the
assistant's turn; Ctrl-C at the prompt clears the line; Ctrl-D or ``exit`` leaves.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from lmstream import AIMessage, BaseMessage, HumanMessage, LMStreamError, SystemMessage
from lmstream.cli._term import Output
from lmstream.cli.chat import Answer, opening, stream_answer
from lmstream.message_input import messages_to_dicts

__all__ = ["Session"]

PROMPT = ">>> "
QUIT = ("exit", "quit", "/exit", "/quit")
HELP = "/system TEXT, /reset, /save FILE, /help; exit or Ctrl-D leaves"


def _note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class Session:
    """A conversation with ``model``: its messages, and the loop that reads turns."""

    def __init__(self, model: Any, args: argparse.Namespace) -> None:
        self.model, self.args = model, args
        self.messages: list[BaseMessage] = opening(args.system)

    def run(self) -> int:
        """Read turns until Ctrl-D or ``exit``."""
        with contextlib.suppress(ImportError):  # not every Python has it
            import readline  # noqa: F401  (line editing for input())
        _note(f"lmstream chat with {self.args.model}; {HELP}")
        while True:
            try:
                if not self.step(input(PROMPT).strip()):
                    return 0
            except EOFError:
                sys.stdout.write("\n")
                return 0
            except KeyboardInterrupt:  # at the prompt: a fresh line, the session goes on
                sys.stdout.write("\n")

    def step(self, text: str) -> bool:
        """Act on one line read; false when it says to leave."""
        if text in QUIT:
            return False
        if text.startswith("/"):
            self.command(text)
        elif text:
            self.turn(text)
        return True

    def command(self, text: str) -> None:
        """Run a ``/command``."""
        name, _, rest = text.partition(" ")
        rest = rest.strip()
        if name == "/system":
            self.messages = [m for m in self.messages if not isinstance(m, SystemMessage)]
            self.messages[:0] = opening(rest)
            _note("system message set" if rest else "system message removed")
        elif name == "/reset":
            self.messages = [m for m in self.messages if isinstance(m, SystemMessage)]
            _note("conversation forgotten")
        elif name == "/save" and rest:
            self.save(Path(rest).expanduser())
        else:
            _note(HELP)

    def save(self, path: Path) -> None:
        """Write the conversation as a JSON list of ``{"role", "content"}`` messages."""
        try:
            path.write_text(json.dumps(messages_to_dicts(self.messages), indent=2) + "\n")
        except OSError as exc:
            _note(f"lmstream: error: {type(exc).__name__}: {exc}")
            return
        _note(f"saved {len(self.messages)} messages to {path}")

    def turn(self, text: str) -> None:
        """One question and its streamed answer; the answer joins the conversation, or
        as much of it as was written when Ctrl-C stopped it. A failed answer is dropped,
        with its question, after one line saying why."""
        out = Output()
        answer = Answer(out, self.args.sep)
        asked = [*self.messages, HumanMessage(text)]
        with out:
            try:
                stream_answer(self.model, asked, self.args, answer, "waiting for")
                answer.finish()
            except KeyboardInterrupt:
                answer.finish()
                _note("(stopped)")
            except LMStreamError as exc:
                answer.finish()
                _note(f"lmstream: error: {type(exc).__name__}: {exc}")
                return
        self.messages = [*asked, AIMessage(answer.text)]
