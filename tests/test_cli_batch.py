"""``lmstream batch`` input files as a real process: per-line settings, keys that pass
through, and ``--resume`` with changed inputs and failed rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "lmstream", "batch"]


def batch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, check=False)


def write(path: Path, *lines: Any) -> None:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))


def results(path: Path) -> dict[int, dict[str, Any]]:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    by_index = {r["index"]: r for r in records}
    assert len(by_index) == len(records)  # one line per input
    return by_index


def test_per_line_settings_are_honoured(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write(
        inputs,
        {"prompt": "a"},
        {"prompt": "b", "max_tokens": 2},
        {"prompt": "c", "stop": ["d"]},
        {"prompt": "d", "temperature": 0.5, "seed": 3, "max_tokens": 1},
    )
    result = batch(str(inputs), "-o", str(out), "-m", "fake:abcdef", "--max-tokens", "4")
    assert result.returncode == 0, result.stderr
    texts = {i: r["text"] for i, r in results(out).items()}
    assert texts == {0: "abcd", 1: "ab", 2: "abc", 3: "a"}  # the line wins over the option


def test_a_bad_per_line_setting_is_that_line_s_error(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write(inputs, {"prompt": "a", "max_tokens": -1}, {"prompt": "b"})
    result = batch(str(inputs), "-o", str(out), "-m", "fake:ab")
    assert result.returncode == 1
    records = results(out)
    assert records[0]["error"]["type"] == "InvalidInputError"
    assert records[1]["text"] == "ab"


def test_extra_keys_pass_through_to_the_result(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write(inputs, {"id": "q1", "prompt": "a", "meta": {"source": "x"}}, "plain")
    assert batch(str(inputs), "-o", str(out), "-m", "fake:ok").returncode == 0
    records = results(out)
    assert records[0] == {
        "index": 0,
        "id": "q1",
        "prompt": "a",
        "meta": {"source": "x"},
        "text": "ok",
        "finish_reason": "stop",
        "usage": records[0]["usage"],
    }
    assert set(records[1]) == {"index", "prompt", "text", "finish_reason", "usage"}


def test_an_input_may_not_use_a_result_key(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write(inputs, {"prompt": "a", "text": "x"})
    result = batch(str(inputs), "-o", str(out), "-m", "fake:ok")
    assert result.returncode == 1
    assert result.stderr == (
        "lmstream: error: InvalidInputError: line 1: 'text' names a result key\n"
    )


def test_resume_stops_when_an_input_changed(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write(inputs, "first", "second")
    assert batch(str(inputs), "-o", str(out), "-m", "fake:ok").returncode == 0
    before = out.read_text()
    write(inputs, "first", "changed", "third")
    result = batch(str(inputs), "-o", str(out), "-m", "fake:ok", "--resume")
    assert result.returncode == 1
    assert "input 1 changed since its result was written" in result.stderr
    assert "'changed'" in result.stderr and "new file" in result.stderr
    assert result.stderr.count("\n") == 1
    assert out.read_text() == before  # nothing was run or written


def test_a_failed_row_run_again_replaces_its_old_row(tmp_path: Path) -> None:
    inputs, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write(inputs, {"prompt": "a", "max_tokens": -1}, {"prompt": "b"})
    assert batch(str(inputs), "-o", str(out), "-m", "fake:ok").returncode == 1
    finished = results(out)[1]
    again = batch(str(inputs), "-o", str(out), "-m", "fake:ok", "--resume")
    assert again.returncode == 1  # it failed again: still one row for it
    assert results(out)[0]["error"]["type"] == "InvalidInputError"
    write(inputs, {"prompt": "a", "max_tokens": 1}, {"prompt": "b"})  # the line is fixed
    fixed = batch(str(inputs), "-o", str(out), "-m", "fake:ok", "--resume")
    assert fixed.returncode == 0, fixed.stderr
    records = results(out)
    assert sorted(records) == [0, 1]
    assert records[0]["text"] == "o" and records[1] == finished
