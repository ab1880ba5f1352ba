"""Terminal manners for the CLI: a spinner and a progress bar on stderr (only on a TTY),
and an output channel that writes UTF-8 and survives a closed pipe."""

from __future__ import annotations

import itertools
import os
import signal
import sys
import threading
import time
from types import TracebackType
from typing import Any, TextIO

__all__ = ["Output", "Progress", "Spinner"]


class Spinner:
    """A spinner with a message on stderr while something loads; silent off a TTY."""

    def __init__(self, message: str, stream: TextIO | None = None) -> None:
        self.message = message
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _spin(self) -> None:
        for frame in itertools.cycle("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"):
            if self._stop.wait(0.1):
                break
            self.stream.write(f"\r{frame} {self.message}")
            self.stream.flush()

    def start(self) -> Spinner:
        """Start spinning (no-op off a TTY)."""
        if self.enabled and self._thread is None:
            self._thread = threading.Thread(target=self._spin, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop and clear the line."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self.stream.write("\r\033[K")
            self.stream.flush()

    def __enter__(self) -> Spinner:
        return self.start()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Progress:
    """``[=====>    ] 12/100  3.2/s  ETA 27s`` on stderr, redrawn in place on a TTY."""

    def __init__(self, total: int, done: int = 0, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = done
        self.started = done
        self.failed = 0
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.t0 = time.monotonic()

    def line(self) -> str:
        """The progress line as text."""
        width = 24
        filled = int(width * self.done / self.total) if self.total else width
        bar = "=" * filled + (">" if filled < width else "") + " " * (width - filled - 1)
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = (self.done - self.started) / elapsed
        left = self.total - self.done
        eta = f"{left / rate:.0f}s" if rate > 0 else "?"
        failed = f"  {self.failed} failed" if self.failed else ""
        return f"[{bar[:width]}] {self.done}/{self.total}  {rate:.1f}/s  ETA {eta}{failed}"

    def advance(self, failed: bool = False) -> None:
        """One more input finished."""
        self.done += 1
        self.failed += failed
        if self.tty:
            self.stream.write("\r" + self.line())
            self.stream.flush()

    def finish(self) -> None:
        """Leave the final line on stderr."""
        self.stream.write(("\r" if self.tty else "") + self.line() + "\n")
        self.stream.flush()


class Output:
    """UTF-8 text to stdout, flushed per write; ``closed`` turns true when the reader left.

    While it is installed (``with output:``), Ctrl-C raises ``KeyboardInterrupt`` as
    usual, except in the middle of a write, where it waits for the write to finish:
    what was printed and what was counted stay the same.
    """

    def __init__(self) -> None:
        self.closed = False
        self.wrote = False
        self.writes = 0
        self._writing = False
        self._pending = False
        self._previous: Any = None

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._writing:
            self._pending = True
        else:
            raise KeyboardInterrupt

    def __enter__(self) -> Output:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def write(self, text: str) -> None:
        """Write and flush; a closed pipe is remembered, not raised."""
        if self.closed or not text:
            return
        self._writing = True
        try:
            self._write(text)
            self.writes += 1
        finally:
            self._writing = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt

    def _write(self, text: str) -> None:
        try:
            sys.stdout.buffer.write(text.encode("utf-8"))
            sys.stdout.buffer.flush()
            self.wrote = True
        except BrokenPipeError:
            self.closed = True
            # make the interpreter's final flush harmless: stdout now goes nowhere
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
