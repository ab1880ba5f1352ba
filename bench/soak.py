"""Soak test of ``lmstream serve``: thousands of streams with random cancellations and faults.

    python -m bench.soak                   # 10,000 streams, 32 at a time
    python -m bench.soak --streams 2000    # a quicker run

The server runs in its own process, serving the fake model (a numbered answer, a small
delay per token). Each request is one scenario, picked at random: a whole stream (its
text must be complete and in order), a stream the client abandons part way, a request
with bad parameters (must be a 400), a non-streamed request, a client whose read time
limit is too short to wait for the first token, an event stream left part way. The
server's resident memory is sampled throughout; the report gives outcome counts, text
completeness and memory over time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.server import serving_process

TOKENS = 30
EXPECTED = " ".join(f"w{i}" for i in range(TOKENS))
BODY = {"model": "m", "prompt": "p", "stream": True, "max_tokens": TOKENS}


def rss_kib(pid: int) -> int:
    """The process's resident memory in KiB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def _stream_text(client: httpx.AsyncClient, stop_after: int | None) -> str:
    texts: list[str] = []
    async with client.stream("POST", "/v1/completions", json=BODY) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                choices = json.loads(line[6:])["choices"]
                texts.extend(c["text"] for c in choices)
                if stop_after is not None and len(texts) >= stop_after:
                    return "cancelled"
    return "".join(texts)


async def complete_stream(client: httpx.AsyncClient) -> str:
    text = await _stream_text(client, None)
    return "complete" if text == EXPECTED else "INCOMPLETE"


async def abandoned_stream(client: httpx.AsyncClient) -> str:
    return await _stream_text(client, random.randint(1, TOKENS - 1))


async def bad_request(client: httpx.AsyncClient) -> str:
    body = random.choice([{**BODY, "n": 2}, {**BODY, "max_tokens": -1}, {"prompt": 5}])
    response = await client.post("/v1/completions", json=body)
    return "rejected 400" if response.status_code == 400 else f"UNEXPECTED {response.status_code}"


async def plain_request(client: httpx.AsyncClient) -> str:
    response = await client.post("/invoke", json={"input": "p", "kwargs": {"max_tokens": 5}})
    first_five = "".join(re.findall(r"\s*\S+\s*", EXPECTED)[:5])  # the fake's word tokens
    ok = response.status_code == 200 and response.json()["output"] == first_five
    return "complete" if ok else "INCOMPLETE"


async def impatient_client(client: httpx.AsyncClient) -> str:
    try:
        await client.post("/v1/completions", json=BODY, timeout=httpx.Timeout(5, read=0.001))
    except httpx.ReadTimeout:
        return "client timed out"
    return "finished within its limit"


async def abandoned_events(client: httpx.AsyncClient) -> str:
    async with client.stream("POST", "/stream_events", json={"input": "p"}) as response:
        seen = 0
        async for line in response.aiter_lines():
            seen += line.startswith("data: ")
            if seen >= 5:
                return "cancelled"
    return "complete"


SCENARIOS: list[tuple[float, Callable[[httpx.AsyncClient], Awaitable[str]]]] = [
    (0.55, complete_stream), (0.15, abandoned_stream), (0.10, bad_request),
    (0.08, plain_request), (0.06, impatient_client), (0.06, abandoned_events),
]  # fmt: skip


async def soak(url: str, pid: int, streams: int, concurrency: int) -> dict[str, Any]:
    outcomes: Counter[str] = Counter()
    memory: list[tuple[int, int]] = [(0, rss_kib(pid))]
    weights = [w for w, _ in SCENARIOS]
    left = iter(range(streams))
    limits = httpx.Limits(max_connections=concurrency * 2)

    async def worker(client: httpx.AsyncClient) -> None:
        for i in left:
            (scenario,) = random.choices([s for _, s in SCENARIOS], weights)
            name = scenario.__name__.replace("_", " ")
            try:
                outcomes[f"{name}: {await scenario(client)}"] += 1
            except httpx.HTTPError as exc:
                outcomes[f"{name}: TRANSPORT {type(exc).__name__}"] += 1
            if i % 500 == 0:
                memory.append((i, rss_kib(pid)))

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        healthy = (await client.get("/health")).status_code == 200
    memory.append((streams, rss_kib(pid)))
    return {"outcomes": outcomes, "memory": memory, "elapsed": elapsed, "healthy": healthy}


def report(result: dict[str, Any], streams: int) -> None:
    """Print the outcome counts and the memory samples as Markdown."""
    print(f"\n{streams:,} requests in {result['elapsed']:.0f} s; server healthy after: "
          f"{result['healthy']}\n")  # fmt: skip
    print("| outcome | count |\n|---|---|")
    for outcome, count in sorted(result["outcomes"].items()):
        print(f"| {outcome} | {count:,} |")
    print("\n| requests done | server RSS (MiB) |\n|---|---|")
    for done, kib in result["memory"]:
        print(f"| {done:,} | {kib / 1024:.1f} |")
    first, last = result["memory"][1][1], result["memory"][-1][1]
    print(f"\nRSS after the first 500 requests: {first / 1024:.1f} MiB; at the end: "
          f"{last / 1024:.1f} MiB ({(last - first) / 1024:+.1f} MiB)")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the soak and print its report; non-zero if any stream came back incomplete."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.002, help="seconds per token")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    random.seed(args.seed)
    options = ("--option", f"delay={args.delay}", "--option", 'chunking="word"', "--max-waiting",
               "10000")  # fmt: skip
    with serving_process("fake:" + EXPECTED, *options) as (url, pid):
        result = asyncio.run(soak(url, pid, args.streams, args.concurrency))
    report(result, args.streams)
    bad = [o for o in result["outcomes"] if o.split(": ")[1].split()[0].isupper()]
    return 1 if bad or not result["healthy"] else 0


if __name__ == "__main__":
    sys.exit(main())
