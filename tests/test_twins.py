"""Every sync/async twin in the package is a thin shell (``tools/twins.py``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "lmstream_twins_tool", ROOT / "tools" / "twins.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


twins = _tool()


def test_every_twin_in_the_package_is_at_most_15_lines() -> None:
    pairs = twins.all_twins()
    names = {(a.scope, a.name, b.name) for a, b in pairs}
    assert ("", "stream", "astream") in names  # the generation loop is among those checked
    assert ("Run", "settle", "asettle") in names
    assert twins.too_long(pairs) == []


def test_a_long_twin_is_found_and_its_signature_docstring_and_comments_not_counted(
    tmp_path: Path,
) -> None:
    body = "".join(f"        x{i} = {i}\n" for i in range(16))
    (tmp_path / "mod.py").write_text(
        'def go(\n    a,\n    b,\n):\n    """Doc."""\n    return a\n\n\n'
        "async def ago(a, b):\n    # a comment\n\n    return b\n\n\n"
        f"class K:\n    def _run(self):\n{body}\n"
        "    async def _arun(self):\n        pass\n\n"
        "    def drain(self):\n        pass\n\n"
        f"    async def drain_async(self):\n{body}"
    )
    pairs = twins.all_twins(tmp_path)
    sizes = {(a.scope, a.name, b.name): (a.size, b.size) for a, b in pairs}
    assert sizes == {
        ("", "go", "ago"): (1, 1),
        ("K", "_run", "_arun"): (16, 1),
        ("K", "drain", "drain_async"): (1, 16),
    }
    assert [side.name for side in twins.too_long(pairs)] == ["_run", "drain_async"]
    assert twins.too_long(pairs, limit=16) == []
