"""``lmstream batch --ray`` and ``lmstream.ray_data``: bulk generation on Ray Data, on a
local Ray cluster (CPU only) that this module starts and shuts down. The backends are
real loopback servers that fail a share of requests with 5xx, before the first chunk and
mid-stream; every row must end in the output exactly once, and a resume run must redo
only the failed rows."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from helpers import wait_until
from servers.scripted import Reply, ScriptedServer, Send, echo, error, frames, sse

from lmstream import InvalidInputError, Router
from lmstream.cli import main
from lmstream.ray_data import batch, finished_keys, generate

ROWS = 300
THIN = {"num_cpus": 0.5}  # an actor that waits on HTTP


class Injector:
    """Answers ``"row N ..."`` prompts by N's last digit: 3 always a 503, 5 a 502 on its
    first attempt only (a retry then succeeds), 7 a 5xx error event after two words, 9 a
    connection closed after two words; every other row, and every row once ``healed``, is
    echoed back. Counts the requests per prompt."""

    def __init__(self) -> None:
        self.healed = False
        self.delay = 0.0
        """Seconds before each frame of an echo."""
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, body: Any) -> Reply:
        prompt = str(body["prompt"])
        with self._lock:
            self.requests[prompt] += 1
            attempt = self.requests[prompt]
        kind = int(prompt.split()[1]) % 10
        words = [w + " " for w in prompt.split(" ")][:2]
        if self.healed or kind not in (3, 5, 7, 9) or (kind == 5 and attempt > 1):
            reply = echo(body)
            reply.steps = [Send(s.data, self.delay) for s in reply.steps if isinstance(s, Send)]
            return reply
        if kind in (3, 5):
            return error(503 if kind == 3 else 502, "overloaded")
        head = [Send(p) for p in frames(words, finish_reason=None, usage=None, done=False)]
        if kind == 7:
            failure = {"error": {"message": "engine died", "type": "server_error", "code": 500}}
            head.append(Send(sse(failure, done=False)))
        return Reply(headers={"content-type": "text/event-stream"}, steps=head)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(  # four logical CPUs: two actors and the writes, on however many cores
        num_cpus=4, include_dashboard=False, log_to_driver=False,
        object_store_memory=100 * 2**20,  # the default takes 30% of the machine's memory
    )  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def servers() -> Iterator[list[ScriptedServer]]:
    with ScriptedServer() as one, ScriptedServer() as two:
        yield [one, two]


@pytest.fixture
def injector(servers: list[ScriptedServer]) -> Iterator[Injector]:
    injector = Injector()
    for server in servers:
        server.reset_log()
        server.handler = injector
    yield injector
    for server in servers:
        server.reset_log()


def rows_in(output: Path) -> list[dict[str, Any]]:
    return [
        json.loads(ln) for p in sorted(output.glob("*.jsonl")) for ln in p.read_text().splitlines()
    ]


def lines_in(output: Path) -> int:
    """Complete lines written so far (a file being written may end in a torn one)."""
    return sum(p.read_bytes().count(b"\n") for p in output.glob("*.jsonl"))


def prompt(n: int) -> str:
    return f"row {n} please echo"


def test_every_row_gets_its_key_text_and_usage_from_the_fake_model(
    cluster: None, tmp_path: Path
) -> None:
    items = [{"id": f"q{n}", "prompt": prompt(n), "max_tokens": 1 if n % 4 == 0 else None,
              "topic": n % 3} for n in range(60)]  # fmt: skip
    dataset = ray.data.from_items(items, override_num_blocks=1)  # one block: split for actors
    summary = batch(
        dataset, "fake:Bubbles rise.", output=tmp_path, key="id", actors=2, batch_size=4,
        ray_options=THIN,
        options={"chunking": "word"},
    )  # fmt: skip
    rows = rows_in(tmp_path)
    assert (summary.finished, summary.failed, summary.skipped) == (60, 0, 0)
    assert sorted(r["id"] for r in rows) == sorted(f"q{n}" for n in range(60))
    for row in rows:
        n = int(row["id"][1:])
        assert (row["prompt"], row["topic"], row["error"]) == (prompt(n), n % 3, None)
        short = n % 4 == 0  # its own max_tokens
        assert row["text"] == ("Bubbles " if short else "Bubbles rise.")
        assert row["finish_reason"] == ("length" if short else "stop")
        assert row["outcome"] == "finished" and row["usage"]["completion_tokens"] == 2 - short
    assert len(list(tmp_path.glob("*.jsonl"))) > 1  # written block by block


def test_5xx_from_the_backends_leaves_every_row_once_and_a_resume_redoes_only_the_failed(
    cluster: None, servers: list[ScriptedServer], injector: Injector, tmp_path: Path
) -> None:
    router = functools.partial(
        Router, [s.url for s in servers], model="scripted", eject_after=10**6
    )
    run = functools.partial(
        batch, [prompt(n) for n in range(ROWS)], router, output=tmp_path, actors=2,
        concurrency=8, ray_options=THIN,
    )  # fmt: skip
    summary = run()
    rows = rows_in(tmp_path)
    assert sorted(r["index"] for r in rows) == list(range(ROWS))
    failing = {n for n in range(ROWS) if n % 10 in (3, 7, 9)}
    assert {r["index"] for r in rows if r["outcome"] == "failed"} == failing
    assert (summary.finished, summary.failed) == (ROWS - len(failing), len(failing))
    for row in rows:
        n = row["index"]
        if n in failing:
            assert row["text"] == ("" if n % 10 == 3 else f"row {n} ")
            assert row["error"]["type"] and row["error"]["message"]
            assert "503" in row["error"]["message"] or n % 10 != 3
        else:
            assert row["text"] == prompt(n) + " " and row["error"] is None
            assert injector.requests[prompt(n)] == (2 if n % 10 == 5 else 1)

    injector.healed = True
    before = Counter(injector.requests)
    summary = run(resume=True)
    again = injector.requests - before
    assert set(again) == {prompt(n) for n in failing} and set(again.values()) == {1}
    rows = rows_in(tmp_path)
    assert sorted(r["index"] for r in rows) == list(range(ROWS))
    assert all(r["outcome"] == "finished" and r["text"] == prompt(r["index"]) + " " for r in rows)
    assert (summary.finished, summary.failed, summary.skipped) == (ROWS, 0, ROWS - len(failing))


def test_the_command_line_runs_a_file_on_ray_and_resumes_it(
    cluster: None, servers: list[ScriptedServer], injector: Injector, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    source = tmp_path / "prompts.jsonl"
    source.write_text(
        "".join(json.dumps({"prompt": prompt(n), "id": f"p{n}"}) + "\n" for n in range(20))
    )
    out = tmp_path / "out"
    argv = ["batch", "--ray", str(source), "-o", str(out), "-m", "openai:scripted", "-c", "4",
            "--option", f'base_url="{servers[0].url}"', "--option", "max_retries=1",
            "--option", "retry_backoff=0.01"]  # fmt: skip
    assert main(argv) == 1  # rows 3, 7, 9, 13, 17 and 19 failed
    assert "14 finished, 6 failed" in capsys.readouterr().err
    injector.healed = True
    assert main([*argv, "--resume"]) == 0
    assert "20 finished, 0 failed (14 had finished before)" in capsys.readouterr().err
    rows = sorted(rows_in(out), key=lambda r: r["index"])
    assert [(r["index"], r["id"], r["text"]) for r in rows] == [
        (n, f"p{n}", prompt(n) + " ") for n in range(20)
    ]


def test_a_job_killed_mid_run_resumes_without_redoing_or_repeating_a_row(
    cluster: None, servers: list[ScriptedServer], injector: Injector, tmp_path: Path
) -> None:
    injector.healed, injector.delay = True, 0.05
    source, out = tmp_path / "prompts.txt", tmp_path / "out"
    source.write_text("".join(prompt(n) + "\n" for n in range(ROWS)))
    argv = ["batch", "--ray", str(source), "-o", str(out), "-m", "openai:scripted", "-c", "4",
            "--option", f'base_url="{servers[0].url}"']  # fmt: skip
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    with open(tmp_path / "job.log", "wb") as log:
        job = subprocess.Popen([sys.executable, "-m", "lmstream", *argv], env=env, stderr=log)
    try:
        assert wait_until(lambda: lines_in(out) >= 32, timeout=180)
    finally:
        job.kill()
        job.wait(timeout=60)
    assert wait_until(lambda: servers[0].active == 0, timeout=60)
    assert wait_until(  # the killed job's actors are gone and their CPUs free
        lambda: ray.available_resources().get("CPU") == ray.cluster_resources()["CPU"], 60
    )
    done_before = {prompt(n) for n in finished_keys(out)}
    assert 32 <= len(done_before) < ROWS
    before = Counter(injector.requests)

    injector.delay = 0.0
    assert main([*argv, "--resume"]) == 0
    again = injector.requests - before
    assert not set(again) & done_before and set(again.values()) == {1}
    assert max(injector.requests.values()) <= 2  # at most one cut by the kill, then one more
    rows = sorted(rows_in(out), key=lambda r: r["index"])
    assert [(r["index"], r["outcome"], r["text"]) for r in rows] == [
        (n, "finished", prompt(n) + " ") for n in range(ROWS)
    ]


def test_fail_on_error_stops_the_job(
    cluster: None, servers: list[ScriptedServer], injector: Injector, tmp_path: Path
) -> None:
    with pytest.raises(Exception, match="overloaded"):
        batch(
            [prompt(3)], "openai:scripted", output=tmp_path, fail_on_error=True,
            options={"base_url": servers[0].url, "max_retries": 0}, ray_options=THIN,
        )  # fmt: skip


def test_a_dataset_needs_its_key_and_prompt_columns(cluster: None, tmp_path: Path) -> None:
    dataset = ray.data.from_items([{"text": "hi"}])
    with pytest.raises(InvalidInputError, match="no 'index' column"):
        generate(dataset, "fake:x")
    with pytest.raises(InvalidInputError, match="'text' names a result column"):
        generate(dataset.add_column("index", lambda b: b["text"]), "fake:x", prompt="text")


def test_the_scale_out_page_s_example_prints_what_the_page_shows(
    cluster: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = (Path(__file__).parent.parent / "docs" / "scale-out.md").read_text()
    section = page.split("## Bulk on Ray Data")[1]
    code = section.split("```python\n")[1].split("```")[0]
    shown = section.split("prints\n\n```text\n")[1].split("```")[0]
    printed: list[str] = []  # Ray Data prints its progress to stdout too

    def record(*values: Any) -> None:
        printed.append(" ".join(map(str, values)) + "\n")

    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/scale-out.md", "exec"), {"print": record})
    assert "".join(printed) == shown
