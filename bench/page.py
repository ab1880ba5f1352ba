"""``docs/benchmarks.md`` from the results of ``python -m bench``, and the headline block
that the README and the docs' home page repeat."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench import plots, structured, summary
from bench._util import fmt_ratio, fmt_time, render, verdict

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "benchmarks.md"
BLOCK = re.compile(r"(<!-- bench:start -->\n)(.*?)(<!-- bench:end -->)", re.DOTALL)
PROSE = Path(__file__).resolve().parent / "method.md"
PACE = "server's own limit (tokens/s)"
JUDGED_FROM = 100  # below, a call's fixed cost dominates the cost per token


def headline_block(results: dict[str, Any]) -> str:
    """The headline table, ratios first (the text between the bench markers)."""
    env = results["environment"]
    rows = [list(line) for line in summary.headline(results)]
    table = render(["measure", "result", "goal", "met"], rows, markdown=True)
    return (
        f"{table}\n\nMeasured by `python -m bench` on {env['date']}: {env['cpu']}, "
        f"{env['cores']} cores, Python {env['python']}, langchain-core "
        f"{env['versions']['langchain-core']}, llama-cpp-python "
        f"{env['versions']['llama-cpp-python']}. N = {summary.HEADLINE_N:,} tokens where it "
        "applies.\n"
    )


def update_block(path: Path, block: str) -> bool:
    """Replace the text between the bench markers of ``path``; whether it changed."""
    text = path.read_text(encoding="utf-8")
    new, count = BLOCK.subn(lambda m: m[1] + block + m[3], text)
    if count != 1:
        raise ValueError(f"{path}: expected one <!-- bench:start --> ... <!-- bench:end --> block")
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def block_of(path: Path) -> str:
    """The text between the bench markers of ``path``."""
    found = BLOCK.search(path.read_text(encoding="utf-8"))
    if found is None:
        raise ValueError(f"{path}: no <!-- bench:start --> ... <!-- bench:end --> block")
    return found[2]


# -- sections ------------------------------------------------------------------------------


def _per_token(results: dict[str, Any], part: str, unit: str) -> tuple[str, str]:
    """(the ratio table, the time table) of the per-token paths of ``part``."""
    ratio_rows, time_rows = [], []
    for key, path in results[part]["paths"].items():
        if path["fixed"] is not None:
            continue
        for row in summary.core_rows(results, key, part):
            judged = path["budget"] if row.n >= JUDGED_FROM else None
            title = path["title"].replace("|", "\\|")  # a chain's title, in a table
            ratio_rows.append(
                [
                    title,
                    f"{row.n:,}",
                    fmt_ratio(row.lm_lc),
                    f"≤ {fmt_ratio(judged)}" if judged else "",
                    verdict(row.lm_lc, judged),
                    fmt_ratio(row.lm_raw, fraction=False) if row.lm_raw is not None else "",
                ]
            )
            capped = path["lc_max"] is not None and row.n > path["lc_max"]
            lc = "(not run)" if capped else fmt_time(row.lc)
            time_rows.append(
                [
                    title,
                    f"{row.n:,}",
                    fmt_time(row.lm),
                    lc,
                    fmt_time(row.raw) if row.raw is not None else "",
                ]
            )
    ratios = render(
        ["path", "N", "lmstream / langchain-core", "goal", "", "lmstream / raw"],
        ratio_rows,
        markdown=True,
    )
    times = render(
        ["path", "N", f"lmstream µs/{unit}", f"langchain-core µs/{unit}", f"raw µs/{unit}"],
        time_rows,
        markdown=True,
    )
    return ratios, times


def _core_tables(results: dict[str, Any]) -> str:
    ratios, times = _per_token(results, "core", "token")
    return (
        "Ratios, the median of per-round ratios. The goals are per streamed token, judged from "
        f"N = {JUDGED_FROM} up: at N = 10 a call's fixed cost dominates (see the next "
        "section). The provider yields `GenerationChunk(t)` per token; on the rows marked "
        '"chunk-building provider" it is written the way providers usually are, '
        "`GenerationChunk(text=t)` by keyword (langchain-core's chunks take keywords only), "
        "with only the streaming hooks, so `invoke()` adds up the stream."
        f"\n\n{ratios}\n\nAbsolute figures, the best round:\n\n{times}\n"
    )


def _chat_tables(results: dict[str, Any]) -> str:
    ratios, times = _per_token(results, "chat", "chunk")
    calls = [
        f"{path['title']}: {fmt_time(row.lm)} against {fmt_time(row.lc)} ({fmt_ratio(row.lm_lc)})"
        for key, path in results["chat"]["paths"].items()
        if path["fixed"] is not None and (row := summary.core_rows(results, key, "chat")[0])
    ]
    problems = results["chat"].get("problems")
    warning = f"\n\nWarning: not the same work: {'; '.join(problems)}." if problems else ""
    return (
        "The same fake chat model written against both libraries' `BaseChatModel`: one "
        "`AIMessageChunk` per token from N pre-built strings; each base class reports the "
        "chunks itself. Ratios, the median of per-round ratios, judged from "
        f"N = {JUDGED_FROM} up.\n\n{ratios}\n\nAbsolute figures, the best round:\n\n"
        f"{times}\n\n" + "; ".join(calls) + "." + warning + "\n"
    )


def _fixed_tables(results: dict[str, Any]) -> str:
    rows = []
    for key, path in results["core"]["paths"].items():
        row = summary.core_at(results, key)
        if path["fixed"] is None or row is None:
            continue
        rows.append(
            [
                path["title"],
                fmt_ratio(row.lm_lc),
                f"≤ {fmt_ratio(path['budget'])}" if path["budget"] else "",
                verdict(row.lm_lc, path["budget"]),
                fmt_time(row.lm),
                fmt_time(row.lc),
            ]
        )
    lm, lc, ratio = summary.imports(results)
    runs = results["core"]["import"]["runs"]
    rows.append(
        [
            f"import, ms (median of {runs})",
            fmt_ratio(ratio),
            "≤ 1/8",
            verdict(ratio, 1 / 8),
            fmt_time(lm, 1e3),
            fmt_time(lc, 1e3),
        ]
    )
    table = render(
        [
            "what (µs per call unless noted)",
            "lmstream / langchain-core",
            "goal",
            "",
            "lmstream",
            "langchain-core",
        ],
        rows,
        markdown=True,
    )
    imports = results["core"]["import"]
    notes = [
        f"* `import {imports['names'][name]}` loads {imports['modules'][name]} modules; the "
        f"heaviest it pulls in from outside its own package (`-X importtime`, cumulative): "
        f"{imports['breakdown'][name] or 'none'}."
        for name in ("lmstream", "langchain-core")
    ]
    return table + "\n\n" + "\n".join(notes) + "\n"


def _local_tables(results: dict[str, Any]) -> str:
    found = results["llamacpp"]
    rows = [
        [
            name,
            f"{p['ratio']:.3f}x",
            f"{p['cpu_ratio']:.3f}x",
            f"{p['ttft_overhead_ms']:.2f}",
            f"{p['tokens_per_s']:.1f}",
            f"{p['ttft_ms']:.2f}",
        ]
        for name, p in found["paths"].items()
    ]
    table = render(
        [
            "path",
            "tokens/s vs raw",
            "CPU vs raw",
            "extra time to first token (ms)",
            "tokens/s",
            "time to first token (ms)",
        ],
        rows,
        markdown=True,
    )
    return (
        f"{found['model']}, `n_threads={found['n_threads']}`, {found['tokens']} tokens per run, "
        f"{found['rounds']} interleaved rounds ({found['ttft_rounds']} short runs for the time "
        f"to first token); identical text on every path: {found['identical_text']}. The CPU "
        "ratio is raw's CPU time over the path's (above 1: the path spends less).\n\n"
        f"{table}\n{_local_chat(found.get('chat'))}"
    )


def _local_chat(found: dict[str, Any] | None) -> str:
    if not found:
        return ""
    rows = [
        [name, f"{p['ratio']:.3f}x", f"{p['cpu_ratio']:.3f}x", f"{p['ttft_overhead_ms']:.2f}",
         f"{p['tokens_per_s']:.1f}"]
        for name, p in found["paths"].items()
    ]  # fmt: skip
    head = ["path", "tokens/s vs raw", "CPU vs raw", "extra time to first token (ms)", "tokens/s"]
    return (
        "\nThe chat model: `ChatLlamaCpp.stream`/`astream` against raw "
        "`Llama.create_chat_completion(stream=True)` with the same messages, through the "
        f"GGUF's own chat template; {found['tokens']} tokens per run, {found['rounds']} "
        f"interleaved rounds; identical text on every path: {found['identical_text']}.\n\n"
        f"{render(head, rows, markdown=True)}\n"
    )


def _server_tables(results: dict[str, Any]) -> str:
    server = results["server"]
    rows = [
        [
            str(r["clients"]),
            r["complete streams"],
            f"{r['delivered tokens/s']:,.0f}",
            f"{r['delivered tokens/s'] / r[PACE]:.2f}",
            f"{r['p50 gap (ms)']:.1f}",
            f"{r['p99 gap (ms)']:.1f}",
            f"{r['wall (s)']:.2f}",
        ]
        for r in server["load"]
    ]
    load = render(
        [
            "streams",
            "complete",
            "tokens/s delivered",
            "share of the model's pace",
            "p50 gap (ms)",
            "p99 gap (ms)",
            "wall (s)",
        ],
        rows,
        markdown=True,
    )
    return (
        f"Fake model, {server['tokens']} tokens per stream, {server['delay'] * 1000:.0f} ms per "
        "token; all streams start at once from one asyncio client process:\n\n"
        f"{load}\n\nThe embedded model through the server against the same model in "
        f"process (interleaved):\n\n{_served_table(server['local'])}\n{_chat_served(server)}"
    )


def _served_table(found: dict[str, Any]) -> str:
    rows = [[k, f"{v:,.2f}" if isinstance(v, float) else str(v)] for k, v in found.items()]
    return render(["measure", "value"], rows, markdown=True)


def _chat_served(server: dict[str, Any]) -> str:
    """The chat model's rows: ``ChatLlamaCpp`` in process against ``serve --chat``."""
    if "chat" not in server:
        return ""
    return (
        "\nThe embedded chat model, `ChatLlamaCpp.stream` against `lmstream serve --chat` "
        "streaming `/v1/chat/completions` (interleaved; the client's CPU time in process "
        f"includes the model's own work):\n\n{_served_table(server['chat'])}\n"
    )


