"""docs/environment.md lists every environment variable the package reads, and no other."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "environment.md"
# The package's own variables and those of the standards it follows (OpenAI, OpenTelemetry).
VARIABLE = re.compile(r"^(?:OPENAI|LMSTREAM|OTEL)_[A-Z0-9_]+$")


def _read_variables() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "lmstream").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.update(VARIABLE.findall(node.value))
    return found


def _documented() -> set[str]:
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    return {line.split("`")[1] for line in lines if line.startswith("| `")}


def test_the_page_lists_every_variable_the_package_reads() -> None:
    read, documented = _read_variables(), _documented()
    assert {"OPENAI_API_KEY", "OPENAI_BASE_URL", "LMSTREAM_API_KEY", "LMSTREAM_API_KEYS"} <= read
    assert read - documented == set(), "read by the package but not on the page"
    assert documented - read == set(), "on the page but never read"


def test_the_page_is_in_the_site() -> None:
    assert "environment.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
