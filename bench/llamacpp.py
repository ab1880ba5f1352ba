"""LlamaCpp against raw llama-cpp-python on the same loaded model, in one process run.

    python -m bench.llamacpp                 # stream / astream vs create_completion(stream=True)
    python -m bench.llamacpp --threads       # tokens/s for n_threads 1 and 2, quiet and busy

Runs are interleaved (the order rotates every round) and compared round by round, so
drift on a shared machine cancels out. Goals: tokens/s ratio >= 0.97, time-to-first-token
overhead <= 2 ms. The CPU ratio (raw's CPU time over the path's, all threads of the
process) is disturbed less by other processes than wall time. Absolute figures are
context only.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from lmstream.providers.llamacpp import LlamaCpp

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
RAW = "raw create_completion"


@dataclass
class Timing:
    """One run: time to the first text, total time, the text, CPU time of the process."""

    ttft: float
    total: float
    text: str
    cpu: float = 0.0


def _timed(chunks: Callable[[], Iterable[str]]) -> Timing:
    start, cpu = time.perf_counter(), time.process_time()
    first, parts = 0.0, []
    for text in chunks():
        if text and not first:
            first = time.perf_counter() - start
        parts.append(text)
    total = time.perf_counter() - start
    return Timing(first, total, "".join(parts), time.process_time() - cpu)


def run_raw(llm: LlamaCpp, prompt: str, max_tokens: int) -> Timing:
    """The floor: llama-cpp-python's own streaming completion on the same model."""
    raw = llm.client
    text_of = raw._model.token_get_text
    template = Jinja2ChatFormatter(
        raw.metadata["tokenizer.chat_template"],
        eos_token=text_of(raw.token_eos()),
        bos_token=text_of(raw.token_bos()),
    )

    def chunks() -> Iterable[str]:
        text = template(messages=[{"role": "user", "content": prompt}]).prompt
        stream = raw.create_completion(
            text, max_tokens=max_tokens, temperature=0.0, top_p=llm.top_p, top_k=llm.top_k,
            repeat_penalty=llm.repeat_penalty, seed=0, stream=True,
        )  # fmt: skip
        return (part["choices"][0]["text"] for part in stream)  # type: ignore[index]

    return _timed(chunks)


def run_stream(llm: LlamaCpp, prompt: str, max_tokens: int) -> Timing:
    """``LlamaCpp.stream``."""
    return _timed(lambda: llm.stream(prompt, max_tokens=max_tokens))


def run_astream(
    llm: LlamaCpp, prompt: str, max_tokens: int, loop: asyncio.AbstractEventLoop
) -> Timing:
    """``LlamaCpp.astream`` (through the core's one worker thread per stream)."""

    async def go() -> Timing:
        start, cpu = time.perf_counter(), time.process_time()
        first, parts = 0.0, []
        async for text in llm.astream(prompt, max_tokens=max_tokens):
            if text and not first:
                first = time.perf_counter() - start
            parts.append(text)
        total = time.perf_counter() - start
        return Timing(first, total, "".join(parts), time.process_time() - cpu)

    return loop.run_until_complete(go())