def _openai_tables(results: dict[str, Any]) -> str:
    o, f = results["openai"], summary.openai_figures(results)
    rows = [[name, f"{f[f'cpu {name}']:.1f}"] for name in o["per_chunk"]]
    per = render(["client", "CPU µs per chunk (median)"], rows, markdown=True)
    limit = f["rate server limit (raw sockets)"]
    rows = [
        [name, f"{f[f'rate {name}']:,.0f}", f"{f[f'rate {name}'] / limit:.2f}"]
        for name in o["throughput"]
    ]
    rate = render(
        ["client", "requests/s (best round)", "share of the server's limit"], rows, markdown=True
    )
    return (
        f"`OpenAI.stream` costs {f['stream vs sdk']:.2f}x the official SDK's client CPU per "
        f"chunk, `OpenAI.astream` {f['astream vs sdk']:.2f}x (median of per-round ratios, "
        f"{o['rounds']} rounds); `abatch` runs {f['abatch vs sdk']:.2f}x as many requests per "
        f"second as the SDK under a semaphore.\n\n{per}\n\n{rate}\n"
    )


def _otel_tables(results: dict[str, Any]) -> str:
    from bench.otel import shares, table

    found = results["otel"]
    lines = [
        f"`stream`/`astream` of a {found['tokens']:,}-token model, {found['rounds']} rounds, "
        "each case's cost over OpenTelemetry not imported at all, measured interleaved in one "
        "process. The SDK's exporter does nothing, so the figures are what lmstream and the "
        "SDK spend on the caller's thread.",
        "",
        table(found, markdown=True),
    ]
    if "bare_span" in found:
        lines += ["", f"The SDK's own span, started and ended with a model call's attributes "
                  f"and nothing else: {fmt_time(found['bare_span'])} µs."]  # fmt: skip
    share = shares(found)
    if share:
        lines += ["", "A traced call's cost split: lmstream's part is a tracer whose spans do "
                  "nothing over \"off\", the SDK's part the SDK tracer over that, from the same "
                  "rounds:", "", share]  # fmt: skip
    return "\n".join(lines) + "\n"


