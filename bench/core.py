"""The core against langchain-core and the raw floors, in one process run.

    python -m bench.core                # every path, N = 100 / 1,000 / 10,000 (a few minutes)
    python -m bench.core --quick        # N = 100 / 1,000, fewer rounds (under a minute)
    python -m bench.core --markdown     # the table as Markdown
    python -m bench.core --profile events-v2 --profile-n 10000   # cProfile one lmstream path

The same provider is written against both libraries: one ``GenerationChunk`` per token from
a pre-built list of N strings (``_stream``, ``_astream``) and the joined string (``_call``).
The langchain-core one reports each token to its run manager, as providers there must; the
lmstream base reports chunks itself. The raw floors are a plain generator and a plain async
generator yielding the same strings. Budgets are those of DESIGN §5.

The "chunk-building provider" paths use the shape a provider written from the docs has:
``GenerationChunk(text=t)`` per token, by keyword, as langchain-core requires (its chunks
are pydantic models), and for ``invoke`` no ``_call`` at all on the lmstream side, so the
base class adds up the streamed chunks; the langchain-core ``_call`` does the same from its
``_stream``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models.llms import LLM as LcLLM
from langchain_core.output_parsers import StrOutputParser as LcParser
from langchain_core.outputs import GenerationChunk as LcChunk
from langchain_core.prompts import PromptTemplate as LcPrompt

import lmstream
from bench._util import (
    Case,
    Samples,
    async_case,
    fmt_ratio,
    fmt_time,
    import_breakdown,
    import_samples,
    interleave,
    profile_case,
    render,
    sync_case,
    verdict,
)

PROMPT = "Write me a 1 verse song about sparkling water."
TEMPLATE = "Q: {q}"
QUESTION = {"q": PROMPT}
LM, LC, RAW = "lmstream", "langchain-core", "raw"


def make_tokens(n: int) -> list[str]:
    """N distinct-looking short strings, like the pieces a tokenizer hands out."""
    return [f" w{i % 997}" for i in range(n)]


# -- the provider, written against each library ------------------------------------------


class LcTokens(LcLLM):
    """langchain-core: one chunk per scripted token, reported to the run manager."""

    tokens: list[str]

    @property
    def _llm_type(self) -> str:
        return "bench-tokens"

    def _call(self, prompt: str, stop: Any = None, run_manager: Any = None, **kw: Any) -> str:
        return "".join(self.tokens)

    def _stream(
        self, prompt: str, stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[LcChunk]:
        for text in self.tokens:
            chunk = LcChunk(text=text)
            if run_manager:
                run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    async def _astream(
        self, prompt: str, stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> AsyncIterator[LcChunk]:
        for text in self.tokens:
            chunk = LcChunk(text=text)
            if run_manager:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk


class LmTokens(lmstream.LLM):
    """lmstream: one chunk per scripted token; the base class reports them."""

    tokens: list[str]

    def _call(self, prompt: str, stop: Any = None, **kw: Any) -> str:
        return "".join(self.tokens)

    def _stream(
        self, prompt: str, stop: Any = None, **kw: Any
    ) -> Iterator[lmstream.GenerationChunk]:
        for text in self.tokens:
            yield lmstream.GenerationChunk(text)

    async def _astream(
        self, prompt: str, stop: Any = None, **kw: Any
    ) -> AsyncIterator[lmstream.GenerationChunk]:
        for text in self.tokens:
            yield lmstream.GenerationChunk(text)


class LmKeywordChunks(lmstream.LLM):
    """lmstream, as a provider is usually written: ``GenerationChunk(text=t)`` per token,
    and only the streaming hooks (``invoke`` adds up the stream)."""

    tokens: list[str]

    def _stream(
        self, prompt: str, stop: Any = None, **kw: Any
    ) -> Iterator[lmstream.GenerationChunk]:
        for text in self.tokens:
            yield lmstream.GenerationChunk(text=text)

    async def _astream(
        self, prompt: str, stop: Any = None, **kw: Any
    ) -> AsyncIterator[lmstream.GenerationChunk]:
        for text in self.tokens:
            yield lmstream.GenerationChunk(text=text)


class LcStreamed(LcTokens):
    """langchain-core, the same shape: ``_call`` (which it requires) adds up ``_stream``."""

    def _call(self, prompt: str, stop: Any = None, run_manager: Any = None, **kw: Any) -> str:
        return "".join(chunk.text for chunk in self._stream(prompt, stop, run_manager))


def raw_stream(tokens: list[str]) -> Iterator[str]:
    """The sync floor."""
    yield from tokens


async def araw_stream(tokens: list[str]) -> AsyncIterator[str]:
    """The async floor."""
    for text in tokens:
        yield text


# -- what is measured --------------------------------------------------------------------


@dataclass
class Setup:
    """Both libraries' LLM and chain over the same N tokens, and the one event loop."""

    loop: asyncio.AbstractEventLoop
    tokens: list[str]
    lm: Any
    lc: Any
    lm_chain: Any
    lc_chain: Any
    lm_kw: Any  # the chunk-building provider
    lc_kw: Any

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop, n: int) -> Setup:
        tokens = make_tokens(n)
        lm, lc = LmTokens(tokens=tokens), LcTokens(tokens=tokens)
        lm_chain = lmstream.PromptTemplate.from_template(TEMPLATE) | lm | lmstream.StrOutputParser()
        lc_chain = LcPrompt.from_template(TEMPLATE) | lc | LcParser()
        lm_kw, lc_kw = LmKeywordChunks(tokens=tokens), LcStreamed(tokens=tokens)
        return cls(loop, tokens, lm, lc, lm_chain, lc_chain, lm_kw, lc_kw)


