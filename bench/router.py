"""The router: what it adds to a stream, and how streams end when a backend dies.

    python -m bench.router                     # all three parts, defaults below
    python -m bench.router --streams 40 --clients 400 --backends 4

Part 1, overhead: a backend (``lmstream serve`` with the fake model) emits one token
every 20 ms; sequential streams read it directly (``OpenAI``), through an in-process
``Router``, and through ``lmstream serve --upstream`` (one more HTTP hop), interleaved
in one run. Time to first chunk (TTFT) and the gaps between chunks, p50 and p99; the
router's cost is its TTFT minus the direct one. Then the same for chat: a chat backend
(``serve --chat``) read directly (``ChatOpenAI``), through an in-process ``ChatRouter``
and through ``serve --upstream``'s ``/v1/chat/completions``.

Part 2, a backend killed mid-run: ``--clients`` streams through one ``Router`` over
``--backends`` backends (each stream 12 tokens, 50 ms apart), begun over two seconds;
one backend is killed (SIGKILL) once a third have begun.
Every stream must end complete (its whole text, once) or in a typed error whose partial
text is what the consumer received; the share that completes is reported.

Part 3, cancellation: a consumer stops after two chunks; how long until the backend
sees its connection close.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.server import serving_process
from lmstream import APIError, ChatOpenAI, OpenAI, Router

WORDS = [f"w{i}" for i in range(12)]
TEXT = " ".join(WORDS)
MODEL = f"fake:{TEXT}"
TESTS = Path(__file__).resolve().parent.parent / "tests"


def _backend(delay: float, *options: str) -> Any:
    return serving_process(
        MODEL, "--option", "chunking=word", "--option", f"delay={delay}", *options
    )


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]


# -- part 1: overhead ----------------------------------------------------------------------


async def _one(llm: Any) -> tuple[float, list[float], str]:
    """TTFT, the gaps between chunks, and the text of one stream."""
    start = last = time.perf_counter()
    ttft, gaps, text = 0.0, [], []
    async for chunk in llm.astream("p"):
        chunk = getattr(chunk, "text", chunk)  # a chat model's message chunk: its text
        if not chunk:  # a chat stream's closing chunks (finish reason, usage) carry none
            continue
        now = time.perf_counter()
        if not text:
            ttft = now - start
        else:
            gaps.append(now - last)
        last = now
        text.append(chunk)
    return ttft, gaps, "".join(text)


async def _overhead(cases: dict[str, Any], streams: int) -> dict[str, dict[str, float]]:
    ttfts: dict[str, list[float]] = {name: [] for name in cases}
    gaps: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for _ in range(2):  # warm the connections
        for name in names:
            await _one(cases[name])
    for i in range(streams):
        for name in names[i % len(names) :] + names[: i % len(names)]:  # rotate the order
            ttft, gap, text = await _one(cases[name])
            if text != TEXT:
                raise RuntimeError(f"{name}: wrong text {text!r}")
            ttfts[name].append(ttft)
            gaps[name].extend(gap)
    direct = ttfts[names[0]]
    out = {}
    for name in names:
        t, g = ttfts[name], gaps[name]
        out[name] = {
            "ttft p50 ms": statistics.median(t) * 1e3,
            "ttft p99 ms": _pct(t, 0.99) * 1e3,
            "added ttft p50 ms": (statistics.median(t) - statistics.median(direct)) * 1e3,
            "added ttft p99 ms": (_pct(t, 0.99) - _pct(direct, 0.99)) * 1e3,
            "gap p50 ms": statistics.median(g) * 1e3,
            "gap p99 ms": _pct(g, 0.99) * 1e3,
        }
    return out


def overhead(streams: int) -> dict[str, dict[str, float]]:
    """Part 1: direct vs in-process router vs ``lmstream serve --upstream``, 20 ms/token,
    text then chat; each kind's added TTFT is against its own direct read."""
    with ExitStack() as stack:
        backend, _ = stack.enter_context(_backend(0.02))
        proxy, _ = stack.enter_context(serving_process("fake", "--upstream", backend))
        chat_backend, _ = stack.enter_context(_backend(0.02, "--chat"))
        chat_proxy, _ = stack.enter_context(serving_process("fake", "--upstream", chat_backend))

        async def run() -> dict[str, dict[str, float]]:
            chat_router = Router([chat_backend], model="fake", probe_interval=0).chat_model()
            kinds = [{
                "direct": OpenAI("fake", base_url=backend + "/v1"),
                "Router (in process)": Router([backend], model="fake", probe_interval=0),
                "serve --upstream (one more hop)": OpenAI("fake", base_url=proxy + "/v1"),
            }, {
                "chat, direct": ChatOpenAI("fake", base_url=chat_backend + "/v1"),
                "chat, ChatRouter (in process)": chat_router,
                "chat, serve --upstream": ChatOpenAI("fake", base_url=chat_proxy + "/v1"),
            }]  # fmt: skip
            try:
                out = {}
                for cases in kinds:  # each kind against its own direct read
                    out.update(await _overhead(cases, streams))
                return out
            finally:
                for llm in [llm for cases in kinds for llm in cases.values()]:
                    await llm.aclose()

        return asyncio.run(run())


# -- part 2: a backend killed mid-run ------------------------------------------------------


class _Begun:
    """Counts streams that have their first chunk; ``enough`` is set at ``at`` of them."""

    def __init__(self, at: int) -> None:
        self.count, self.at, self.enough = 0, at, asyncio.Event()

    def one(self) -> None:
        self.count += 1
        if self.count >= self.at:
            self.enough.set()


