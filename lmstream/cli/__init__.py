"""The ``lmstream`` command."""

from lmstream.cli.stream import main

__all__ = ["main"]