def drain(items: Iterable[Any]) -> int:
    """Consume a stream the way a caller does; the count of items."""
    count = 0
    for _ in items:
        count += 1
    return count


async def adrain(items: AsyncIterator[Any]) -> int:
    """Consume an async stream; the count of items."""
    count = 0
    async for _ in items:
        count += 1
    return count


def _pair(s: Setup, which: str) -> tuple[Any, Any]:
    # read lazily: the chat benchmark's setup has no keyword-built pair
    lm, lc = {"llm": ("lm", "lc"), "chain": ("lm_chain", "lc_chain"), "kw": ("lm_kw", "lc_kw")}[
        which
    ]
    return getattr(s, lm), getattr(s, lc)


def _sync(s: Setup, call: Callable[[Any], Iterable[Any]], which: str = "llm") -> dict[str, Case]:
    lm, lc = _pair(s, which)
    return {LM: sync_case(lambda: drain(call(lm))), LC: sync_case(lambda: drain(call(lc)))}


def _async(
    s: Setup, call: Callable[[Any], AsyncIterator[Any]], which: str = "llm"
) -> dict[str, Case]:
    lm, lc = _pair(s, which)
    return {
        LM: async_case(s.loop, lambda: adrain(call(lm))),
        LC: async_case(s.loop, lambda: adrain(call(lc))),
    }


def stream_cases(s: Setup, which: str = "llm") -> dict[str, Case]:
    """``stream()`` and the plain generator."""
    cases = _sync(s, lambda llm: llm.stream(PROMPT), which)
    cases[RAW] = sync_case(lambda: drain(raw_stream(s.tokens)))
    return cases


def astream_cases(s: Setup, which: str = "llm") -> dict[str, Case]:
    """``astream()`` and the plain async generator."""
    cases = _async(s, lambda llm: llm.astream(PROMPT), which)
    cases[RAW] = async_case(s.loop, lambda: adrain(araw_stream(s.tokens)))
    return cases


def events_cases(version: str) -> Callable[[Setup], dict[str, Case]]:
    """``astream_events`` of the LLM alone."""
    return lambda s: _async(s, lambda llm: llm.astream_events(PROMPT, version=version))


def chain_cases(how: str) -> Callable[[Setup], dict[str, Case]]:
    """``prompt | llm | parser``: ``stream``, ``astream`` or ``events`` (v2)."""

    def make(s: Setup) -> dict[str, Case]:
        if how == "stream":
            return _sync(s, lambda c: c.stream(QUESTION), "chain")
        if how == "astream":
            return _async(s, lambda c: c.astream(QUESTION), "chain")
        return _async(s, lambda c: c.astream_events(QUESTION, version="v2"), "chain")

    return make