def _router_tables(results: dict[str, Any]) -> str:
    from bench.router import tables

    return tables(results["router"])


def _ray_tables(results: dict[str, Any]) -> str:
    from bench.ray_data import section

    return section(results)


# -- the page ------------------------------------------------------------------------------


def _figure(name: str, alt: str, figures: dict[str, Path]) -> str:
    return f"![{alt}](assets/benchmarks/{figures[name].name})\n\n" if name in figures else ""


SECTIONS = (
    (
        "core",
        "Cost per streamed token against langchain-core",
        "overhead",
        "Cost per token across N, log scales",
        _core_tables,
    ),
    (
        "core",
        "Fixed costs: a call, a batch, an import",
        "fixed",
        "Fixed costs of invoke, ainvoke, batch, abatch and import",
        _fixed_tables,
    ),
    (
        "chat",
        "Chat models against langchain-core",
        "chat",
        "Cost per message chunk across N, log scales",
        _chat_tables,
    ),
    (
        "llamacpp",
        "The local model against raw llama-cpp-python",
        "local-model",
        "Tokens per second of LlamaCpp against raw llama-cpp-python",
        _local_tables,
    ),
    (
        "server",
        "Server under load",
        "server-load",
        "Tokens per second and gaps between tokens against concurrent streams",
        _server_tables,
    ),
    (
        "openai",
        "The OpenAI-compatible client against the official SDK",
        "openai",
        "Client CPU per chunk and batch throughput against the official SDK",
        _openai_tables,
    ),
    (
        "otel",
        "What tracing costs",
        "otel",
        "Cost per chunk and per call of OpenTelemetry tracing",
        _otel_tables,
    ),
    (
        "router",
        "The router in front of several backends",
        "router",
        "Time to first chunk and gaps through the router, and a backend killed under load",
        _router_tables,
    ),
    (
        "structured",
        "Structured output: JSON that streams",
        "structured",
        "JsonOutputParser cost per chunk against object size",
        lambda results: structured.section(results),
    ),
    (
        "ray",
        "Bulk generation on Ray Data",
        "ray",
        "Rows per second of Ray Data and of one process",
        _ray_tables,
    ),
)


