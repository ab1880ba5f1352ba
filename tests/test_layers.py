"""The package's shape: each module's ``__all__`` is true, and the one upward import the
layers allow (Runnable building the runnables above it) stays inside those constructors."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType

import lmstream

UPWARD = {"lmstream.compose", "lmstream.wrappers", "lmstream.functions"}
CONSTRUCTORS = {
    "__or__", "__ror__", "pipe", "assign", "bind", "with_config", "with_retry",
    "with_fallbacks", "coerce_to_runnable",
}  # fmt: skip


def modules() -> list[ModuleType]:
    names = [m.name for m in pkgutil.walk_packages(lmstream.__path__, "lmstream.")]
    return [lmstream, *(importlib.import_module(n) for n in names if n != "lmstream.__main__")]


def is_public(module: ModuleType) -> bool:
    return not any(part.startswith("_") for part in module.__name__.split("."))


def test_every_name_in_all_is_defined_there() -> None:
    checked = 0
    for module in modules():
        names = getattr(module, "__all__", None)
        if names is None:
            continue
        assert len(names) == len(set(names)), module.__name__
        missing = [n for n in names if not hasattr(module, n)]
        assert missing == [], f"{module.__name__}.__all__ names what it lacks: {missing}"
        checked += 1
    assert checked > 40


def test_public_modules_have_all() -> None:
    lacking = [m.__name__ for m in modules() if is_public(m) and not hasattr(m, "__all__")]
    assert lacking == []


def _upward_imports(tree: ast.AST) -> list[tuple[str, int, list[str]]]:
    """(module, line, enclosing function names) of every upward import."""
    found: list[tuple[str, int, list[str]]] = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            scope = [*scope, node.name]
        if isinstance(node, ast.ImportFrom) and node.module in UPWARD:
            found.append((node.module, node.lineno, scope))
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(tree, [])
    return found


def test_runnable_imports_upward_only_inside_its_constructors() -> None:
    source = Path(inspect.getfile(lmstream.runnable)).read_text()
    tree = ast.parse(source)
    type_checking = {
        n.lineno
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and ast.unparse(block.test) == "TYPE_CHECKING"
        for n in ast.walk(block)
        if isinstance(n, ast.ImportFrom)
    }
    imports = [i for i in _upward_imports(tree) if i[1] not in type_checking]
    assert len(imports) >= 5
    for module, line, scope in imports:
        assert scope and scope[-1] in CONSTRUCTORS, f"runnable.py:{line} imports {module}"


def test_every_module_of_the_package_stands_in_a_layer() -> None:
    import tomllib

    config = tomllib.loads((Path(lmstream.__file__).parent.parent / "pyproject.toml").read_text())
    contract = config["tool"]["importlinter"]["contracts"][0]
    placed = {name.strip() for layer in contract["layers"] for name in layer.split(":")}
    package = Path(lmstream.__file__).parent
    top = {p.stem for p in package.glob("*.py") if p.stem != "__init__"}
    top |= {p.parent.name for p in package.glob("*/__init__.py")}
    assert top - placed == set(), "a module no layer names escapes the import contract"