BATCH = 100  # prompts per batch call
INVOKE_TOKENS = 10  # the fixed-cost paths use a short completion


def invoke_cases(s: Setup) -> dict[str, Case]:
    """``invoke()``: the fixed cost of one call."""
    return {LM: sync_case(lambda: s.lm.invoke(PROMPT)), LC: sync_case(lambda: s.lc.invoke(PROMPT))}


def kw_invoke_cases(s: Setup) -> dict[str, Case]:
    """``invoke()`` of the chunk-building provider: the stream, added up."""
    lm, lc = s.lm_kw, s.lc_kw
    return {LM: sync_case(lambda: lm.invoke(PROMPT)), LC: sync_case(lambda: lc.invoke(PROMPT))}


def ainvoke_cases(s: Setup) -> dict[str, Case]:
    """``ainvoke()``: the fixed cost of one async call."""
    return {
        LM: async_case(s.loop, lambda: s.lm.ainvoke(PROMPT)),
        LC: async_case(s.loop, lambda: s.lc.ainvoke(PROMPT)),
    }


def batch_cases(s: Setup) -> dict[str, Case]:
    """``batch()`` of BATCH prompts."""
    prompts = [f"{PROMPT} #{i}" for i in range(BATCH)]
    return {LM: sync_case(lambda: s.lm.batch(prompts)), LC: sync_case(lambda: s.lc.batch(prompts))}


def abatch_cases(s: Setup) -> dict[str, Case]:
    """``abatch()`` of BATCH prompts."""
    prompts = [f"{PROMPT} #{i}" for i in range(BATCH)]
    return {
        LM: async_case(s.loop, lambda: s.lm.abatch(prompts)),
        LC: async_case(s.loop, lambda: s.lc.abatch(prompts)),
    }


@dataclass(frozen=True)
class Path:
    """One measured path: its cases, unit and budgets."""

    key: str
    title: str
    make: Callable[[Setup], dict[str, Case]]
    budget: float | None = None  # lmstream / langchain-core, at most
    raw_budget: float | None = None  # lmstream / raw floor, at most
    fixed: int | None = None  # a fixed-cost path: N for every row, and the work units per call
    units: int = 1
    lc_max: int | None = None  # langchain-core measured up to this N only
    extra_sizes: tuple[int, ...] = ()


PATHS = [
    Path("stream", "stream()", stream_cases, 1 / 10, 15),
    Path("astream", "astream()", astream_cases, 1 / 10),
    Path(
        "kw-stream",
        "stream(), chunk-building provider",
        lambda s: stream_cases(s, "kw"),
        1 / 15,
        15,
    ),
    Path(
        "kw-astream", "astream(), chunk-building provider", lambda s: astream_cases(s, "kw"), 1 / 12
    ),
    Path("events-v2", "astream_events v2", events_cases("v2"), 1 / 20),
    Path(
        "events-v1",
        "astream_events v1",
        events_cases("v1"),
        1 / 50,
        lc_max=2000,
        extra_sizes=(2000,),
    ),
    Path("chain-stream", "chain stream()", chain_cases("stream")),
    Path("chain-astream", "chain astream()", chain_cases("astream")),
    Path("chain-events-v2", "chain astream_events v2", chain_cases("events"), 1 / 20),
    Path("invoke", "invoke() [µs/call]", invoke_cases, 1 / 10, fixed=INVOKE_TOKENS),
    Path(
        "kw-invoke",
        "invoke(), chunk-building provider [µs/call]",
        kw_invoke_cases,
        1 / 12,
        fixed=INVOKE_TOKENS,
    ),
    Path("ainvoke", "ainvoke() [µs/call]", ainvoke_cases, fixed=INVOKE_TOKENS),
    Path("batch", f"batch() [µs/prompt, {BATCH}]", batch_cases, fixed=INVOKE_TOKENS, units=BATCH),
    Path(
        "abatch", f"abatch() [µs/prompt, {BATCH}]", abatch_cases, fixed=INVOKE_TOKENS, units=BATCH
    ),
]


