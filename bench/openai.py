"""The OpenAI provider against the official ``openai`` SDK on the same local server, and
``abatch`` throughput against the server's own limit, in one process run.

    python -m bench.openai                       # both parts, defaults below
    python -m bench.openai --chunks 1000 --rounds 7 --prompts 1000 --concurrency 64

Part 1, per-chunk client cost: one stream of ``--chunks`` chunks, read by
``lmstream.OpenAI.stream``/``astream``, by the SDK's ``completions.create(stream=True)``
(sync and async), and by a floor (raw httpx, the SSE decoder, ``json.loads``). The
server runs in a process of its own, so this process's CPU time is the client's own
cost. Cases are interleaved and the order rotates each round; ratios are medians of the
per-round ratios (goal: lmstream / SDK <= 1).

Part 2, ``abatch`` of ``--prompts`` prompts with ``max_concurrency=--concurrency``
against the scripted server, next to the server's own limit: the same requests sent
over raw sockets at the same concurrency by a client that does nothing else.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from lmstream._sse import SSEDecoder
from lmstream.providers.openai import OpenAI

SERVER = Path(__file__).resolve().parent.parent / "tests" / "servers" / "scripted.py"
MODEL = "scripted"


def start_server() -> tuple[subprocess.Popen[str], str]:
    """The scripted server (echo handler) in a process of its own, and its base URL."""
    process = subprocess.Popen([sys.executable, str(SERVER)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        process.kill()
        raise RuntimeError("the scripted server did not start")
    return process, url


# -- part 1: per-chunk cost ----------------------------------------------------------------


Cases = dict[str, Callable[[], int]]
"""Each runs one stream and returns how many text chunks it read."""


def _sdk_cases(url: str, prompt: str, n: int, loop: asyncio.AbstractEventLoop) -> tuple[Any, Cases]:
    import openai

    sdk = openai.OpenAI(base_url=url, api_key="sk-bench", max_retries=0)
    asdk = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0)

    def sdk_stream() -> int:
        chunks = sdk.completions.create(
            model=MODEL,
            prompt=prompt,
            max_tokens=n,
            stream=True,
            stream_options={"include_usage": True},
        )
        return len([c for c in chunks if c.choices and c.choices[0].text])

    async def asdk_stream() -> int:
        chunks = await asdk.completions.create(
            model=MODEL,
            prompt=prompt,
            max_tokens=n,
            stream=True,
            stream_options={"include_usage": True},
        )
        return len([c async for c in chunks if c.choices and c.choices[0].text])

    def close() -> None:
        loop.run_until_complete(asdk.close())
        sdk.close()

    return close, {
        "sdk stream": sdk_stream,
        "sdk async stream": lambda: loop.run_until_complete(asdk_stream()),
    }


def _our_cases(url: str, prompt: str, n: int, loop: asyncio.AbstractEventLoop) -> tuple[Any, Cases]:
    ours = OpenAI(MODEL, base_url=url, api_key="sk-bench", max_tokens=n, max_retries=0)
    floor = httpx.Client(timeout=None)
    params = {"model": MODEL, "prompt": prompt, "max_tokens": n, "stream": True,
              "stream_options": {"include_usage": True}}  # fmt: skip

    async def ours_astream() -> int:
        return len([c async for c in ours.astream(prompt)])

    def floor_stream() -> int:
        count, decoder = 0, SSEDecoder()
        with floor.stream("POST", f"{url}/completions", json=params) as response:
            for data in response.iter_bytes():
                for event in decoder.feed(data):
                    if event.data != "[DONE]" and json.loads(event.data)["choices"]:
                        count += 1
        return count

    def close() -> None:
        loop.run_until_complete(ours.aclose())
        ours.close()
        floor.close()

    return close, {
        "lmstream stream": lambda: len(list(ours.stream(prompt))),
        "lmstream astream": lambda: loop.run_until_complete(ours_astream()),
        "floor (httpx+sse+json)": floor_stream,
    }


def _measure(fn: Callable[[], int], repeat: int) -> tuple[float, float, int]:
    gc.collect()
    wall, cpu = time.perf_counter(), time.process_time()
    chunks = sum(fn() for _ in range(repeat))
    return time.perf_counter() - wall, time.process_time() - cpu, chunks


def per_chunk(url: str, n: int, rounds: int, repeat: int) -> dict[str, list[tuple[float, float]]]:
    """Per round and case: (wall µs per chunk, client CPU µs per chunk)."""
    prompt = " ".join(f"w{i}" for i in range(n))
    loop = asyncio.new_event_loop()
    close_ours, ours = _our_cases(url, prompt, n, loop)
    close_sdk, sdk = _sdk_cases(url, prompt, n, loop)
    cases = {**ours, **sdk}
    for fn in cases.values():  # warm up: connections, imports, caches
        assert fn() >= n - 1
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            wall, cpu, chunks = _measure(cases[name], repeat)
            results[name].append((wall / chunks * 1e6, cpu / chunks * 1e6))
    close_ours()
    close_sdk()
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    return results


def report_per_chunk(results: dict[str, list[tuple[float, float]]], n: int) -> None:
    print(f"\nPer-chunk client cost, streams of {n} chunks (median of rounds):")
    print(f"  {'client':26} {'wall µs/chunk':>14} {'CPU µs/chunk':>13}")
    for name, rows in results.items():
        wall = statistics.median(w for w, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        print(f"  {name:26} {wall:14.1f} {cpu:13.1f}")
    for ours, theirs in (("lmstream stream", "sdk stream"),
                         ("lmstream astream", "sdk async stream")):  # fmt: skip
        cpu = statistics.median(
            a[1] / b[1] for a, b in zip(results[ours], results[theirs], strict=True)
        )
        wall = statistics.median(
            a[0] / b[0] for a, b in zip(results[ours], results[theirs], strict=True)
        )
        verdict = "ok" if cpu <= 1.0 else "SLOWER"
        print(f"  {ours} / {theirs}: CPU {cpu:.2f}x, wall {wall:.2f}x  [{verdict}]")


# -- part 2: abatch throughput -------------------------------------------------------------


async def _raw_worker(host: str, port: int, requests: list[bytes]) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    done = 0
    try:
        while requests:
            writer.write(requests.pop())
            buf = b""
            while not buf.endswith(b"0\r\n\r\n"):  # the end of a chunked body
                buf += await reader.read(65536)
            done += 1
    finally:
        writer.close()
        await writer.wait_closed()
    return done


async def raw_limit(url: str, prompts: list[str], concurrency: int) -> float:
    """Requests per second the server answers to a client that does nothing else."""
    parsed = httpx.URL(url)
    host, port = parsed.host, parsed.port or 80
    requests = []
    for prompt in prompts:
        body = json.dumps({"model": MODEL, "prompt": prompt, "stream": False}).encode()
        head = (
            f"POST {parsed.path}/completions HTTP/1.1\r\nHost: {host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        requests.append(head.encode() + body)
    start = time.perf_counter()
    done = await asyncio.gather(*(_raw_worker(host, port, requests) for _ in range(concurrency)))
    assert sum(done) == len(prompts)
    return len(prompts) / (time.perf_counter() - start)


async def lmstream_abatch(url: str, prompts: list[str], concurrency: int) -> float:
    """Prompts per second through ``OpenAI.abatch``."""
    async with OpenAI(MODEL, base_url=url, api_key="sk-bench") as llm:
        await llm.abatch(prompts[:concurrency], config={"max_concurrency": concurrency})
        start = time.perf_counter()
        out = await llm.abatch(prompts, config={"max_concurrency": concurrency})
        elapsed = time.perf_counter() - start
    assert out == [p + " " for p in prompts]
    return len(prompts) / elapsed


async def sdk_gather(url: str, prompts: list[str], concurrency: int) -> float:
    """Prompts per second through the SDK's ``AsyncOpenAI`` under a semaphore."""
    import openai

    client = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0)
    gate = asyncio.Semaphore(concurrency)

    async def one(prompt: str) -> str:
        async with gate:
            answer = await client.completions.create(model=MODEL, prompt=prompt)
            return answer.choices[0].text

    await asyncio.gather(*(one(p) for p in prompts[:concurrency]))
    start = time.perf_counter()
    out = await asyncio.gather(*(one(p) for p in prompts))
    elapsed = time.perf_counter() - start
    await client.close()
    assert out == [p + " " for p in prompts]
    return len(prompts) / elapsed


