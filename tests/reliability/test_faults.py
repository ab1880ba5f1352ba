"""Every fault a server can inject ends each stream, sync and async, in exactly one typed
outcome: what was handed on is kept, retried answers are not duplicated, and the table in
``docs/reliability.md`` is the one this run produces.

``LMSTREAM_WRITE_DOCS=1 pytest tests/reliability/test_faults.py`` rewrites that table.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import free_port
from reliability.faults import (
    CASES,
    FLAVOURS,
    PROVIDERS,
    Case,
    Cell,
    expected_outcome,
    run_cell,
    table,
)
from servers.raw import RawServer
from servers.scripted import ScriptedServer

from lmstream import GenerationError

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
BLOCK = re.compile(r"(<!-- faults:start -->\n)(.*?)(\n<!-- faults:end -->)", re.DOTALL)
CELLS: dict[tuple[str, str, str], Cell] = {}


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as scripted:
        yield scripted


@pytest.fixture(scope="module")
def raw() -> Iterator[RawServer]:
    with RawServer() as server:
        yield server


@pytest.fixture(scope="module")
def refused() -> str:
    """A base URL nothing listens on."""
    return f"http://127.0.0.1:{free_port()}/v1"


def cell(server: ScriptedServer, refused: str, case: Case, provider: str, flavour: str,
         raw: RawServer) -> Cell:  # fmt: skip
    """The cell, run once per test session."""
    key = (case.name, provider, flavour)
    if key not in CELLS:
        CELLS[key] = run_cell(server, refused, case, provider, flavour, raw)
    return CELLS[key]


@pytest.mark.parametrize("flavour", FLAVOURS)
@pytest.mark.parametrize("provider", list(PROVIDERS))
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_fault_ends_in_one_typed_outcome(
    server: ScriptedServer, refused: str, raw: RawServer, case: Case, provider: str, flavour: str
) -> None:
    got = cell(server, refused, case, provider, flavour, raw)
    assert got.outcome == expected_outcome(case, provider), got.error
    assert got.text == case.text  # all of it when it worked, no duplicate from a retry
    assert got.requests == case.requests
    if got.error is None:
        assert got.finish_reason == "stop"
        assert got.ends == ["finished"]
    else:
        assert isinstance(got.error, GenerationError)
        assert got.error.partial_text == got.text  # what was handed on is kept
        assert got.ends == ["failed"]


def test_timeouts_say_which_limit_ran_out(
    server: ScriptedServer, refused: str, raw: RawServer
) -> None:
    phases = {"stall past the idle limit": "idle", "no first chunk in time": "first_token",
              "stall, close-delimited body": "idle",
              "no first chunk, close-delimited body": "first_token"}  # fmt: skip
    for case in CASES:
        if case.name in phases:
            for provider in PROVIDERS:
                for flavour in FLAVOURS:
                    got = cell(server, refused, case, provider, flavour, raw)
                    assert got.phase == phases[case.name]


def test_the_published_table_is_this_run(
    server: ScriptedServer, refused: str, raw: RawServer
) -> None:
    cells = {(c.name, p, f): cell(server, refused, c, p, f, raw)
             for c in CASES for p in PROVIDERS for f in FLAVOURS}  # fmt: skip
    rendered = table(cells)
    page = PAGE.read_text(encoding="utf-8")
    match = BLOCK.search(page)
    assert match is not None, f"{PAGE} has no <!-- faults:start --> ... <!-- faults:end --> block"
    if os.environ.get("LMSTREAM_WRITE_DOCS") == "1":
        PAGE.write_text(BLOCK.sub(lambda m: m[1] + rendered + m[3], page), encoding="utf-8")
        return
    assert match[2] == rendered, "stale table: rerun with LMSTREAM_WRITE_DOCS=1\n" + rendered
