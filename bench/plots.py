"""The plots of the benchmarks page (matplotlib, PNG). Each figure names the machine, the
versions and the date of the run it shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from bench import summary
from bench._util import fmt_ratio

COLORS = {"lmstream": "#3949ab", "langchain-core": "#ef6c00", "raw": "#2e7d32", "other": "#8e8e8e"}
OVERHEAD_PATHS = (
    ("stream", "stream()"),
    ("astream", "astream()"),
    ("events-v2", "astream_events v2"),
    ("events-v1", "astream_events v1"),
    ("chain-astream", "chain astream()"),
    ("chain-events-v2", "chain astream_events v2"),
)
PLAIN = FuncFormatter(lambda value, _: f"{value:g}")


def footer(results: dict[str, Any]) -> str:
    """Machine, versions and date, in one line."""
    env = results["environment"]
    versions = env["versions"]
    return (
        f"{env['cpu']}, {env['cores']} cores, {env['os']} · Python {env['python']} · "
        f"lmstream {env['lmstream']} ({env['commit']}) · langchain-core "
        f"{versions['langchain-core']} · llama-cpp-python {versions['llama-cpp-python']} · "
        f"{env['date']}"
    )


def _save(fig: Figure, results: dict[str, Any], path: Path) -> Path:
    fig.text(0.01, 0.008, footer(results), fontsize=7, color="#555555")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _overhead_panel(
    ax: Any, results: dict[str, Any], key: str, title: str, part: str = "core"
) -> None:
    rows = summary.core_rows(results, key, part)
    series = (
        ("lmstream", [(r.n, r.lm) for r in rows], "-", "o"),
        ("langchain-core", [(r.n, r.lc) for r in rows if r.lc is not None], "--", "s"),
        ("raw generator", [(r.n, r.raw) for r in rows if r.raw is not None], ":", "^"),
    )
    for (label, points, style, marker), color in zip(
        series, (COLORS["lmstream"], COLORS["langchain-core"], COLORS["raw"]), strict=True
    ):
        if points:
            xs, ys = zip(*points, strict=True)
            ax.plot(xs, [y * 1e6 for y in ys], style, marker=marker, color=color, label=label)
    at = next((r for r in rows if r.n == summary.HEADLINE_N), None)
    ratio = (
        f"\nlmstream / langchain-core at N=1,000: {fmt_ratio(at.lm_lc)}" if at and at.lm_lc else ""
    )
    ax.set_title(title + ratio, fontsize=9)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(PLAIN)
    ax.yaxis.set_major_formatter(PLAIN)
    ax.grid(True, which="both", alpha=0.25)
    ax.set_xlabel("tokens per answer (N)", fontsize=8)
    ax.set_ylabel("µs per token", fontsize=8)
    ax.tick_params(labelsize=7)


def overhead(results: dict[str, Any], out: Path) -> Path:
    """Per-token cost of each streaming path across N, both libraries and the raw floor."""
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.2))
    for ax, (key, title) in zip(axes.flat, OVERHEAD_PATHS, strict=True):
        _overhead_panel(ax, results, key, title)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(
        "Cost per streamed token: lmstream, langchain-core and a plain generator "
        "(lower is better; log scales). The chain is prompt | llm | parser.",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.96))
    return _save(fig, results, out / "overhead.png")


def chat(results: dict[str, Any], out: Path) -> Path:
    """Per-chunk cost of each streaming path of chat models across N, both libraries."""
    paths = [(k, p["title"]) for k, p in results["chat"]["paths"].items() if p["fixed"] is None]
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.2))
    for ax, (key, title) in zip(axes.flat, paths, strict=False):
        _overhead_panel(ax, results, key, title, "chat")
        ax.set_ylabel("µs per chunk", fontsize=8)
    for ax in axes.flat[len(paths) :]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(
        "Chat models: cost per streamed message chunk, lmstream and langchain-core "
        "(lower is better; log scales). The chain is prompt | chat | parser.",
        fontsize=11,
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.96))
    return _save(fig, results, out / "chat.png")


def _pairs(
    ax: Any, labels: list[str], lm: list[float], lc: list[float], ratios: list[float]
) -> None:
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], lm, 0.4, label="lmstream", color=COLORS["lmstream"])
    ax.bar([x + 0.2 for x in xs], lc, 0.4, label="langchain-core", color=COLORS["langchain-core"])
    for x, value, ratio in zip(xs, lm, ratios, strict=True):
        ax.annotate(fmt_ratio(ratio), (x - 0.2, value), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.tick_params(labelsize=8)


def fixed(results: dict[str, Any], out: Path) -> Path:
    """Fixed costs: invoke, ainvoke, batch and abatch per prompt; import time."""
    labels, lm, lc, ratios = [], [], [], []
    for key, label in (
        ("invoke", "invoke()"),
        ("ainvoke", "ainvoke()"),
        ("batch", "batch(), per prompt"),
        ("abatch", "abatch(), per prompt"),
    ):
        row = summary.core_at(results, key)
        if row is not None and row.lc is not None and row.lm_lc is not None:
            labels.append(label)
            lm.append(row.lm * 1e6)
            lc.append(row.lc * 1e6)
            ratios.append(row.lm_lc)
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(11, 4.4), gridspec_kw={"width_ratios": [4, 1.3]}
    )
    _pairs(left, labels, lm, lc, ratios)
    left.set_yscale("log")
    left.yaxis.set_major_formatter(PLAIN)
    left.yaxis.set_minor_formatter(
        FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else "")
    )
    left.legend(fontsize=8)
    left.set_ylabel("µs per call, best round (log scale)", fontsize=8)
    left.set_title("A call with a 10-token answer; batches of 100 prompts", fontsize=9)
    lm_import, lc_import, ratio = summary.imports(results)
    _pairs(right, ["import"], [lm_import * 1e3], [lc_import * 1e3], [ratio])
    right.set_ylabel("ms, median of fresh interpreters", fontsize=8)
    right.set_title("import", fontsize=9)
    fig.suptitle(
        "Fixed costs (lower is better; lmstream / langchain-core above the bars)", fontsize=10
    )
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return _save(fig, results, out / "fixed.png")


def _bars(ax: Any, names: list[str], values: list[float], colors: list[str], fmt: str) -> None:
    ax.barh(names, values, color=colors)
    for i, value in enumerate(values):
        ax.annotate(
            fmt.format(value),
            (value, i),
            va="center",
            fontsize=8,
            xytext=(3, 0),
            textcoords="offset points",
        )
    ax.invert_yaxis()
    ax.tick_params(labelsize=8)
    ax.margins(x=0.25)


def local_model(results: dict[str, Any], out: Path) -> Path:
    """The embedded model: tokens/s and extra time to first token against raw llama.cpp."""
    paths = results["llamacpp"]["paths"]
    names = list(paths)
    colors = [COLORS["raw"] if n.startswith("raw") else COLORS["lmstream"] for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    _bars(left, names, [paths[n]["tokens_per_s"] for n in names], colors, "{:.1f} tok/s")
    left.set_title("Tokens/s, median of rounds (higher is better)", fontsize=9)
    ratios = [paths[n]["ratio"] for n in names]
    _bars(right, names, ratios, colors, "{:.3f}x")
    right.axvline(0.97, color=COLORS["other"], linestyle="--", linewidth=1)
    right.set_title("Ratio to raw, median of per-round ratios (goal ≥ 0.97)", fontsize=9)
    fig.suptitle(
        f"Local model: {results['llamacpp']['model']}, n_threads="
        f"{results['llamacpp']['n_threads']}, {results['llamacpp']['tokens']} tokens",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return _save(fig, results, out / "local-model.png")


def _concurrency_axes(ax: Any, clients: list[int]) -> None:
    ax.set_xscale("log")
    ax.set_xticks(clients)
    ax.xaxis.set_major_formatter(PLAIN)
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: ""))
    ax.set_xlabel("concurrent streams", fontsize=8)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)
    ax.tick_params(labelsize=8)


def server_load(results: dict[str, Any], out: Path) -> Path:
    """``lmstream serve`` with N concurrent SSE clients: delivered tokens/s and gaps."""
    load, server = results["server"]["load"], results["server"]
    clients = [r["clients"] for r in load]

    def series(key: str) -> list[float]:
        return [r[key] for r in load]

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    left.plot(clients, series("delivered tokens/s"), "-o", color=COLORS["lmstream"],
              label="delivered")  # fmt: skip
    left.plot(clients, series("server's own limit (tokens/s)"), ":", color=COLORS["other"],
              label="the model's pace (clients / delay)")  # fmt: skip
    left.set_title("Tokens/s delivered to all clients together", fontsize=9)
    right.plot(clients, series("p50 gap (ms)"), "-o", color=COLORS["lmstream"], label="p50")
    right.plot(clients, series("p99 gap (ms)"), "-s", color=COLORS["langchain-core"],
               label="p99")  # fmt: skip
    right.axhline(server["delay"] * 1000, color=COLORS["other"], linestyle=":",
                  label="the model's delay per token")  # fmt: skip
    right.set_title("Gap between a client's consecutive tokens (ms)", fontsize=9)
    for ax in (left, right):
        _concurrency_axes(ax, clients)
    fig.suptitle(
        f"lmstream serve, fake model: {server['tokens']} tokens per stream, "
        f"{server['delay'] * 1000:.0f} ms per token",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return _save(fig, results, out / "server-load.png")


def _client_order(name: str) -> tuple[bool, bool, str]:
    """lmstream and the SDK side by side, sync first; the floor last."""
    return ("floor" in name, "async" in name or "astream" in name, name)


def openai_client(results: dict[str, Any], out: Path) -> Path:
    """The OpenAI provider against the official SDK: CPU per chunk and abatch rate."""
    figures = summary.openai_figures(results)
    per = sorted(results["openai"]["per_chunk"], key=_client_order)
    rate = list(results["openai"]["throughput"])

    def color(name: str) -> str:
        if name.startswith("lmstream"):
            return COLORS["lmstream"]
        return COLORS["raw"] if "floor" in name or "limit" in name else COLORS["langchain-core"]

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    _bars(left, per, [figures[f"cpu {n}"] for n in per], [color(n) for n in per], "{:.0f} µs")
    left.set_title(
        f"Client CPU per chunk, streams of {results['openai']['chunks']} chunks (lower is better)",
        fontsize=9,
    )
    _bars(
        right, rate, [figures[f"rate {n}"] for n in rate], [color(n) for n in rate], "{:.0f} req/s"
    )
    right.set_title(
        f"{results['openai']['prompts']} prompts, "
        f"{results['openai']['concurrency']} at a time (higher is better)",
        fontsize=9,
    )
    fig.suptitle(
        "OpenAI-compatible client vs the official openai SDK, same local server", fontsize=10
    )
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return _save(fig, results, out / "openai.png")


def draw(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """Every figure the results allow, by name."""
    out.mkdir(parents=True, exist_ok=True)
    figures = {}
    if "core" in results:
        figures["overhead"] = overhead(results, out)
        figures["fixed"] = fixed(results, out)
    if "chat" in results:
        figures["chat"] = chat(results, out)
    if "llamacpp" in results:
        figures["local-model"] = local_model(results, out)
    if "server" in results:
        figures["server-load"] = server_load(results, out)
    if "openai" in results:
        figures["openai"] = openai_client(results, out)
    if "otel" in results:
        from bench import otel

        figures["otel"] = otel.plot(results, out)
    if "structured" in results:
        from bench import structured

        figures["structured"] = structured.plot(results, out)
    return figures
