"""``python -m bench``: every benchmark module present, the core comparison first.

    python -m bench                        # bench.core, then bench.llamacpp and bench.openai
    python -m bench --quick                # other options go to bench.core
    python -m bench --modules core,openai  # a subset of the modules

The other modules run with their own defaults (``python -m bench.NAME --help``). A module
whose dependencies are missing is skipped with the reason.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import traceback

MODULES = ("core", "llamacpp", "openai", "server")


def _present(name: str) -> bool:
    return importlib.util.find_spec(f"bench.{name}") is not None


def _run(name: str, argv: list[str]) -> bool:
    """Import ``bench.NAME`` and call its ``main()``; whether it succeeded."""
    try:
        module = importlib.import_module(f"bench.{name}")
    except ImportError as exc:
        print(f"bench.{name}: skipped ({exc})")
        return True
    entry = getattr(module, "main", None)
    if entry is None:
        print(f"bench.{name}: skipped (no main())")
        return True
    saved, sys.argv = sys.argv, [f"python -m bench.{name}", *argv]
    try:
        code = entry()
    except SystemExit as exc:
        code = exc.code
    except Exception:
        traceback.print_exc()
        return False
    finally:
        sys.argv = saved
    return code in (None, 0)


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmark modules in turn; non-zero if one of them failed."""
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Run every benchmark module present."
    )
    parser.add_argument("--modules", help="comma-separated modules: " + ",".join(MODULES))
    args, rest = parser.parse_known_args(argv)
    names = args.modules.split(",") if args.modules else list(MODULES)
    failed = []
    for name in names:
        if not _present(name):
            if args.modules:
                print(f"bench.{name}: no such module")
                failed.append(name)
            continue
        print(f"\n## bench.{name}\n", flush=True)
        if not _run(name, rest if name == "core" else []):
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
