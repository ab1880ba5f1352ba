"""``lmstream chat``, run as a real process: one answer, JSON lines, events, stdin, errors,
Ctrl-C, closed pipes, and a session on a pseudo-terminal. ``fake:`` ids script the
answers; ``langchain:cli_chat_models.Echo`` answers with the conversation it received."""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CLI = [sys.executable, "-m", "lmstream", "chat"]
TESTS = str(Path(__file__).resolve().parent)
ENV = {**os.environ, "PYTHONPATH": TESTS, "TERM": "dumb"}
ECHO = ["-m", "langchain:cli_chat_models.Echo"]
SLOW = ["--option", "delay=0.05"]
FIXED = ["--temperature", "0", "--seed", "7"]
SEP = "\x1f"  # a separator the model will not write
LONG = "one " + " ".join(f"w{i}" for i in range(2, 41))  # 40 words: 8 s at 0.2 s a word


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, text=True, timeout=120, check=False,
        env=ENV,
    )  # fmt: skip


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


# -- one answer ------------------------------------------------------------------------------


def test_one_answer_streams_chunk_by_chunk() -> None:
    result = run("hi", "-m", "fake:Hello there", "--option", 'chunking="word"', "--sep", "|")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Hello |there|\n"  # a final newline, as on a terminal
    assert result.stderr == ""  # no spinner, no noise off a terminal


def test_the_system_message_and_the_prompt_reach_the_model() -> None:
    result = run("Name a fish.", "--system", "Answer in one word.", *ECHO)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "system: Answer in one word. / human: Name a fish.\n"
    assert run("Name a fish.", *ECHO).stdout == "human: Name a fish.\n"


def test_lmstream_with_a_system_message_runs_one_chat_turn() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lmstream", "hi", "--system", "Be brief.", *ECHO],
        capture_output=True, text=True, timeout=120, check=False, env=ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == "system: Be brief. / human: hi\n"


def test_reads_the_prompt_from_piped_stdin() -> None:
    for args in ([], ["-"]):
        result = run(*args, *ECHO, stdin="a piped question\n")
        assert (result.returncode, result.stdout) == (0, "human: a piped question\n")


def test_reasoning_goes_to_stderr_and_never_into_the_answer() -> None:
    result = run("hi", *ECHO, "--option", 'reasoning="Let me think."')
    assert result.returncode == 0, result.stderr
    assert result.stdout == "human: hi\n"
    assert result.stderr == "Let me think.\n"


def test_generation_options_reach_the_model() -> None:
    result = run("p", "-m", "fake:abc\ndef", "--stop", "\n", "--json")
    assert lines(result.stdout)[-1]["text"] == "abc"


def test_json_prints_every_chunk_then_the_outcome() -> None:
    result = run("hi", *ECHO, "--option", 'reasoning="Hmm."', "--json")
    assert result.returncode == 0, result.stderr
    *chunks, end = lines(result.stdout)
    assert chunks[0] == {"type": "chunk", "reasoning": "Hmm."}
    assert [c.get("text") for c in chunks[1:3]] == ["human: ", "hi"]
    assert chunks[-1]["last"] is True and chunks[-1]["finish_reason"] == "stop"
    usage = chunks[-1]["usage"]
    assert end == {
        "type": "result",
        "model": "langchain:cli_chat_models.Echo",
        "text": "human: hi",
        "reasoning": "Hmm.",
        "tool_calls": [],
        "finish_reason": "stop",
        "usage": {**usage, "estimated": True},  # the LangChain model sent no usage
    }


