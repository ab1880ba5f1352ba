"""Check that every sync/async twin in the package is a thin shell.

A twin is a pair of functions or methods in one scope (a module, or a class) named
``x``/``ax`` (``_x``/``_ax`` too) or ``x``/``x_async``, both defined there. Each side
may have at most ``--limit`` lines (15): the lines of its body, not counting its
signature, docstring, blank lines or comment-only lines, so that line-wrapped
signatures do not count against it. What the two sides share belongs in plain code
they both call.

    python tools/twins.py            # exit 1 and list the twins over the limit
    python tools/twins.py --list     # every twin and its size
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lmstream"
LIMIT = 15

Function = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True)
class Side:
    """One side of a twin."""

    path: str
    scope: str
    name: str
    line: int
    size: int

    def __str__(self) -> str:
        where = f"{self.scope}.{self.name}" if self.scope else self.name
        return f"{self.path}:{self.line}: {where} ({self.size} lines)"


def body_size(fn: Function, source: list[str]) -> int:
    """The lines of ``fn``'s body: no signature, docstring, blank or comment-only lines."""
    body = fn.body
    first = body[0]
    is_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    if is_doc and isinstance(first.value.value, str) and len(body) > 1:  # type: ignore[attr-defined]
        first = body[1]
    elif is_doc and len(body) == 1:
        return 0
    lines = source[first.lineno - 1 : fn.end_lineno]
    return sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))


def _scopes(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, list[Function]]]:
    """Each scope (module, class, function) with the functions defined directly in it."""
    body = getattr(tree, "body", [])
    yield prefix, [node for node in body if isinstance(node, Function)]
    for node in body:
        if isinstance(node, (ast.ClassDef, *Function.__args__)):  # type: ignore[attr-defined]
            yield from _scopes(node, f"{prefix}.{node.name}" if prefix else node.name)


def async_names(name: str) -> list[str]:
    """The names the async twin of ``name`` may have."""
    bare = name.lstrip("_")
    under = name[: len(name) - len(bare)]
    return [f"{under}a{bare}", f"{name}_async"]


def twins_in(path: Path) -> Iterator[tuple[Side, Side]]:
    """Every twin defined in the module at ``path``."""
    text = path.read_text()
    source = text.splitlines()
    rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    for scope, functions in _scopes(ast.parse(text)):
        by_name = {fn.name: fn for fn in functions}
        for fn in functions:
            for other in async_names(fn.name):
                twin = by_name.get(other)
                if twin is None:
                    continue
                sides = [
                    Side(rel, scope, f.name, f.lineno, body_size(f, source)) for f in (fn, twin)
                ]
                yield sides[0], sides[1]


def all_twins(root: Path = PACKAGE) -> list[tuple[Side, Side]]:
    """Every twin in the package."""
    return [pair for path in sorted(root.rglob("*.py")) for pair in twins_in(path)]


def too_long(pairs: list[tuple[Side, Side]], limit: int = LIMIT) -> list[Side]:
    """The sides over ``limit`` lines."""
    return [side for pair in pairs for side in pair if side.size > limit]


def main(argv: list[str] | None = None) -> int:
    """``python tools/twins.py``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=LIMIT, help="lines per side (15)")
    parser.add_argument("--list", action="store_true", help="list every twin and its size")
    args = parser.parse_args(argv)
    pairs = all_twins()
    if args.list:
        for sync, asyn in pairs:
            print(f"{sync}  |  {asyn.name} ({asyn.size} lines)")
    over = too_long(pairs, args.limit)
    for side in over:
        print(f"{side}: a twin over {args.limit} lines", file=sys.stderr)
    if not args.list:
        print(f"twins: {len(pairs)} pairs, {len(over)} sides over {args.limit} lines")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