def _built_in(env: dict[str, Any]) -> str:
    how = env.get("chunks_built_in")  # not recorded before the C constructor existed
    if how == "C":
        return " (chunks built by its C constructor)"
    return " (chunks built in Python: installed without its C part)" if how else ""


def _intro(results: dict[str, Any]) -> str:
    env = results["environment"]
    quick = " with `--quick` (fewer sizes and rounds)" if results.get("quick") else ""
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m bench` (bench/page.py): edit those, not this page. -->",
        "",
        "What lmstream costs on top of a model, measured side by side with langchain-core "
        "and with the raw floors (a plain generator, raw llama-cpp-python, the official "
        "`openai` SDK, a server's own limit), each comparison in one process run. Ratios "
        "lead; absolute figures follow as context, since the machine is shared and noisy.",
        "",
        f"This run{quick}: {env['date']}, {env['cpu']} ({env['cores']} cores, shared), "
        f"{env['os']}, Python {env['python']}, lmstream {env['lmstream']} at "
        f"`{env['commit']}`{_built_in(env)}, "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items())
        + ".",
        "",
        "## Headline",
        "",
        "<!-- bench:start -->",
        headline_block(results) + "<!-- bench:end -->",
        "",
    ]
    return "\n".join(lines)


def page(results: dict[str, Any], figures: dict[str, Path]) -> str:
    """The whole benchmarks page."""
    parts = [_intro(results)]
    for part, title, figure, alt, tables in SECTIONS:
        parts.append(f"## {title}\n")
        if part in results:
            parts.append(_figure(figure, alt, figures) + tables(results))
        else:
            reason = results.get("skipped", {}).get(part, "not run")
            parts.append(f"Not measured in this run: {reason}.\n")
    problems = results.get("core", {}).get("problems")
    if problems:
        parts.append("Warning: the two libraries did not do the same work: " + "; ".join(problems))
    parts.append(PROSE.read_text(encoding="utf-8"))
    return "\n".join(parts)


def publish(results: dict[str, Any], assets: Path) -> list[Path]:
    """Write the plots, the page, and the headline into the README and the home page."""
    figures = plots.draw(results, assets)
    PAGE.write_text(page(results, figures), encoding="utf-8")
    block = headline_block(results)
    written = [*figures.values(), PAGE]
    for target in (ROOT / "README.md", ROOT / "docs" / "index.md"):
        if update_block(target, block):
            written.append(target)
    return written
