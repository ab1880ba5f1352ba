"""Bulk throughput: ``lmstream batch`` in one process against ``lmstream batch --ray``.

    python -m bench.ray_data                          # defaults below
    python -m bench.ray_data --rows 4000 --delay 0 --actors 2 --concurrency 16

The model is the fake one, ``--words`` words per answer, a word every ``--delay``
seconds (0: as fast as the machine goes, which measures each runner's own cost). Both
runners get the same number of streams at once: one process with ``actors * concurrency``,
or ``--actors`` Ray actors with ``--concurrency`` each. Rows per second over the whole
run; for Ray, once with the cluster's start and once without (the cluster is started
first, and each actor's start is counted).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def one_process(source: Path, out: Path, model: list[str], streams: int) -> float:
    command = [sys.executable, "-m", "lmstream", "batch", str(source), "-o", str(out / "one.jsonl"),
               "-c", str(streams), *model]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def on_ray(prompts: list[str], out: Path, model: list[str], args: argparse.Namespace) -> float:
    import ray

    from lmstream.ray_data import batch

    options = {"chunking": "word", "delay": args.delay}
    start = time.perf_counter()
    summary = batch(
        prompts, model[1], output=out / "ray", actors=args.actors, concurrency=args.concurrency,
        options=options, ray_options={"num_cpus": 0.5},
    )  # fmt: skip
    elapsed = time.perf_counter() - start
    assert summary.finished == len(prompts), summary
    ray.shutdown()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ray_data")
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--words", type=int, default=8)
    parser.add_argument("--delay", type=float, default=0.01)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    text = " ".join(f"w{i}" for i in range(args.words))
    model = ["-m", f"fake:{text}", "--option", "chunking=word", "--option", f"delay={args.delay}"]
    prompts = [f"prompt {n}" for n in range(args.rows)]
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch)
        source = out / "prompts.txt"
        source.write_text("".join(p + "\n" for p in prompts))
        single = one_process(source, out, model, args.actors * args.concurrency)
        import ray

        start = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False)
        cluster = time.perf_counter() - start
        ray_time = on_ray(prompts, out, model, args)
    streams = args.actors * args.concurrency
    print(f"{args.rows} rows, {args.words} words each, a word every {args.delay} s, "
          f"{streams} streams at once")  # fmt: skip
    print(f"lmstream batch, one process:  {args.rows / single:8.1f} rows/s ({single:.1f} s)")
    print(f"lmstream batch --ray:         {args.rows / ray_time:8.1f} rows/s ({ray_time:.1f} s), "
          f"{args.rows / (ray_time + cluster):.1f} rows/s with the cluster's start "
          f"({cluster:.1f} s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