# -- running and reporting -----------------------------------------------------------------

HEADERS = [
    "path (µs/token unless noted)", "N", LM, LC, "lm/lc", "budget", "",
    "raw floor", "lm/raw", "budget", "",
]  # fmt: skip


@dataclass
class Row:
    """The samples of one path at one N."""

    path: Path
    n: int
    samples: Samples

    def cells(self) -> list[str]:
        """The row of the table."""
        s, p = self.samples, self.path
        ratio = s.ratio(LM, LC) if LC in s else None
        raw = s.ratio(LM, RAW) if RAW in s else None
        capped = p.lc_max is not None and self.n > p.lc_max
        return [
            p.title,
            f"{self.n:,} tok" if p.fixed else f"{self.n:,}",
            fmt_time(s.best(LM)),
            "(capped)" if capped else fmt_time(s.best(LC) if LC in s else None),
            fmt_ratio(ratio),
            f"≤ {fmt_ratio(p.budget)}" if p.budget else "",
            verdict(ratio, p.budget),
            fmt_time(s.best(RAW)) if RAW in s else "",
            fmt_ratio(raw, fraction=False) if raw is not None else "",
            f"≤ {p.raw_budget}x" if p.raw_budget else "",
            verdict(raw, p.raw_budget),
        ]


def sizes_of(path: Path, sizes: tuple[int, ...]) -> list[int]:
    """The N of each row of ``path``."""
    if path.fixed is not None:
        return [path.fixed]
    return sorted({*sizes, *(n for n in path.extra_sizes if n <= max(sizes))})


def measure_path(
    path: Path, loop: asyncio.AbstractEventLoop, sizes: tuple[int, ...], rounds: int, target: float
) -> list[Row]:
    """Every N of one path, each an interleaved comparison."""
    rows = []
    for n in sizes_of(path, sizes):
        cases = path.make(Setup.of(loop, n))
        if path.lc_max is not None and n > path.lc_max:
            del cases[LC]
        units = path.units if path.fixed is not None else n
        row = Row(path, n, interleave(cases, units=units, rounds=rounds, target=target))
        rows.append(row)
        print("  " + "  ".join(c for c in row.cells()[:7] if c), file=sys.stderr, flush=True)
    return rows


# -- import time ---------------------------------------------------------------------------

MODULES = {LM: "lmstream", LC: "langchain_core.language_models"}


def import_rows(runs: int) -> tuple[list[str], list[str]]:
    """The import row of the table, and the lines that explain it."""
    samples, counts = import_samples(MODULES, runs)
    ratio = samples.ratio(LM, LC)
    row = [
        "import [ms, median]", f"{runs} runs",
        fmt_time(samples.median(LM), 1e3), fmt_time(samples.median(LC), 1e3),
        fmt_ratio(ratio), "≤ 1/8", verdict(ratio, 1 / 8), "", "", "", "",
    ]  # fmt: skip
    notes = [
        f"import {MODULES[name]}: {counts[name]} modules; heaviest outside imports "
        "(cumulative, -X importtime): " + import_breakdown(MODULES[name])
        for name in (LM, LC)
    ]
    return row, notes


# -- fairness: both sides must do the same work --------------------------------------------


async def _event_kinds(runnable: Any, value: Any, version: str) -> list[str]:
    return [e["event"] async for e in runnable.astream_events(value, version=version)]