def test_json_carries_the_provider_s_usage() -> None:
    *_, end = lines(run("p q", "-m", "fake:hello", "--json").stdout)
    assert end["text"] == "hello"
    assert end["usage"] == {
        "input_tokens": 10,  # "Human: p q", character by character
        "output_tokens": 5,
        "total_tokens": 15,
        "estimated": False,
    }


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_events_are_json_lines_of_the_async_stream(version: str) -> None:
    result = run("hi", "--system", "Be brief.", "-m", "fake:ab", "--events", version)
    assert result.returncode == 0, result.stderr
    events = lines(result.stdout)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "on_chat_model_start" and kinds[-1] == "on_chat_model_end"
    assert [e["data"]["chunk"]["content"] for e in events if e["event"].endswith("_stream")][
        :2
    ] == ["a", "b"]
    sent = events[0]["data"]["input"]
    sent = sent["messages"][0] if isinstance(sent, dict) else sent
    assert [(m["type"], m["content"]) for m in sent] == [("system", "Be brief."), ("human", "hi")]
    assert events[-1]["data"]["output"]["content"] == "ab"


# -- errors, Ctrl-C, closed pipes --------------------------------------------------------------


def test_a_failure_mid_answer_keeps_the_partial_text_and_exits_1() -> None:
    result = run("p", "-m", "fake:abcdef", "--option", "error_after=3")
    assert result.returncode == 1
    assert result.stdout == "abc"
    assert result.stderr == "lmstream: error: ProviderError: FakeChatModel failed after 3 chunks\n"
    result = run("p", "-m", "fake:abcdef", "--option", "error_after=3", "--json")
    assert result.returncode == 1
    *chunks, failed = lines(result.stdout)
    assert "".join(c["text"] for c in chunks) == "abc"
    assert failed["type"] == "error" and failed["error"]["partial_text"] == "abc"


def test_typed_errors_are_one_line_and_suggest_chat_ids() -> None:
    result = run("p", "-m", "gpt-4o")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        "lmstream: error: InvalidInputError: unknown provider 'gpt-4o' in 'gpt-4o'; did you "
        "mean 'openai:gpt-4o'? (chat: fake, langchain, llamacpp, openai, remote)\n"
    )
    result = run("p", "-m", "remote:http://127.0.0.1:9")  # nothing listens there
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("lmstream: error: APIConnectionError: connection to")
    assert "Traceback" in run("p", "-m", "gpt-4o", "--debug").stderr


def test_json_and_events_need_a_prompt_off_a_session() -> None:
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, "-m", "fake:a", "--json"], stdin=child, stdout=child, stderr=child, env=ENV
    )
    os.close(child)
    screen = _read_all(main, proc)
    assert proc.returncode == 2 and "--json and --events answer one prompt" in screen


def _start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env=ENV,
    )  # fmt: skip


# -- the embedded model ------------------------------------------------------------------------


def test_the_embedded_model_streams_token_by_token_and_matches_the_json_result() -> None:
    args = ["Name three fish.", "--max-tokens", "16", *FIXED]
    streamed = run(*args, "--sep", SEP)
    assert streamed.returncode == 0, streamed.stderr
    pieces = streamed.stdout.split(SEP)
    assert pieces[-1] == "\n"
    assert len(pieces) > 6  # many chunks, not one
    *chunks, end = lines(run(*args, "--json").stdout)
    assert "".join(pieces[:-1]) == end["text"] == "".join(c.get("text", "") for c in chunks)
    assert end["model"] == "llamacpp" and end["finish_reason"] in ("stop", "length")
    assert end["usage"]["output_tokens"] <= 16 and not end["usage"]["estimated"]


def test_the_system_message_reaches_the_embedded_model() -> None:
    def prompt_tokens(*extra: str) -> int:
        *_, end = lines(run("Name a fish.", "--max-tokens", "1", "--json", *extra).stdout)
        assert end["finish_reason"] == "length" and end["usage"]["output_tokens"] == 1
        return int(end["usage"]["input_tokens"])

    short = prompt_tokens("--system", "Be brief.")
    assert prompt_tokens("--system", "Be brief. " * 8) > short  # the template holds it
    assert prompt_tokens() != short  # else the template's own default system message


def test_events_from_the_embedded_model() -> None:
    result = run("Say hello.", "--max-tokens", "6", "--events", "v2", *FIXED)
    events = lines(result.stdout)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "on_chat_model_start" and kinds[-1] == "on_chat_model_end"
    assert kinds.count("on_chat_model_stream") >= 2
    assert events[-1]["data"]["output"]["usage_metadata"]["output_tokens"] <= 6


