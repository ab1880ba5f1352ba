"""Bulk throughput: ``lmstream batch`` in one process against ``lmstream batch --ray``.

    python -m bench.ray_data                          # defaults below
    python -m bench.ray_data --rows 4000 --delay 0 --actors 2 --concurrency 16

The model is the fake one, ``--words`` words per answer, a word every ``--delay``
seconds (0: as fast as the machine goes, which measures each runner's own cost). Both
runners get the same number of streams at once: one process with ``actors * concurrency``,
or ``--actors`` Ray actors with ``--concurrency`` each. Rows per second over the whole
run; for Ray, once with the cluster's start and once without (the cluster is started
first, and each actor's start is counted).

``python -m bench`` runs it as its ``ray`` part (``measure``) and puts ``section`` on the
benchmarks page; without Ray installed the part is skipped and the page says why.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._util import render

__all__ = ["main", "measure", "section"]

SIZES = {"quick": 1000, "full": 4000}  # rows; the other settings are the command's defaults


def one_process(source: Path, out: Path, model: list[str], streams: int) -> float:
    command = [sys.executable, "-m", "lmstream", "batch", str(source), "-o", str(out / "one.jsonl"),
               "-c", str(streams), *model]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def on_ray(prompts: list[str], out: Path, model: list[str], args: argparse.Namespace) -> float:
    from lmstream.ray_data import batch

    options = {"chunking": "word", "delay": args.delay}
    start = time.perf_counter()
    summary = batch(
        prompts, model[1], output=out / "ray", actors=args.actors, concurrency=args.concurrency,
        options=options, ray_options={"num_cpus": 0.5},
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    assert summary.finished == len(prompts), summary
    return elapsed


def _ray() -> Any:
    """The ``ray`` module, or an ImportError that says what to install."""
    try:
        import ray

        import lmstream.ray_data  # noqa: F401  (Ray Data itself, and pyarrow)
    except ImportError as exc:
        why = f"Ray Data is not installed (`pip install 'lmstream[ray]'`): {exc}"
        raise ImportError(why) from exc
    return ray


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Both runners on the same prompts; seconds each, and the cluster's start apart."""
    ray = _ray()
    text = " ".join(f"w{i}" for i in range(args.words))
    model = ["-m", f"fake:{text}", "--option", "chunking=word", "--option", f"delay={args.delay}"]
    prompts = [f"prompt {n}" for n in range(args.rows)]
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        source = out / "prompts.txt"
        source.write_text("".join(p + "\n" for p in prompts))
        single = one_process(source, out, model, args.actors * args.concurrency)
        start = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False)
        cluster = time.perf_counter() - start
        try:
            ray_time = on_ray(prompts, out, model, args)
        finally:
            ray.shutdown()
    settings = {k: getattr(args, k) for k in ("rows", "words", "delay", "actors", "concurrency")}
    return {**settings, "ray": ray.__version__, "one_process_s": single, "ray_s": ray_time,
            "cluster_s": cluster}  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_data")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--words", type=int, default=8)
    parser.add_argument("--delay", type=float, default=0.01)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    return parser


def measure(quick: bool) -> dict[str, Any]:
    """The ``ray`` part of ``python -m bench``: the defaults, fewer rows with ``quick``."""
    return run(_parser().parse_args(["--rows", str(SIZES["quick" if quick else "full"])]))


def figures(found: dict[str, Any]) -> dict[str, float]:
    """Rows per second of each runner, and Ray's over one process's."""
    rows = found["rows"]
    one, ray = rows / found["one_process_s"], rows / found["ray_s"]
    started = rows / (found["ray_s"] + found["cluster_s"])
    return {"one process": one, "ray": ray, "ray with start": started,
            "ray vs one": ray / one, "ray with start vs one": started / one}  # fmt: skip


def table(found: dict[str, Any], *, markdown: bool) -> str:
    """Rows per second and wall time of each runner, and the ratio to one process."""
    f = figures(found)
    wall = (found["one_process_s"], found["ray_s"], found["ray_s"] + found["cluster_s"])
    rows = [
        ["`lmstream batch`, one process", f"{f['one process']:,.1f}", f"{wall[0]:.1f}", "1x"],
        ["Ray Data, cluster already up", f"{f['ray']:,.1f}", f"{wall[1]:.1f}",
         f"{f['ray vs one']:.2f}x"],
        ["Ray Data, with the cluster's start", f"{f['ray with start']:,.1f}", f"{wall[2]:.1f}",
         f"{f['ray with start vs one']:.2f}x"],
    ]  # fmt: skip
    return render(["runner", "rows/s", "wall (s)", "rows/s vs one process"], rows,
                  markdown=markdown)  # fmt: skip


def section(results: dict[str, Any]) -> str:
    """The benchmarks page's section: what ran, the table, the cluster's start apart."""
    found = results["ray"]
    streams = found["actors"] * found["concurrency"]
    return (
        f"{found['rows']:,} prompts to the fake model, {found['words']} words per answer, a "
        f"word every {found['delay'] * 1000:g} ms; {streams} streams at once either way: "
        f"`lmstream batch -c {streams}` in one process (a subprocess: its interpreter's start "
        f"and imports count), or `lmstream.ray_data.batch` (what `lmstream batch --ray` runs) "
        f"with {found['actors']} actors of {found['concurrency']} streams each on a local "
        f"Ray {found['ray']} cluster, the actors' start counted. One run of each, one after "
        f"the other.\n\n{table(found, markdown=True)}\n\nStarting the local cluster "
        f"(`ray.init`) took {found['cluster_s']:.1f} s, counted only in the last row.\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    found = run(args)
    print(f"{args.rows} rows, {args.words} words each, a word every {args.delay} s, "
          f"{args.actors * args.concurrency} streams at once, Ray {found['ray']}")  # fmt: skip
    print(table(found, markdown=False))
    print(f"the cluster's start: {found['cluster_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
