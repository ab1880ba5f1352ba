"""The ``lmstream`` command, run as a real process (and under a pseudo-terminal)."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lmstream.registry import chat_providers

CLI = [sys.executable, "-m", "lmstream"]
SLOW = ["--option", "delay=0.05"]


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def test_streams_with_the_demo_separator() -> None:
    result = run("Write me a song", "-m", "fake:Sparkling water", "--sep", "|")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "S|p|a|r|k|l|i|n|g| |w|a|t|e|r|\n"  # a newline, as on a terminal
    assert result.stderr == ""  # no spinner, no noise off a terminal


def test_piped_text_ends_with_one_newline() -> None:
    assert run("p", "-m", "fake:hey").stdout == "hey\n"
    assert run("p", "-m", "fake:two lines\n").stdout == "two lines\n"
    assert run("p", "-m", "fake:a", "--max-tokens", "0").stdout == ""  # nothing, no newline


def test_reads_the_prompt_from_stdin() -> None:
    for args in ([], ["-"]):
        result = run(*args, "-m", "fake:ok", "--option", 'chunking="none"', stdin="a prompt\n")
        assert (result.returncode, result.stdout) == (0, "ok\n")


def test_generation_options_reach_the_model() -> None:
    result = run("p", "-m", "fake:abcdef", "--max-tokens", "3", "--json")
    record = json.loads(result.stdout)
    assert record["text"] == "abc" and record["finish_reason"] == "length"
    result = run("p", "-m", "fake:abc\ndef", "--stop", "\n", "--stop", "zz", "--json")
    assert json.loads(result.stdout)["text"] == "abc"


def test_json_result_carries_the_outcome() -> None:
    record = json.loads(run("p q", "-m", "fake:hello", "--json").stdout)
    assert record == {
        "model": "fake:hello",
        "text": "hello",
        "finish_reason": "stop",
        "usage": {
            "prompt_tokens": 3,
            "completion_tokens": 5,
            "total_tokens": 8,
            "estimated": False,
        },
    }


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_events_are_json_lines(version: str) -> None:
    result = run("hi", "-m", "fake:ab", "--events", version)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["event"] for e in events] == [
        "on_llm_start",
        "on_llm_stream",
        "on_llm_stream",
        "on_llm_end",
    ]
    assert [e["data"]["chunk"] for e in events[1:3]] == ["a", "b"]
    assert events[0]["data"] == {"input": "hi"}


def test_typed_errors_are_one_line_without_traceback() -> None:
    result = run("p", "-m", "nope:model")
    assert result.returncode == 1
    assert result.stderr.startswith("lmstream: error: InvalidInputError: unknown provider 'nope'")
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    result = run("p", "-m", "fake:abc", "--option", "error_after=1")
    assert result.returncode == 1 and result.stdout == "a"
    assert "ProviderError" in result.stderr and "Traceback" not in result.stderr
    debug = run("p", "-m", "nope:model", "--debug")
    assert "Traceback" in debug.stderr


def test_bad_usage_exits_2() -> None:
    assert run("p", "--events", "v3").returncode == 2
    assert run("p", "--option", "novalue", "-m", "fake:a").returncode == 1


def test_models_lists_the_providers() -> None:
    result = run("models")
    kinds = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()}
    assert {"fake", "llamacpp", "openai"} <= set(kinds)
    assert kinds["llamacpp"] == kinds["fake"] == "text+chat"  # ids that lmstream chat takes
    chat = set(chat_providers())
    assert {name for name, kind in kinds.items() if kind == "text+chat"} == chat
    assert all(kinds[name] == "text" for name in set(kinds) - chat)


def test_models_shows_a_plugin_whose_module_is_missing_as_broken(tmp_path: Path) -> None:
    dist = tmp_path / "ghost_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ghost-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[lmstream.providers]\nghost = ghost_gone:Ghost\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [*CLI, "models"], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "broken: ModuleNotFoundError: No module named 'ghost_gone'" in lines["ghost"]
    assert "installed" in lines["fake"] and "broken" not in lines["fake"]


def _start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )


# the text command and ``lmstream chat`` (a fake chat model) stop the same way
COMMANDS = pytest.mark.parametrize("command", [[], ["chat"]], ids=["text", "chat"])


@COMMANDS
def test_ctrl_c_stops_the_model_keeps_the_output_and_exits_130(command: list[str]) -> None:
    with _start(*command, "p", "-m", "fake:abcdefghijklmnopqrstuvwxyz", *SLOW) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.read(3)
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=30) == 130
    printed = (first + rest).decode()
    assert printed.startswith("abc") and len(printed) < 26
    assert f"stopped after {len(printed)} chunks" in err
    assert "Traceback" not in err


@COMMANDS
def test_a_closed_pipe_stops_the_model_quietly(command: list[str]) -> None:
    with _start(*command, "p", "-m", "fake:abcdefghijklmnopqrstuvwxyz", *SLOW) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.read(2) == b"ab"
        proc.stdout.close()  # like `| head -c 2`
        assert proc.wait(timeout=30) == 0
        assert proc.stderr.read() == b""


def write_prompts(path: Path, n: int) -> None:
    path.write_text("".join(json.dumps({"prompt": f"p{i}"}) + "\n" for i in range(n)))


def results(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_batch_writes_every_result(tmp_path: Path) -> None:
    prompts, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_prompts(prompts, 6)
    result = run("batch", str(prompts), "-o", str(out), "-m", "fake:ok", "-c", "3")
    assert result.returncode == 0, result.stderr
    records = results(out)
    assert sorted(r["index"] for r in records) == list(range(6))
    assert all(r["text"] == "ok" and r["finish_reason"] == "stop" for r in records)
    assert all(r["prompt"] == f"p{r['index']}" for r in records)
    assert records[0]["usage"]["completion_tokens"] == 2
    assert "6/6" in result.stderr
    again = run("batch", str(prompts), "-o", str(out), "-m", "fake:ok")
    assert again.returncode == 1 and "--resume" in again.stderr


def test_batch_records_errors_per_input(tmp_path: Path) -> None:
    prompts, out = tmp_path / "in.txt", tmp_path / "out.jsonl"
    prompts.write_text("one\n\ntwo\n")
    result = run(
        "batch", str(prompts), "-o", str(out), "-m", "fake:abc", "--option", "error_after=1"
    )
    assert result.returncode == 1
    records = results(out)
    assert sorted(r["index"] for r in records) == [0, 1]
    assert all(
        r["error"]["type"] == "ProviderError" and r["error"]["partial_text"] == "a" for r in records
    )


def test_batch_resumes_after_a_kill_without_repeating_work(tmp_path: Path) -> None:
    prompts, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_prompts(prompts, 8)
    args = ["batch", str(prompts), "-o", str(out), "-m", "fake:abcd", *SLOW]
    with subprocess.Popen(
        [*CLI, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as proc:
        while not out.exists() or len(out.read_text().splitlines()) < 3:
            time.sleep(0.02)
        proc.kill()
        proc.wait(timeout=30)
    before = results(out)
    assert 3 <= len(before) < 8
    resumed = run(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    records = results(out)
    indices = [r["index"] for r in records]
    assert sorted(indices) == list(range(8))  # each input exactly once
    assert records[: len(before)] == before  # finished work untouched


def _read_pty(fd: int, proc: subprocess.Popen[bytes]) -> bytes:
    data = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 10)
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
    return data


def test_progress_bar_shows_on_a_terminal(tmp_path: Path) -> None:
    prompts, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write_prompts(prompts, 4)
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [*CLI, "batch", str(prompts), "-o", str(out), "-m", "fake:abc", "--option", "delay=0.03"],
        stdin=child, stdout=child, stderr=child,
    )  # fmt: skip
    os.close(child)
    screen = _read_pty(main, proc).decode()
    os.close(main)
    assert proc.returncode == 0
    assert "\r[" in screen and "/s" in screen and "ETA" in screen and "4/4" in screen


def test_text_on_a_terminal_ends_with_a_newline() -> None:
    main, child = pty.openpty()
    proc = subprocess.Popen([*CLI, "p", "-m", "fake:hey"], stdin=child, stdout=child, stderr=child)
    os.close(child)
    screen = _read_pty(main, proc).decode()
    os.close(main)
    assert screen.replace("\r", "").endswith("hey\n")