def throughput(url: str, n: int, concurrency: int, rounds: int) -> dict[str, list[float]]:
    """Per round: requests per second for the raw floor, lmstream's abatch and the SDK."""
    prompts = [f"prompt number {i}" for i in range(n)]
    cases = {"server limit (raw sockets)": raw_limit, "lmstream abatch": lmstream_abatch,
             "sdk gather+semaphore": sdk_gather}  # fmt: skip
    out: dict[str, list[float]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            gc.collect()
            out[name].append(asyncio.run(cases[name](url, prompts, concurrency)))
    return out


def report_throughput(results: dict[str, list[float]], n: int, concurrency: int) -> None:
    print(f"\nabatch of {n} prompts, max_concurrency={concurrency} (best of rounds):")
    limit = max(results["server limit (raw sockets)"])
    for name, rows in results.items():
        best = max(rows)
        print(f"  {name:28} {best:8.0f} req/s   {best / limit:5.2f} of the server's limit")


def main() -> int:
    """Run both parts and print the figures."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.openai", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--chunks", type=int, default=1000, help="chunks per stream")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--repeat", type=int, default=3, help="streams per case per round")
    parser.add_argument("--prompts", type=int, default=1000, help="prompts in the batch")
    parser.add_argument("--concurrency", type=int, default=64, help="max_concurrency")
    args = parser.parse_args()
    process, url = start_server()
    try:
        print(f"scripted server at {url} (own process); python {sys.version.split()[0]}")
        report_per_chunk(per_chunk(url, args.chunks, args.rounds, args.repeat), args.chunks)
        rounds = max(1, args.rounds // 2)
        report_throughput(throughput(url, args.prompts, args.concurrency, rounds),
                          args.prompts, args.concurrency)  # fmt: skip
    finally:
        process.terminate()
        process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