def check(loop: asyncio.AbstractEventLoop, n: int = 100) -> list[str]:
    """Differences in what the two libraries produce for the measured calls (none expected)."""
    s, problems = Setup.of(loop, n), []
    text = "".join(s.tokens)
    for name, runnable, value in (
        ("llm", "lm", PROMPT),
        ("chain", "lm_chain", QUESTION),
        ("chunk-building llm", "lm_kw", PROMPT),
    ):
        lm, lc = getattr(s, runnable), getattr(s, runnable.replace("lm", "lc", 1))
        outputs = {
            "stream": ("".join(lm.stream(value)), "".join(lc.stream(value))),
            "invoke": (lm.invoke(value), lc.invoke(value)),
        }
        for what, (a, b) in outputs.items():
            if not a == b == text:
                problems.append(f"{name} {what}: texts differ")
        versions = ("v2", "v1") if name == "llm" else ("v2",)
        for version in versions:
            a = loop.run_until_complete(_event_kinds(lm, value, version))
            b = loop.run_until_complete(_event_kinds(lc, value, version))
            if a != b:
                problems.append(
                    f"{name} events {version}: {len(a)} events vs {len(b)} "
                    f"({sorted(set(a) ^ set(b)) or 'same kinds, other order'})"
                )
    return problems


# -- the command ---------------------------------------------------------------------------


def profile(loop: asyncio.AbstractEventLoop, key: str, n: int, top: int) -> None:
    """cProfile the lmstream side of one path (about 200,000 tokens or 2,000 calls)."""
    path = next(p for p in PATHS if p.key == key)
    size = path.fixed if path.fixed is not None else n
    case = path.make(Setup.of(loop, size))[LM]
    reps = 2000 // path.units if path.fixed is not None else max(1, 200_000 // n)
    case(1)
    print(f"# cProfile: lmstream {path.title}, N={size:,}, {reps} calls")
    print(profile_case(case, reps, top))


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.core", description="lmstream vs langchain-core"
    )
    parser.add_argument("--quick", action="store_true", help="N up to 1,000, 3 rounds")
    parser.add_argument("--sizes", type=lambda v: tuple(int(x) for x in v.split(",")))
    parser.add_argument("--rounds", type=int, help="rounds per comparison (7; quick: 3)")
    parser.add_argument("--target", type=float, help="seconds per sample (0.05; quick: 0.02)")
    parser.add_argument(
        "--only", help="comma-separated path keys: " + ",".join(p.key for p in PATHS)
    )
    parser.add_argument(
        "--import-runs", type=int, help="fresh interpreters per module (21; quick 9)"
    )
    parser.add_argument("--no-import", action="store_true", help="skip the import comparison")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--profile", metavar="KEY", help="cProfile the lmstream side of a path")
    parser.add_argument("--profile-n", type=int, default=10_000)
    parser.add_argument("--top", type=int, default=30, help="functions in the profile")
    args = parser.parse_args(argv)
    args.sizes = args.sizes or ((100, 1000) if args.quick else (100, 1000, 10_000))
    args.rounds = args.rounds or (3 if args.quick else 7)
    args.target = args.target or (0.02 if args.quick else 0.05)
    args.import_runs = args.import_runs or (9 if args.quick else 21)
    return args


def run(args: argparse.Namespace, loop: asyncio.AbstractEventLoop) -> None:
    """Check fairness, measure every selected path and print the table."""
    keys = set(args.only.split(",")) if args.only else {p.key for p in PATHS}
    for problem in check(loop):
        print(f"warning: not the same work: {problem}", file=sys.stderr)
    rows: list[list[str]] = []
    for path in PATHS:
        if path.key in keys:
            print(f"{path.title} ...", file=sys.stderr, flush=True)
            rows += [
                r.cells() for r in measure_path(path, loop, args.sizes, args.rounds, args.target)
            ]
    notes: list[str] = []
    if not args.no_import:
        print("import ...", file=sys.stderr, flush=True)
        row, notes = import_rows(args.import_runs)
        rows.append(row)
    print(render(HEADERS, rows, markdown=args.markdown))
    judged = [r[i] for r in rows for i in (6, 10) if r[i]]
    print(f"\n{judged.count('PASS')} of {len(judged)} budgets pass. Ratios: median of "
          f"per-round ratios over {args.rounds} rounds; times: best round.")  # fmt: skip
    for note in notes:
        print(note)


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.core``."""
    args = parse(argv)
    warnings.filterwarnings("ignore", message=".*astream_events.*")  # v1 is deprecated there
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        if args.profile:
            profile(loop, args.profile, args.profile_n, args.top)
        else:
            run(args, loop)
    finally:
        loop.close()


if __name__ == "__main__":
    main()
