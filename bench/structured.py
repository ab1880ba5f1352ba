"""Streaming structured output: cost per chunk of ``JsonOutputParser`` against langchain-core.

A JSON object of 1.3 KB, 5.2 KB and 20.8 KB streams through each parser in 4-character
chunks (every chunk consumed, every partial built). Alongside: re-parsing the whole buffer
with jiter's partial mode on every chunk (the design the incremental parser was measured
against), lmstream's pure incremental core alone, the partial-pydantic path, and the same
object as a tool call's arguments streamed in message chunks through
``JsonOutputKeyToolsParser``.

    python -m bench.structured            # prints the table
    python -m bench.structured --quick
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from bench._util import fmt_time, render

SIZES = (1300, 5200, 20800)
CHUNK = 4
LM, LC = "lmstream", "langchain-core"
LM_TOOL, LC_TOOL = "lmstream tool args", "langchain-core tool args"
CASES = (LM, LC, "jiter re-parse", "lmstream core", "lmstream pydantic", "langchain-core pydantic",
         LM_TOOL, LC_TOOL)  # fmt: skip


class Person(BaseModel):
    id: int
    name: str
    email: str
    tags: list[str]
    score: float
    active: bool


class People(BaseModel):
    people: list[Person]


def document(size: int) -> str:
    """A JSON object of about ``size`` characters: a list of small records."""
    people: list[dict[str, Any]] = []
    while True:
        i = len(people)
        record = {"id": i, "name": f"Person number {i}", "email": f"p{i}@example.com",
                  "tags": ["alpha", "beta"], "score": i * 1.5, "active": i % 2 == 0}  # fmt: skip
        text = json.dumps({"people": [*people, record]})
        if len(text) > size:
            return json.dumps({"people": people})
        people.append(record)


def _consume(stream: Any) -> int:
    n = 0
    for _ in stream:
        n += 1
    return n


def _tool_case(chunks: list[str], *, lc: bool) -> Callable[[], int]:
    """``chunks`` as the arguments of one tool call, in message chunks, through the key
    tool parser (langchain-core's with ``lc``)."""
    if lc:
        from langchain_core.messages import AIMessageChunk
        from langchain_core.output_parsers.openai_tools import JsonOutputKeyToolsParser
    else:
        from lmstream import AIMessageChunk, JsonOutputKeyToolsParser  # type: ignore[assignment]

    first = {"name": "People", "args": "", "id": "call_1", "index": 0}
    messages = [AIMessageChunk("", tool_call_chunks=[first])]  # type: ignore[list-item]
    messages += [AIMessageChunk("", tool_call_chunks=[{"args": c, "index": 0}])  # type: ignore[list-item]
                 for c in chunks]  # fmt: skip

    def run() -> int:
        parser = JsonOutputKeyToolsParser(key_name="People", first_tool_only=True)
        return _consume(parser.transform(iter(messages)))

    return run


def cases(text: str) -> dict[str, Callable[[], int]]:
    """One full stream of ``text`` per call, for each case that can run here."""
    from lmstream import JsonOutputParser, PydanticOutputParser
    from lmstream._jsonstream import JsonStream

    chunks = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]

    def core() -> int:
        stream = JsonStream()
        out = [stream.partial() for c in chunks if stream.feed(c)]
        stream.finish()
        return len(out)

    out: dict[str, Callable[[], int]] = {
        LM: lambda: _consume(JsonOutputParser().transform(iter(chunks))),
        LM_TOOL: _tool_case(chunks, lc=False),
        "lmstream core": core,
        "lmstream pydantic": lambda: _consume(PydanticOutputParser(People).transform(iter(chunks))),
    }
    try:
        from langchain_core.output_parsers import JsonOutputParser as LCJsonOutputParser
        from langchain_core.output_parsers import PydanticOutputParser as LCPydanticOutputParser

        out[LC] = lambda: _consume(LCJsonOutputParser().transform(iter(chunks)))
        out[LC_TOOL] = _tool_case(chunks, lc=True)
        out["langchain-core pydantic"] = lambda: _consume(
            LCPydanticOutputParser(pydantic_object=People).transform(iter(chunks))
        )
    except ImportError:
        pass
    try:
        import jiter

        def reparse() -> int:
            buffer, n = "", 0
            for c in chunks:
                buffer += c
                jiter.from_json(buffer.encode(), partial_mode="trailing-strings")
                n += 1
            return n

        out["jiter re-parse"] = reparse
    except ImportError:
        pass
    return out


def _once(case: Callable[[], int]) -> float:
    # CPU time, not wall time: the machine is shared, and the parsers never wait
    start = time.process_time()
    case()
    return time.process_time() - start


