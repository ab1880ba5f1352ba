"""The ``lmstream`` command's help: plain text, every option explained with its default,
the sub-commands in the usage line, and ``--version``."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

import lmstream
from lmstream.cli import batch, chat, models, serve, stream

CLI = [sys.executable, "-m", "lmstream"]
COMMANDS = {(): stream.parser, ("batch",): batch.parser, ("serve",): serve.parser}
COMMANDS[("models",)] = models.parser
COMMANDS[("chat",)] = chat.parser


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("command", list(COMMANDS), ids=lambda c: " ".join(c) or "prompt")
def test_help_is_plain_text_naming_every_option(command: tuple[str, ...]) -> None:
    result = run(*command, "--help")
    assert result.returncode == 0 and result.stderr == ""
    assert "``" not in result.stdout and ":class:" not in result.stdout
    for action in COMMANDS[command]()._actions:
        for option in action.option_strings:
            assert option in result.stdout


@pytest.mark.parametrize("command", list(COMMANDS), ids=lambda c: " ".join(c) or "prompt")
def test_every_option_has_a_help_line_and_says_its_default(command: tuple[str, ...]) -> None:
    parser = COMMANDS[command]()
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        assert action.help, action.dest
        takes_value = action.nargs != 0
        if action.option_strings and takes_value and not action.required:
            assert "default: " in action.help, action.option_strings


def test_the_usage_line_lists_the_sub_commands() -> None:
    usage = run("--help").stdout.split("\n\n")[0]
    assert usage.startswith("usage: lmstream")
    for command in ("chat", "batch", "serve", "models"):
        assert command in usage


def test_version() -> None:
    result = run("--version")
    assert (result.returncode, result.stdout) == (0, f"lmstream {lmstream.__version__}\n")


def test_serve_help_says_generation_options_are_request_defaults() -> None:
    text = " ".join(run("serve", "--help").stdout.split())
    assert "--max-tokens, --temperature, --seed and --stop are the defaults for requests" in text
