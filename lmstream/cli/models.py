"""``lmstream models``: the providers, the kinds of model their ids name (``text``, and
``chat`` for ``lmstream chat -m``), and whether each one can be loaded."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from lmstream import ProviderInfo, available_providers
from lmstream.cli._term import Output
from lmstream.cli.common import HelpFormatter
from lmstream.registry import chat_only_providers, chat_providers

__all__ = ["kinds_of", "parser", "run_models", "state_of"]


def parser() -> argparse.ArgumentParser:
    """The parser of ``lmstream models``."""
    return argparse.ArgumentParser(
        prog="lmstream models",
        description="List the providers a model id can name, the kinds of model each gives\n"
        "(text for lmstream -m, chat for lmstream chat -m) and whether each is installed.",
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


def kinds_of(info: ProviderInfo, chat: list[str], text: bool = True) -> str:
    """``text``, ``text+chat`` when the provider's ids also name a chat model, or ``chat``
    for a chat-model plugin (``text`` false)."""
    if not text:
        return "chat"
    return "text+chat" if info.name in chat else "text"


def run_models(argv: Sequence[str]) -> int:
    """The ``lmstream models`` command."""
    parser().parse_args(argv)
    out, chat = Output(), chat_providers()
    every = [(info, True) for info in available_providers()]
    every += [(info, False) for info in chat_only_providers()]
    for info, text in sorted(every, key=lambda pair: pair[0].name):
        kinds = kinds_of(info, chat, text)
        out.write(f"{info.name:<10} {kinds:<9}  {state_of(info):<12}  {info.description}\n")
    return 0
