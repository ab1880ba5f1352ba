"""What a resume of ``lmstream.ray_data.batch`` reads from an output directory, without a
Ray cluster: finished rows count, failed rows, repeated keys and a line torn by a kill
are taken out of the files, all at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmstream import InvalidInputError
from lmstream.ray_data import Summary, batch, finished_keys, summarize


def line(index: int, outcome: str = "finished") -> str:
    error = None if outcome == "finished" else {"type": "APIError", "message": "503"}
    return json.dumps({"index": index, "outcome": outcome, "text": "t", "error": error}) + "\n"


def indices(path: Path) -> list[Any]:
    return [json.loads(ln)["index"] for ln in path.read_text().splitlines()]


def test_failed_rows_repeated_keys_and_a_torn_line_are_taken_out(tmp_path: Path) -> None:
    one, two = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    one.write_text(line(0) + line(1, "failed") + line(2) + '{"index": 3, "outc')
    two.write_text(line(2) + line(4))
    assert finished_keys(tmp_path) == {0, 2, 4}
    assert (indices(one), indices(two)) == ([0, 2], [4])
    assert not list(tmp_path.glob("*.partial"))
    assert summarize(tmp_path, skipped=3) == Summary(finished=3, failed=0, skipped=3)


def test_a_file_left_with_nothing_finished_goes(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(line(0, "failed") + line(1, "failed"))
    (tmp_path / "b.jsonl").write_text(line(2))
    assert summarize(tmp_path) == Summary(finished=1, failed=2)
    assert finished_keys(tmp_path) == {2}
    assert [p.name for p in tmp_path.iterdir()] == ["b.jsonl"]


def test_keys_are_read_from_the_named_column(tmp_path: Path) -> None:
    rows = [{"id": "x", "outcome": "finished"}, {"id": "y", "outcome": "failed"}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert finished_keys(tmp_path, "id") == {"x"}


def test_an_untouched_file_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    path.write_text(line(0) + line(1))
    before = path.stat().st_mtime_ns, path.stat().st_ino
    assert finished_keys(tmp_path) == {0, 1}
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


def test_an_output_with_results_needs_resume_and_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(line(0))
    with pytest.raises(InvalidInputError, match="resume=True"):
        batch(["p"], "fake:x", output=tmp_path)
    with pytest.raises(InvalidInputError, match="is a file"):
        batch(["p"], "fake:x", output=tmp_path / "a.jsonl")