def measure(rounds: int, target: float) -> dict[str, Any]:
    """Seconds per chunk, one value per round, per size and case (rounds interleaved)."""
    rows = []
    for size in SIZES:
        text = document(size)
        n_chunks = -(-len(text) // CHUNK)
        runs = cases(text)
        repeat = {name: max(1, round(target / _once(case))) for name, case in runs.items()}
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for r in range(rounds):
            names = list(runs)
            for name in names[r % len(names) :] + names[: r % len(names)]:
                n = repeat[name]
                total = sum(_once(runs[name]) for _ in range(n))
                samples[name].append(total / (n * n_chunks))
        print(f"structured: {len(text)} characters done", file=sys.stderr, flush=True)
        rows.append({"size": len(text), "chunks": n_chunks, "samples": samples})
    return {"chunk": CHUNK, "rounds": rounds, "rows": rows}


def table(results: dict[str, Any], *, markdown: bool) -> str:
    """Median CPU µs per chunk per case and size, and lmstream's speed-up over langchain-core."""
    names = [n for n in CASES if n in results["rows"][0]["samples"]]
    rows = []
    for row in results["rows"]:
        s = row["samples"]
        cells = [f"{row['size'] / 1000:.1f} KB", str(row["chunks"])]
        cells += [fmt_time(statistics.median(s[n])) for n in names]
        if LC in s:
            ratio = statistics.median(a / b for a, b in zip(s[LC], s[LM], strict=True))
            cells.append(f"{ratio:,.0f}x")
        rows.append(cells)
    headers = ["object", "chunks", *[f"{n} (µs/chunk)" for n in names]]
    if LC in names:
        headers.append("langchain-core / lmstream")
    return render(headers, rows, markdown=markdown)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.structured", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one round")
    args = parser.parse_args(argv)
    results = measure(1 if args.quick else 3, 0.2 if args.quick else 0.5)
    print(table(results, markdown=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())


# -- the page and the plot (called by bench.page and bench.plots) ------------------------


def _median_us(results: dict[str, Any], name: str) -> list[float]:
    return [statistics.median(r["samples"][name]) * 1e6 for r in results["rows"]]


def section(results: dict[str, Any]) -> str:
    """The benchmarks page's section: the table and what it shows."""
    s = results["structured"]
    lm = _median_us(s, LM)
    text = (
        f"A JSON object streamed in {s['chunk']}-character chunks through each parser; CPU "
        f"time per chunk, median of {s['rounds']} interleaved rounds. `JsonOutputParser` "
        f"costs {min(lm):.1f} to {max(lm):.1f} µs per chunk whatever the size (goal: at most "
        "10 µs, flat). Re-parsing the whole buffer on every chunk, as langchain-core does "
        "(and as jiter's partial mode would), grows with the text read so far. The pydantic "
        "path validates each complete list item once and only the open path again, so it "
        "stays flat too; langchain-core's validates nothing until the end but re-parses "
        "every chunk all the same.\n\n"
    )
    if LC in s["rows"][-1]["samples"]:
        row = s["rows"][-1]["samples"]
        ratio = statistics.median(a / b for a, b in zip(row[LC], row[LM], strict=True))
        text += f"At {s['rows'][-1]['size'] / 1000:.1f} KB lmstream is {ratio:,.0f}x faster.\n\n"
    return text + table(s, markdown=True) + "\n"


def plot(results: dict[str, Any], out: Any) -> Any:
    """Cost per chunk against object size, log scales."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from bench.plots import COLORS, _save

    s = results["structured"]
    sizes = [r["size"] / 1000 for r in s["rows"]]
    styles = {LM: (COLORS["lmstream"], "-"), LC: (COLORS["langchain-core"], "-"),
              "jiter re-parse": (COLORS["other"], ":"),
              "lmstream pydantic": (COLORS["lmstream"], "--"),
              "langchain-core pydantic": (COLORS["langchain-core"], "--"),
              LM_TOOL: (COLORS["lmstream"], "-."),
              LC_TOOL: (COLORS["langchain-core"], "-.")}  # fmt: skip
    fig, ax = plt.subplots(figsize=(10, 4.6))
    for name, (color, line) in styles.items():
        if name in s["rows"][0]["samples"]:
            ax.plot(sizes, _median_us(s, name), line, color=color, marker="o", label=name)
    ax.axhline(10, color=COLORS["other"], linestyle="--", linewidth=1, label="goal: 10 µs")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(sizes, [f"{size:.1f}" for size in sizes])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("object size (KB), 4-character chunks", fontsize=8)
    ax.set_ylabel("CPU µs per chunk (lower is better)", fontsize=8)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("JsonOutputParser: cost per streamed chunk", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return _save(fig, results, out / "structured.png")
