"""Run every benchmark and publish the results: ``docs/benchmarks.md``, its plots, the raw
figures as JSON, and the headline ratios in the README and on the docs' home page.

    python -m bench                       # everything (about ten minutes on 2 cores)
    python -m bench --quick               # fewer sizes and rounds (a few minutes)
    python -m bench --only core,server    # re-run some parts, keep the others' results
    python -m bench --render              # re-render the page and plots from the JSON

Each part runs its cases interleaved (see ``bench._util``); a part whose dependencies
are missing is skipped with the reason, and the page says so.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "docs" / "assets" / "benchmarks"
RESULTS = ASSETS / "results.json"
PARTS = ("core", "chat", "llamacpp", "server", "openai", "otel", "router", "structured", "ray")
PACKAGES = ("langchain-core", "llama-cpp-python", "httpx", "openai", "fastapi", "uvicorn")


# -- where and when ----------------------------------------------------------------------


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    except OSError:
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _chunk_constructor() -> str:
    """ "C" when lmstream's chunk classes are built by its C constructor, else "Python"
    (installed without a C compiler)."""
    try:
        from lmstream import GenerationChunk, _speedups
    except ImportError:
        return "Python"
    return "C" if _speedups.installed(GenerationChunk) else "Python"


def environment() -> dict[str, Any]:
    """The machine, the versions and the date of this run."""
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", "lmstream"))
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "lmstream": _version("lmstream"),
        "chunks_built_in": _chunk_constructor(),
        "commit": commit + ("+changes" if dirty else ""),
        "versions": {name: _version(name) for name in PACKAGES},
    }


# -- the parts ---------------------------------------------------------------------------


def run_core(quick: bool) -> dict[str, Any]:
    """lmstream vs langchain-core vs the raw floors, every path and size, and import time."""
    from bench import core
    from bench._util import import_breakdown, import_samples

    sizes = (10, 100, 1000) if quick else (10, 100, 1000, 10_000)
    rounds, target, runs = (3, 0.02, 9) if quick else (7, 0.05, 21)
    warnings.filterwarnings("ignore", message=".*astream_events.*")  # v1 is deprecated there
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        problems = core.check(loop)
        paths = {}
        for path in core.PATHS:
            print(f"{path.title} ...", file=sys.stderr, flush=True)
            rows = core.measure_path(path, loop, sizes, rounds, target)
            paths[path.key] = {
                "title": path.title,
                "budget": path.budget,
                "raw_budget": path.raw_budget,
                "fixed": path.fixed,
                "lc_max": path.lc_max,
                "rows": [{"n": r.n, "samples": r.samples.per_unit} for r in rows],
            }
    finally:
        loop.close()
    print("import ...", file=sys.stderr, flush=True)
    samples, counts = import_samples(core.MODULES, runs)
    breakdown = {name: import_breakdown(module) for name, module in core.MODULES.items()}
    return {
        "sizes": list(sizes),
        "rounds": rounds,
        "problems": problems,
        "paths": paths,
        "import": {
            "runs": runs,
            "samples": samples.per_unit,
            "modules": counts,
            "breakdown": breakdown,
            "names": core.MODULES,
        },
    }


def run_llamacpp(quick: bool) -> dict[str, Any]:
    """LlamaCpp.stream / astream against raw llama-cpp-python on the same loaded model,
    and ChatLlamaCpp against raw create_chat_completion."""
    from bench import llamacpp, llamacpp_chat

    rounds, max_tokens = (4, 64) if quick else (10, 128)
    found = llamacpp.measure(rounds, max_tokens, None)
    print("llamacpp: chat ...", file=sys.stderr, flush=True)
    found["chat"] = llamacpp_chat.measure(rounds, max_tokens)
    found["chat"]["rounds"] = rounds
    return found


def run_server(quick: bool) -> dict[str, Any]:
    """Concurrent SSE clients on the fake model, and the embedded text and chat models
    served vs local."""
    from bench import server

    levels = (1, 50, 200) if quick else (1, 25, 50, 100, 200, 400)
    tokens, delay = 40, 0.05
    load = []
    for clients in levels:
        print(f"server load: {clients} clients ...", file=sys.stderr, flush=True)
        load.append(server.fake_load(clients, tokens, delay))
    print("server: embedded model ...", file=sys.stderr, flush=True)
    local = server.local_model(2 if quick else 5, 64 if quick else 200)
    print("server: embedded chat model ...", file=sys.stderr, flush=True)
    chat = server.chat_model(2 if quick else 5, 64 if quick else 200)
    return {"tokens": tokens, "delay": delay, "load": load, "local": local, "chat": chat}


def run_openai(quick: bool) -> dict[str, Any]:
    """The OpenAI provider against the official SDK: client cost per chunk, abatch rate."""
    from bench import openai

    chunks, rounds, repeat = (200, 3, 2) if quick else (1000, 7, 3)
    prompts, concurrency = (300, 64) if quick else (1000, 64)
    process, url = openai.start_server()
    try:
        per_chunk = openai.per_chunk(url, chunks, rounds, repeat)
        rate = openai.throughput(url, prompts, concurrency, max(1, rounds // 2))
    finally:
        process.terminate()
        process.wait(timeout=10)
    return {
        "chunks": chunks,
        "rounds": rounds,
        "prompts": prompts,
        "concurrency": concurrency,
        "per_chunk": per_chunk,
        "throughput": rate,
    }


def run_chat(quick: bool) -> dict[str, Any]:
    """Chat models against langchain-core's BaseChatModel: cost per chunk, N = 1,000."""
    from bench import chat

    sizes, rounds, target = ((1000,), 3, 0.02) if quick else ((100, 1000), 7, 0.05)
    return chat.measure(sizes, rounds, target)