def _interleave(paths: dict[str, Callable[[], Timing]], rounds: int) -> dict[str, list[Timing]]:
    names = list(paths)
    runs: dict[str, list[Timing]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names[i % 3 :] + names[: i % 3]:
            runs[name].append(paths[name]())
    return runs


def _paths(
    llm: LlamaCpp, max_tokens: int, loop: asyncio.AbstractEventLoop
) -> dict[str, Callable[[], Timing]]:
    return {
        RAW: lambda: run_raw(llm, PROMPT, max_tokens),
        "LlamaCpp.stream": lambda: run_stream(llm, PROMPT, max_tokens),
        "LlamaCpp.astream": lambda: run_astream(llm, PROMPT, max_tokens, loop),
    }


def measure(rounds: int, max_tokens: int, n_threads: int | None) -> dict[str, Any]:
    """Interleave raw, stream and astream runs; the figures of each path, as data.

    Throughput comes from ``rounds`` full runs; time to first token from 8x as many
    runs of 2 tokens, which are short enough to repeat until the noise settles.
    """
    llm = LlamaCpp(temperature=0, seed=0, n_threads=n_threads)
    loop = asyncio.new_event_loop()
    tokens = llm.get_num_tokens(run_stream(llm, PROMPT, max_tokens).text)  # warm-up
    long = _interleave(_paths(llm, max_tokens, loop), rounds)
    short = _interleave(_paths(llm, 2, loop), rounds * 8)
    loop.close()
    raw = long[RAW]
    paths = {
        name: {
            "tokens_per_s": tokens / statistics.median(t.total for t in long[name]),
            "ratio": _ratio(raw, long[name]),
            "cpu_ratio": statistics.median(
                r.cpu / t.cpu for r, t in zip(raw, long[name], strict=True)
            ),
            "ttft_ms": statistics.median(t.ttft for t in short[name]) * 1000,
            "ttft_overhead_ms": _overhead(short[RAW], short[name]),
        }
        for name in long
    }
    return {
        "model": llm.model_name, "n_threads": llm.n_threads, "tokens": tokens,
        "rounds": rounds, "ttft_rounds": rounds * 8,
        "identical_text": all(t.text == raw[0].text for ts in long.values() for t in ts),
        "paths": paths,
    }  # fmt: skip


def compare(rounds: int, max_tokens: int, n_threads: int | None) -> None:
    """Print ``measure``'s figures as a table."""
    found = measure(rounds, max_tokens, n_threads)
    print(f"model {found['model']}, n_threads={found['n_threads']}, {found['tokens']} tokens "
          f"per run, {rounds} rounds (+{found['ttft_rounds']} for TTFT), identical text: "
          f"{found['identical_text']}")  # fmt: skip
    print(f"{'path':24} {'tok/s':>7} {'ratio':>6} {'CPU ratio':>9} {'TTFT ms':>8} "
          f"{'TTFT overhead ms':>17}")  # fmt: skip
    for name, p in found["paths"].items():
        print(f"{name:24} {p['tokens_per_s']:7.1f} {p['ratio']:6.3f} {p['cpu_ratio']:9.3f} "
              f"{p['ttft_ms']:8.2f} {p['ttft_overhead_ms']:17.2f}")  # fmt: skip


def _ratio(raw: list[Timing], runs: list[Timing]) -> float:
    """Median over rounds of this path's tokens/s over raw's in the same round."""
    return statistics.median(r.total / t.total for r, t in zip(raw, runs, strict=True))


def _overhead(raw: list[Timing], runs: list[Timing]) -> float:
    """Median over rounds of this path's time to first token minus raw's, in ms."""
    return statistics.median((t.ttft - r.ttft) * 1000 for r, t in zip(raw, runs, strict=True))


def _rate(llm: LlamaCpp, n_threads: int, max_tokens: int) -> float:
    rates = []
    for _ in range(3):
        t = _timed(lambda: llm.stream(PROMPT, max_tokens=max_tokens, n_threads=n_threads))
        rates.append((llm.get_num_tokens(t.text) - 1) / (t.total - t.ttft))
    return statistics.median(rates)


def threads(max_tokens: int) -> None:
    """Decode tokens/s for n_threads 1 and 2, on a quiet machine and beside one busy process."""
    llm = LlamaCpp(temperature=0, seed=0)
    llm.invoke(PROMPT, max_tokens=4)  # warm-up
    print(f"{'n_threads':>9} {'quiet tok/s':>12} {'busy tok/s':>11}")
    for n in (1, 2):
        quiet = _rate(llm, n, max_tokens)
        busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        try:
            time.sleep(0.5)
            loaded = _rate(llm, n, max_tokens)
        finally:
            busy.kill()
            busy.wait()
        print(f"{n:9} {quiet:12.1f} {loaded:11.1f}")


def main() -> None:
    """Parse the command line and run one of the two benchmarks."""
    parser = argparse.ArgumentParser(prog="python -m bench.llamacpp", description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--n-threads", type=int, default=None)
    parser.add_argument("--threads", action="store_true", help="measure the threads knob")
    args = parser.parse_args()
    if args.threads:
        threads(args.max_tokens)
    else:
        compare(args.rounds, args.max_tokens, args.n_threads)


if __name__ == "__main__":
    main()
