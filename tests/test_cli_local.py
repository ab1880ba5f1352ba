"""The ``lmstream`` command on the embedded model, as a real process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

CLI = [sys.executable, "-m", "lmstream"]
SEP = "\x1f"  # a separator the model will not write
FIXED = ["--temperature", "0", "--seed", "7"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, check=False)


def test_streams_token_by_token_and_matches_the_json_result() -> None:
    prompt = "Write me a 1 verse song about sparkling water."
    streamed = run(prompt, "--max-tokens", "24", "--sep", SEP, *FIXED)
    assert streamed.returncode == 0, streamed.stderr
    pieces = streamed.stdout.split(SEP)
    assert pieces[-1] == "\n"  # the separator follows every chunk, then a final newline
    pieces[-1] = ""
    assert len(pieces) > 10  # many chunks, not one
    result = json.loads(run(prompt, "--max-tokens", "24", "--json", *FIXED).stdout)
    assert "".join(pieces) == result["text"]
    assert result["finish_reason"] in ("stop", "length")
    assert result["usage"]["completion_tokens"] <= 24 and not result["usage"]["estimated"]


def test_events_from_the_embedded_model() -> None:
    result = run("Say hello.", "--max-tokens", "6", "--events", "v2", *FIXED)
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [e["event"] for e in events]
    assert kinds[0] == "on_llm_start" and kinds[-1] == "on_llm_end"
    assert kinds.count("on_llm_stream") >= 2
    info = events[-1]["data"]["output"]["generations"][0][0]["generation_info"]
    assert info["usage"]["completion_tokens"] <= 6


def test_ctrl_c_stops_the_embedded_model() -> None:
    args = ["Write a very long story about the sea.", "--max-tokens", "400", *FIXED]
    with subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = proc.stdout.read(12)
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 130
    assert len(first + rest) > 0
    assert "stopped after" in err
    assert "Traceback" not in err


def test_a_closed_pipe_stops_the_embedded_model_quietly() -> None:
    args = ["Write a very long story about the sea.", "--max-tokens", "400", *FIXED]
    with subprocess.Popen([*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        assert len(proc.stdout.read(5)) == 5
        proc.stdout.close()
        assert proc.wait(timeout=60) == 0
        assert proc.stderr.read() == b""