def run_otel(quick: bool) -> dict[str, Any]:
    """What tracing costs per chunk and per call: off, no provider, the SDK."""
    from bench import otel

    return otel.measure(quick)


def run_router(quick: bool) -> dict[str, Any]:
    """The router's overhead, a backend killed under load, and cancellation."""
    from bench import router

    return router.measure(quick)


def run_structured(quick: bool) -> dict[str, Any]:
    """JsonOutputParser's cost per chunk against langchain-core's, at three sizes."""
    from bench import structured

    return structured.measure(1 if quick else 3, 0.2 if quick else 0.5)


def run_ray(quick: bool) -> dict[str, Any]:
    """Ray Data's rows/s against ``lmstream batch`` in one process; the cluster's start apart."""
    from bench import ray_data

    return ray_data.measure(quick)


RUNNERS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "core": run_core,
    "chat": run_chat,
    "llamacpp": run_llamacpp,
    "server": run_server,
    "openai": run_openai,
    "otel": run_otel,
    "router": run_router,
    "structured": run_structured,
    "ray": run_ray,
}


def collect(parts: list[str], quick: bool, previous: dict[str, Any]) -> dict[str, Any]:
    """Run ``parts``; keep the other parts' results from ``previous``."""
    results = {**previous, "environment": environment(), "quick": quick}
    skipped = dict(previous.get("skipped", {}))
    for part in parts:
        print(f"\n## {part}\n", file=sys.stderr, flush=True)
        try:
            results[part] = RUNNERS[part](quick)
            skipped.pop(part, None)
        except ImportError as exc:
            print(f"bench.{part}: skipped ({exc})", file=sys.stderr)
            skipped[part] = str(exc)
            results.pop(part, None)
        except Exception:
            traceback.print_exc()
            skipped[part] = "failed (see the run's output)"
            results.pop(part, None)
    results["skipped"] = skipped
    return results


# -- the command ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """``python -m bench``: run, then publish."""
    from bench.page import publish

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer sizes and rounds")
    parser.add_argument("--only", help="comma-separated parts: " + ",".join(PARTS))
    parser.add_argument("--render", action="store_true", help="only re-render from the JSON")
    args = parser.parse_args(argv)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    if args.render:
        results = previous
    else:
        parts = args.only.split(",") if args.only else list(PARTS)
        unknown = set(parts) - set(PARTS)
        if unknown:
            parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
        results = collect(parts, args.quick, previous if args.only else {})
        ASSETS.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    for path in publish(results, ASSETS):
        print(f"wrote {path.relative_to(ROOT)}")
    failed = [p for p, why in results.get("skipped", {}).items() if why.startswith("failed")]
    return 1 if failed and not args.render else 0
