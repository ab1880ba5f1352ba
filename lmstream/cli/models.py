"""``lmstream models``: the providers, and whether each one can be loaded."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from lmstream import ProviderInfo, available_providers
from lmstream.cli._term import Output
from lmstream.cli.common import HelpFormatter

__all__ = ["parser", "run_models", "state_of"]


def parser() -> argparse.ArgumentParser:
    """The parser of ``lmstream models``."""
    return argparse.ArgumentParser(
        prog="lmstream models",
        description="List the providers a model id can name, and whether each is installed.",
        formatter_class=HelpFormatter,
    )


def state_of(info: ProviderInfo) -> str:
    """``installed``, what to install, or ``broken`` with the error its import raised."""
    if not info.installed:
        return f"needs: pip install 'lmstream[{info.extra}]'"
    try:
        info.factory()
    except Exception as exc:  # a plugin may fail in any way when imported
        return f"broken: {type(exc).__name__}: {exc}"
    return "installed"


def run_models(argv: Sequence[str]) -> int:
    """The ``lmstream models`` command."""
    parser().parse_args(argv)
    out = Output()
    for info in available_providers():
        out.write(f"{info.name:<10} {state_of(info):<12}  {info.description}\n")
    return 0
