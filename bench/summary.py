"""Figures derived from the raw results of ``python -m bench``: pure functions, no I/O.

The page and the plots read the same numbers from here, and the headline (in the page,
the README and the docs' home page) is built here once.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from bench._util import Samples, fmt_ratio

LM, LC, RAW = "lmstream", "langchain-core", "raw"
HEADLINE_N = 1000  # the answer length the headline quotes


@dataclass
class CoreRow:
    """One path at one N: best-round seconds per unit, and median per-round ratios."""

    n: int
    lm: float
    lc: float | None
    raw: float | None
    lm_lc: float | None
    lm_raw: float | None


def core_rows(results: dict[str, Any], key: str, part: str = "core") -> list[CoreRow]:
    """Every row of one path of the core benchmark (or of ``part``, as ``chat``), by N."""
    out = []
    for row in results[part]["paths"][key]["rows"]:
        s = Samples(row["samples"])
        out.append(
            CoreRow(
                row["n"],
                s.best(LM),
                s.best(LC) if LC in s else None,
                s.best(RAW) if RAW in s else None,
                s.ratio(LM, LC) if LC in s else None,
                s.ratio(LM, RAW) if RAW in s else None,
            )
        )
    return out


def core_at(results: dict[str, Any], key: str, n: int | None = None) -> CoreRow | None:
    """The row of ``key`` at ``n`` (a fixed-cost path has one row), if it was measured."""
    rows = core_rows(results, key) if key in results.get("core", {}).get("paths", {}) else []
    if len(rows) == 1 and results["core"]["paths"][key]["fixed"] is not None:
        return rows[0]
    return next((r for r in rows if r.n == n), None)


def imports(results: dict[str, Any]) -> tuple[float, float, float]:
    """Median seconds to import lmstream and langchain-core, and their median ratio."""
    s = Samples(results["core"]["import"]["samples"])
    return s.median(LM), s.median(LC), s.ratio(LM, LC)


def median_ratio(rows: dict[str, list[Any]], a: str, b: str, field: int | None = None) -> float:
    """Median over rounds of ``a / b`` (``field`` picks one value of tuple rows)."""
    pairs = zip(rows[a], rows[b], strict=True)
    if field is None:
        return float(statistics.median(x / y for x, y in pairs))
    return float(statistics.median(x[field] / y[field] for x, y in pairs))


def openai_figures(results: dict[str, Any]) -> dict[str, float]:
    """Client CPU µs per chunk (medians), the CPU ratios to the SDK, and batch rates."""
    per = results["openai"]["per_chunk"]
    out = {f"cpu {name}": statistics.median(c for _, c in rows) for name, rows in per.items()}
    out["stream vs sdk"] = median_ratio(per, "lmstream stream", "sdk stream", 1)
    out["astream vs sdk"] = median_ratio(per, "lmstream astream", "sdk async stream", 1)
    rate = results["openai"]["throughput"]
    for name, rows in rate.items():
        out[f"rate {name}"] = max(rows)
    out["abatch vs sdk"] = median_ratio(rate, "lmstream abatch", "sdk gather+semaphore")
    return out


def load_row(results: dict[str, Any], clients: int) -> dict[str, Any] | None:
    """The server load measurement at ``clients`` concurrent streams, if there is one."""
    rows = results.get("server", {}).get("load", [])
    return next((r for r in rows if r["clients"] == clients), None)


# -- the headline --------------------------------------------------------------------------

Line = tuple[str, str, str, str]
"""(what, result, goal, met)"""


def _met(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "no")


def _core_lines(results: dict[str, Any]) -> list[Line]:
    lines: list[Line] = []
    n = HEADLINE_N
    for key, what in (
        ("stream", "`stream()`"),
        ("astream", "`astream()`"),
        ("kw-stream", "`stream()` with a chunk-building provider"),
        ("kw-astream", "`astream()` with a chunk-building provider"),
        ("events-v2", '`astream_events(version="v2")`'),
        ("events-v1", '`astream_events(version="v1")`'),
        ("chain-events-v2", "a prompt → llm → parser chain's `astream_events(v2)`"),
    ):
        if key not in results["core"]["paths"]:
            continue  # results from before the path existed
        row, budget = core_at(results, key, n), results["core"]["paths"][key]["budget"]
        if row is not None and row.lm_lc is not None:
            goal = f"≤ {fmt_ratio(budget)}" if budget else ""
            met = _met(row.lm_lc <= budget if budget else None)
            lines.append(
                (f"{what}, cost per token vs langchain-core", fmt_ratio(row.lm_lc), goal, met)
            )
    row = core_at(results, "stream", n)
    if row is not None and row.lm_raw is not None:
        lines.append(
            (
                "`stream()`, cost per token vs a plain generator",
                fmt_ratio(row.lm_raw, fraction=False),
                "≤ 15x",
                _met(row.lm_raw <= 15),
            )
        )
    row = core_at(results, "invoke")
    if row is not None and row.lm_lc is not None:
        lines.append(
            (
                "`invoke()`, fixed cost per call vs langchain-core",
                fmt_ratio(row.lm_lc),
                "≤ 1/10",
                _met(row.lm_lc <= 1 / 10),
            )
        )
    row = core_at(results, "kw-invoke")
    if row is not None and row.lm_lc is not None:
        lines.append(
            (
                "`invoke()` with a chunk-building provider, fixed cost per call vs langchain-core",
                fmt_ratio(row.lm_lc),
                "≤ 1/12",
                _met(row.lm_lc <= 1 / 12),
            )
        )
    _, _, ratio = imports(results)
    lines.append(
        (
            "`import lmstream` vs `import langchain_core.language_models`",
            fmt_ratio(ratio),
            "≤ 1/8",
            _met(ratio <= 1 / 8),
        )
    )
    return lines


def _model_lines(results: dict[str, Any]) -> list[Line]:
    lines: list[Line] = []
    if "llamacpp" in results:
        for name in ("LlamaCpp.stream", "LlamaCpp.astream"):
            ratio = results["llamacpp"]["paths"][name]["ratio"]
            lines.append(
                (
                    f"local model, `{name.split('.')[1]}()` tokens/s vs raw llama-cpp-python",
                    f"{ratio:.2f}x",
                    "≥ 0.97x",
                    _met(ratio >= 0.97),
                )
            )
        for name, p in results["llamacpp"].get("chat", {}).get("paths", {}).items():
            if name.startswith("ChatLlamaCpp."):
                lines.append(
                    (
                        f"local chat model, `{name.split('.')[1]}()` tokens/s vs raw "
                        "`create_chat_completion`",
                        f"{p['ratio']:.2f}x",
                        "≥ 0.97x",
                        _met(p["ratio"] >= 0.97),
                    )
                )
    if "server" in results:
        for part, what in (("local", "local model"), ("chat", "local chat model")):
            if part not in results["server"]:
                continue
            ratio = results["server"][part]["served / in-process tokens/s (median of rounds)"]
            lines.append(
                (
                    f"{what} served by `lmstream serve`, tokens/s vs in-process",
                    f"{ratio:.2f}x",
                    "≥ 0.95x",
                    _met(ratio >= 0.95),
                )
            )
        row = load_row(results, 200)
        if row is not None:
            done, total = (int(x) for x in row["complete streams"].split("/"))
            lines.append(
                (
                    "200 concurrent SSE streams from `lmstream serve`",
                    f"{done}/{total} complete, p99 gap {row['p99 gap (ms)']:.0f} ms "
                    f"(model: {row['delay per token (ms)']:.0f} ms/token)",
                    "all complete",
                    _met(done == total),
                )
            )
    if "openai" in results:
        figures = openai_figures(results)
        lines.append(
            (
                "`OpenAI.stream()`, client CPU per chunk vs the official SDK",
                f"{figures['stream vs sdk']:.2f}x",
                "≤ 1x",
                _met(figures["stream vs sdk"] <= 1),
            )
        )
    return lines


def _ray_lines(results: dict[str, Any]) -> list[Line]:
    if "ray" not in results:
        return []
    from bench.ray_data import figures

    ratio = figures(results["ray"])["ray vs one"]
    return [("Ray Data (`lmstream batch --ray`), rows/s vs one process", f"{ratio:.2f}x", "", "")]


def headline(results: dict[str, Any]) -> list[Line]:
    """The lines of the headline table, ratios first."""
    lines = _core_lines(results) if "core" in results else []
    return lines + _model_lines(results) + _ray_lines(results)