def test_ctrl_c_stops_the_embedded_model() -> None:
    args = ["Write a very long story about the sea.", "--max-tokens", "400", *FIXED]
    with _start(*args) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.read(12)
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 130
    assert len(first + rest) >= 12
    assert "stopped after" in err and "Traceback" not in err


# -- a session on a terminal -------------------------------------------------------------------


def _read_all(fd: int, proc: subprocess.Popen[bytes]) -> str:
    data = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 30)
        if not ready:
            break
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    proc.wait(timeout=30)
    os.close(fd)
    return data.decode().replace("\r", "")


class Terminal:
    """``lmstream chat`` on a pseudo-terminal, read as it writes."""

    def __init__(self, *args: str) -> None:
        self.fd, child = pty.openpty()
        self.proc = subprocess.Popen(
            [*CLI, *args], stdin=child, stdout=child, stderr=child, env=ENV
        )
        os.close(child)
        self.screen = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def wait_for(self, text: str, after: int = 0, timeout: float = 60) -> int:
        """Read until ``text`` shows after position ``after``; where it ends."""
        deadline = time.monotonic() + timeout
        while text not in self.screen[after:]:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.fd], [], [], max(left, 0))
            assert ready, f"never saw {text!r} in:\n{self.screen}"
            self.screen += self._decoder.decode(os.read(self.fd, 4096)).replace("\r", "")
        return self.screen.index(text, after) + len(text)

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def interrupt_when_reading(self) -> None:
        """Ctrl-C once the session waits in readline for a key. (CPython notices a signal
        there only when it interrupts that wait, not while a key is being handled.)"""
        deadline = time.monotonic() + 60
        wchan = Path(f"/proc/{self.proc.pid}/wchan")
        while not any(w in wchan.read_text() for w in ("poll", "select")):
            assert time.monotonic() < deadline, wchan.read_text()
            time.sleep(0.01)
        self.proc.send_signal(signal.SIGINT)

    def close(self, at: int) -> str:
        """Ctrl-D at the next prompt after position ``at``, then what was left to read."""
        self.wait_for(">>> ", at)  # typed before the prompt, Ctrl-D could be lost
        self.type("\x04")
        self.screen += _read_all(self.fd, self.proc)
        return self.screen

    def kill(self) -> None:
        """End the session if a test left it running."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        with contextlib.suppress(OSError):
            os.close(self.fd)


@pytest.fixture
def terminal() -> Iterator[Callable[..., Terminal]]:
    """Starts sessions, and ends those a failing test left running."""
    started: list[Terminal] = []

    def start(*args: str) -> Terminal:
        started.append(Terminal(*args))
        return started[-1]

    yield start
    for term in started:
        term.kill()


def test_a_session_keeps_the_conversation_across_turns(
    tmp_path: Path, terminal: Callable[..., Terminal]
) -> None:
    term = terminal(*ECHO, "--system", "Be brief.")
    at = term.wait_for(">>> ")
    term.type("first question\n")
    at = term.wait_for("system: Be brief. / human: first question\n", at)
    at = term.wait_for(">>> ", at)
    term.type("second question\n")
    history = (
        "system: Be brief. / human: first question / ai: system: Be brief. / human: first "
        "question / human: second question\n"
    )
    at = term.wait_for(history, at)
    term.wait_for(">>> ", at)
    saved = tmp_path / "conversation.json"
    term.type(f"/save {saved}\n")
    at = term.wait_for(f"saved 5 messages to {saved}", at)
    screen = term.close(at)
    assert term.proc.returncode == 0, screen
    roles = [m["role"] for m in json.loads(saved.read_text())]
    assert roles == ["system", "user", "assistant", "user", "assistant"]


def test_ctrl_c_in_a_session_stops_the_answer_and_keeps_what_was_written(
    terminal: Callable[..., Terminal],
) -> None:
    term = terminal(*ECHO, "--option", "delay=0.2")
    at = term.wait_for(">>> ")
    term.type(f"{LONG}\n")
    at = term.wait_for("human: one ", at)
    term.proc.send_signal(signal.SIGINT)
    at = term.wait_for("(stopped)", at)
    partial = term.screen[term.screen.index("human: one ") : at - len("(stopped)")].strip()
    assert "w40" not in partial  # stopped before the end
    at = term.wait_for(">>> ", at)
    term.type("/reset\n")
    at = term.wait_for(">>> ", term.wait_for("conversation forgotten", at))
    term.type("again\n")  # the session goes on, and /reset forgot the stopped turn
    at = term.wait_for("human: again\n", at)
    screen = term.close(at)
    assert term.proc.returncode == 0, screen


def test_a_stopped_answer_joins_the_conversation_as_far_as_it_got(
    tmp_path: Path, terminal: Callable[..., Terminal]
) -> None:
    term = terminal(*ECHO, "--option", "delay=0.2")
    at = term.wait_for(">>> ")
    term.type(f"{LONG}\n")
    at = term.wait_for("human: one ", at)
    term.proc.send_signal(signal.SIGINT)
    at = term.wait_for(">>> ", term.wait_for("(stopped)", at))
    saved = tmp_path / "c.json"
    term.type(f"/save {saved}\n")
    at = term.wait_for("saved 2 messages", at)
    screen = term.close(at)
    assert term.proc.returncode == 0, screen
    asked, answer = json.loads(saved.read_text())
    assert (asked["role"], answer["role"]) == ("user", "assistant")
    assert answer["content"].startswith("human: one") and "w40" not in answer["content"]


def test_exit_leaves_a_session(terminal: Callable[..., Terminal]) -> None:
    term = terminal("-m", "fake:hello")
    at = term.wait_for(">>> ")
    term.type("hi\n")
    at = term.wait_for("hello\n", at)
    term.wait_for(">>> ", at)
    term.type("exit\n")
    term.screen += _read_all(term.fd, term.proc)
    assert term.proc.returncode == 0


def test_reasoning_is_dimmed_on_a_terminal() -> None:
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, "hi", *ECHO, "--option", 'reasoning="Let me think."'],
        stdin=child, stdout=child, stderr=child, env=ENV,
    )  # fmt: skip
    os.close(child)
    screen = _read_all(main, proc)
    assert proc.returncode == 0, screen
    assert "\x1b[2mLet me think.\x1b[0m\nhuman: hi\n" in screen


def test_a_session_takes_a_new_system_message_and_survives_ctrl_c_at_the_prompt(
    terminal: Callable[..., Terminal],
) -> None:
    term = terminal(*ECHO, "--system", "Be brief.")
    at = term.wait_for(">>> ")
    term.type("/system Be terse.\n")
    at = term.wait_for(">>> ", term.wait_for("system message set", at))
    term.type("half a line")
    term.wait_for("half a line", at)
    term.interrupt_when_reading()  # at the prompt: the line goes, the session stays
    at = term.wait_for(">>> ", at)
    term.type("hi\n")
    at = term.wait_for("system: Be terse. / human: hi\n", at)
    screen = term.close(at)
    assert term.proc.returncode == 0, screen
    assert "Be brief." not in screen.split("system message set")[1]


def test_a_failed_answer_in_a_session_is_one_line_and_leaves_the_conversation(
    tmp_path: Path, terminal: Callable[..., Terminal]
) -> None:
    term = terminal("-m", "fake:abcdef", "--option", "error_after=3")
    at = term.wait_for(">>> ")
    term.type("hi\n")
    at = term.wait_for("abc\nlmstream: error: ProviderError: FakeChatModel failed after 3", at)
    at = term.wait_for(">>> ", at)
    saved = tmp_path / "c.json"
    term.type(f"/save {saved}\n")
    at = term.wait_for("saved 0 messages", at)
    screen = term.close(at)
    assert term.proc.returncode == 0, screen
    assert json.loads(saved.read_text()) == []
    assert "Traceback" not in screen
