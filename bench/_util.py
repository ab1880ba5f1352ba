"""Timing helpers shared by the benchmarks: interleaved rounds, robust statistics, tables.

The machine is shared and noisy, so nothing is measured alone. ``interleave`` runs every
case of a comparison once per round, rotating the order each round, so that drift hits
all of them alike. Absolute figures are the best round (``best``); ratios are the median
of the per-round ratios (``ratio``), each taken between runs made back to back.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import io
import math
import os
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

__all__ = [
    "Case",
    "Samples",
    "async_case",
    "calibrate",
    "fmt_ratio",
    "fmt_time",
    "import_breakdown",
    "import_samples",
    "interleave",
    "profile_case",
    "render",
    "sync_case",
    "verdict",
]

Case = Callable[[int], object]
"""Runs the measured operation ``n`` times."""


def sync_case(op: Callable[[], object]) -> Case:
    """A case that calls ``op`` n times."""

    def run(n: int) -> None:
        for _ in range(n):
            op()

    return run


def async_case(loop: asyncio.AbstractEventLoop, op: Callable[[], Awaitable[object]]) -> Case:
    """A case that awaits ``op()`` n times inside one ``run_until_complete``."""

    async def repeat(n: int) -> None:
        for _ in range(n):
            await op()

    def run(n: int) -> None:
        loop.run_until_complete(repeat(n))

    return run


def _timed(case: Case, n: int, clock: Callable[[], float] = time.perf_counter) -> float:
    gc.collect()  # garbage of the previous case is not charged to this one
    start = clock()
    case(n)
    return clock() - start


def calibrate(case: Case, target: float) -> int:
    """How many operations make one sample last about ``target`` seconds (warms up too)."""
    _timed(case, 1)
    elapsed = _timed(case, 1)
    return max(1, min(1_000_000, math.ceil(target / max(elapsed, 1e-9))))


@dataclass
class Samples:
    """Seconds per unit of work, one value per round, for each case."""

    per_unit: dict[str, list[float]]

    def __contains__(self, name: str) -> bool:
        return name in self.per_unit

    def best(self, name: str) -> float:
        """The fastest round."""
        return min(self.per_unit[name])

    def median(self, name: str) -> float:
        """The median round."""
        return statistics.median(self.per_unit[name])

    def ratio(self, name: str, other: str) -> float:
        """Median over rounds of ``name / other``, both measured in the same round."""
        pairs = zip(self.per_unit[name], self.per_unit[other], strict=True)
        return statistics.median(a / b for a, b in pairs)


def interleave(
    cases: dict[str, Case],
    *,
    units: int,
    rounds: int,
    target: float,
    clock: Callable[[], float] = time.perf_counter,
) -> Samples:
    """Run every case once per round, rotating the order; seconds per unit per round
    (by ``clock``: ``time.thread_time`` counts only this thread's CPU, which a busy
    machine disturbs less, for cases that do all their work on it)."""
    numbers = {name: calibrate(case, target) for name, case in cases.items()}
    names = list(cases)
    out: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            n = numbers[name]
            out[name].append(_timed(cases[name], n, clock) / (n * units))
    return Samples(out)


def profile_case(case: Case, n: int, top: int = 30) -> str:
    """cProfile ``case(n)``: the ``top`` functions by own time, as text."""
    profiler = cProfile.Profile()
    profiler.runcall(case, n)
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return out.getvalue()


def fmt_time(seconds: float | None, scale: float = 1e6) -> str:
    """``seconds`` in µs (or another unit via ``scale``), three significant digits."""
    if seconds is None:
        return "—"
    value = seconds * scale
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def fmt_ratio(ratio: float | None, *, fraction: bool = True) -> str:
    """``1/12.3`` for a fraction (``1.40x`` from one up), or ``12.3x`` as a multiple."""
    if ratio is None:
        return "—"
    if not fraction or ratio >= 1:
        return f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"
    inverse = 1 / ratio
    if abs(inverse - round(inverse)) < 1e-9:
        return f"1/{round(inverse)}"
    if inverse >= 100:
        return f"1/{inverse:.0f}"
    return f"1/{inverse:.1f}" if inverse >= 20 else f"1/{inverse:.2f}"


def verdict(ratio: float | None, limit: float | None) -> str:
    """PASS or FAIL against an upper limit; empty when there is nothing to judge."""
    if ratio is None or limit is None:
        return ""
    return "PASS" if ratio <= limit else "FAIL"


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], *, markdown: bool) -> str:
    """A plain-text (aligned) or Markdown table."""
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" if i < 2 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*headers), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*row) for row in rows]
    return "\n".join(lines)


# -- import time in fresh interpreters ------------------------------------------------------

_TIMED_IMPORT = (
    "import sys, time; t = time.perf_counter(); import {0}; "
    "print(time.perf_counter() - t, len(sys.modules))"
)


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    # bytecode is written and used, as it is for an installed package (pip compiles it):
    # with PYTHONDONTWRITEBYTECODE set, a module edited since its .pyc was written would be
    # compiled from source on every import and counted as import time
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=True, env=env
    )


def import_samples(modules: dict[str, str], runs: int) -> tuple[Samples, dict[str, int]]:
    """Seconds to import each module (by case name) in fresh interpreters, the order rotating
    each run; and how many modules each import adds."""
    per: dict[str, list[float]] = {name: [] for name in modules}
    counts: dict[str, int] = {}
    baseline = int(_python("-c", "import sys; print(len(sys.modules))").stdout)
    names = list(modules)
    for name in names:  # untimed: writes any bytecode that is missing or stale
        _python("-c", f"import {modules[name]}")
    for r in range(runs):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            seconds, loaded = _python("-c", _TIMED_IMPORT.format(modules[name])).stdout.split()
            per[name].append(float(seconds))
            counts[name] = int(loaded) - baseline
    return Samples(per), counts


def _importtime(code: str) -> list[tuple[int, str, int]]:
    """(depth, module, cumulative µs) per line of ``-X importtime``, in its order."""
    found = []
    for line in _python("-X", "importtime", "-c", code).stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            _, cumulative, name = line.split("|")
            depth = (len(name) - len(name.lstrip()) - 1) // 2
            found.append((depth, name.strip(), int(cumulative)))
    return found


def import_breakdown(module: str, top: int = 5) -> str:
    """``-X importtime``: the heaviest modules from outside ``module``'s package that it
    imports directly, with the cumulative time of each and the module importing it."""
    package = module.split(".")[0]
    pending: dict[int, list[tuple[str, int]]] = {}
    found: dict[str, tuple[int, str]] = {}
    for depth, name, micros in _importtime(f"import {module}"):
        children = pending.pop(depth + 1, [])
        if name.split(".")[0] == package:
            for child, spent in children:
                if child.split(".")[0] != package and spent > found.get(child, (0, ""))[0]:
                    found[child] = (spent, name)
        pending.setdefault(depth, []).append((name, micros))
    ranked = sorted(found.items(), key=lambda kv: -kv[1][0])[:top]
    return ", ".join(f"{child} {us / 1000:.1f} ms ({by})" for child, (us, by) in ranked)