async def _client(router: Router, begun: _Begun, after: float) -> str:
    """One stream, begun ``after`` seconds from now, and its outcome: ``complete``,
    ``typed error with its partial text`` or what went wrong."""
    await asyncio.sleep(after)
    got: list[str] = []
    try:
        async for chunk in router.astream("p"):
            if not got:
                begun.one()
            got.append(chunk)
    except APIError as exc:
        consistent = exc.partial_text == "".join(got) and TEXT.startswith(exc.partial_text)
        return "typed error with its partial text" if consistent else "inconsistent error"
    except Exception as exc:
        return f"untyped error {type(exc).__name__}"
    return "complete" if "".join(got) == TEXT else "wrong text"


async def _killed(urls: list[str], victim: int, clients: int) -> dict[str, Any]:
    router = Router(urls, model="fake", probe_interval=0.5)
    begun = _Begun(clients // 3)  # the kill comes once a third of the streams are under way
    spread = 2.0  # the streams begin over two seconds, so some begin after the kill
    tasks = [
        asyncio.ensure_future(_client(router, begun, spread * i / clients)) for i in range(clients)
    ]
    await begun.enough.wait()
    os.kill(victim, signal.SIGKILL)
    killed_at = time.perf_counter()
    outcomes = await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - killed_at
    stats = router.stats()
    await router.aclose()
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome] = counts.get(outcome, 0) + 1
    return {
        "streams": clients,
        **counts,
        "share complete": counts.get("complete", 0) / clients,
        "retried on another backend": sum(s["retried_elsewhere"] for s in stats.values()),
        "seconds from the kill to the last stream's end": elapsed,
    }


def killed(clients: int, backends: int) -> dict[str, Any]:
    """Part 2: ``clients`` concurrent streams over ``backends`` backends, one killed."""
    with ExitStack() as stack:
        served = [stack.enter_context(_backend(0.05)) for _ in range(backends)]
        return asyncio.run(_killed([url for url, _ in served], served[0][1], clients))


# -- part 3: cancellation ------------------------------------------------------------------


def cancellation(trials: int) -> dict[str, float]:
    """Part 3: from the consumer's ``close()`` to the backend seeing the disconnect."""
    sys.path.insert(0, str(TESTS))
    from servers.scripted import ScriptedServer, stream

    delays = []
    with ScriptedServer() as server, Router([server.url], probe_interval=0) as router:
        for _ in range(trials):
            server.script(stream([f"{w} " for w in WORDS * 20], delay=0.02))
            chunks = router.stream("p")
            next(chunks), next(chunks)
            closed = time.monotonic()
            chunks.close()
            record = server.requests[-1]
            server.wait(lambda r=record: r.disconnected is not None)
            delays.append((record.disconnected or closed) - closed)
    return {
        "trials": trials,
        "p50 ms": statistics.median(delays) * 1e3,
        "max ms": max(delays) * 1e3,
    }


def _print(title: str, rows: dict[str, Any]) -> None:
    print(f"\n{title}\n")
    print("| measure | value |\n|---|---|")
    for key, value in rows.items():
        print(f"| {key} | {f'{value:,.3f}' if isinstance(value, float) else value} |")


def main(argv: list[str] | None = None) -> int:
    """Run the three parts and print Markdown tables."""
    parser = argparse.ArgumentParser(prog="python -m bench.router", description=__doc__)
    parser.add_argument("--streams", type=int, default=40, help="streams per case, part 1")
    parser.add_argument("--clients", type=int, default=400, help="concurrent streams, part 2")
    parser.add_argument("--backends", type=int, default=4, help="backends, part 2")
    parser.add_argument("--trials", type=int, default=20, help="cancellations, part 3")
    args = parser.parse_args(argv)
    for name, rows in overhead(args.streams).items():
        _print(f"Overhead: {name}, one token every 20 ms", rows)
    _print(f"{args.clients} streams over {args.backends} backends, one killed",
           killed(args.clients, args.backends))  # fmt: skip
    _print("Cancellation reaching the backend", cancellation(args.trials))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def measure(quick: bool) -> dict[str, Any]:
    """All three parts, for ``python -m bench``."""
    streams, clients, trials = (15, 200, 10) if quick else (40, 400, 20)
    return {
        "overhead": overhead(streams),
        "killed": killed(clients, 4),
        "cancellation": cancellation(trials),
        "streams": streams,
    }


def tables(router: dict[str, Any]) -> str:
    """The section of ``docs/benchmarks.md`` for these results."""
    from bench._util import render

    def value(v: Any) -> str:
        return f"{v:,.3f}" if isinstance(v, float) else str(v)

    measures = list(next(iter(router["overhead"].values())))
    rows = [[name, *(f"{r[m]:.2f}" for m in measures)] for name, r in router["overhead"].items()]
    killed = [[k, value(v)] for k, v in router["killed"].items()]
    cancel = [[k, value(v)] for k, v in router["cancellation"].items()]
    return (
        f"A backend emitting one token every 20 ms, {router['streams']} sequential streams per "
        "case, interleaved: read directly, through an in-process `Router`, and through "
        "`lmstream serve --upstream` (a whole server hop); then the same for chat (a chat "
        "backend, `ChatRouter`), its added TTFT against its own direct read:\n\n"
        f"{render(['path', *measures], rows, markdown=True)}\n\n"
        "Streams over 4 backends (12 tokens each, 50 ms apart, begun over two seconds); one "
        "backend is killed once a third have begun. Each stream ends complete or in a typed "
        "error holding exactly the text its consumer received:\n\n"
        f"{render(['measure', 'value'], killed, markdown=True)}\n\n"
        "From a consumer's `close()` after two chunks to the backend seeing the disconnect:\n\n"
        f"{render(['measure', 'value'], cancel, markdown=True)}\n"
    )
