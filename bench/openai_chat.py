"""ChatOpenAI against the official ``openai`` SDK's chat completions on the same local
server: client CPU per streamed chunk, in one process run.

    python -m bench.openai_chat                      # defaults below
    python -m bench.openai_chat --chunks 1000 --rounds 7

One stream of ``--chunks`` deltas, read by ``ChatOpenAI.stream``/``astream``, by the
SDK's ``chat.completions.create(stream=True)`` (sync and async), and by a floor (raw
httpx, the SSE decoder, ``json.loads``). The scripted chat server runs in a process of
its own, so this process's CPU time is the client's own cost. Cases are interleaved and
the order rotates each round; ratios are medians of the per-round ratios (goal:
lmstream / SDK <= 0.3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from bench.openai import Cases, _measure
from lmstream._sse import SSEDecoder
from lmstream.providers.openai_chat import ChatOpenAI

SERVER = Path(__file__).resolve().parent.parent / "tests" / "servers" / "scripted_chat.py"
MODEL = "scripted"
GOAL = 0.3


def start_server() -> tuple[subprocess.Popen[str], str]:
    """The scripted chat server in a process of its own, and its base URL."""
    process = subprocess.Popen([sys.executable, str(SERVER)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("http"):
        process.kill()
        raise RuntimeError("the scripted chat server did not start")
    return process, url


def _cases(url: str, text: str, n: int, loop: asyncio.AbstractEventLoop) -> tuple[Any, Cases]:
    import openai

    messages = [{"role": "user", "content": text}]
    params: dict[str, Any] = {
        "model": MODEL, "messages": messages, "max_tokens": n, "stream": True,
        "stream_options": {"include_usage": True},
    }  # fmt: skip
    ours = ChatOpenAI(MODEL, base_url=url, api_key="sk-bench", max_tokens=n, max_retries=0)
    sdk = openai.OpenAI(base_url=url, api_key="sk-bench", max_retries=0)
    asdk = openai.AsyncOpenAI(base_url=url, api_key="sk-bench", max_retries=0)
    floor = httpx.Client(timeout=None)

    def sdk_stream() -> int:
        chunks = sdk.chat.completions.create(**params)
        return len([c for c in chunks if c.choices and c.choices[0].delta.content])

    async def asdk_stream() -> int:
        chunks = await asdk.chat.completions.create(**params)
        return len([c async for c in chunks if c.choices and c.choices[0].delta.content])

    async def ours_astream() -> int:
        return len([c async for c in ours.astream(text) if c.content])

    def floor_stream() -> int:
        count, decoder = 0, SSEDecoder()
        with floor.stream("POST", f"{url}/chat/completions", json=params) as response:
            for data in response.iter_bytes():
                for event in decoder.feed(data):
                    if event.data != "[DONE]" and json.loads(event.data)["choices"]:
                        count += 1
        return count

    def close() -> None:
        loop.run_until_complete(ours.aclose())
        loop.run_until_complete(asdk.close())
        ours.close(), sdk.close(), floor.close()

    return close, {
        "lmstream stream": lambda: len([c for c in ours.stream(text) if c.content]),
        "lmstream astream": lambda: loop.run_until_complete(ours_astream()),
        "sdk stream": sdk_stream,
        "sdk async stream": lambda: loop.run_until_complete(asdk_stream()),
        "floor (httpx+sse+json)": floor_stream,
    }


def per_chunk(url: str, n: int, rounds: int, repeat: int) -> dict[str, list[tuple[float, float]]]:
    """Per round and case: (wall µs per chunk, client CPU µs per chunk)."""
    text = " ".join(f"w{i}" for i in range(n))
    loop = asyncio.new_event_loop()
    close, cases = _cases(url, text, n, loop)
    for fn in cases.values():  # warm up: connections, imports, caches
        assert fn() >= n - 1
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    names = list(cases)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            wall, cpu, chunks = _measure(cases[name], repeat)
            results[name].append((wall / chunks * 1e6, cpu / chunks * 1e6))
    close()
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    return results


def report(results: dict[str, list[tuple[float, float]]], n: int) -> None:
    print(f"\nChat: per-chunk client cost, streams of {n} deltas (median of rounds):")
    print(f"  {'client':26} {'wall µs/chunk':>14} {'CPU µs/chunk':>13}")
    for name, rows in results.items():
        wall = statistics.median(w for w, _ in rows)
        cpu = statistics.median(c for _, c in rows)
        print(f"  {name:26} {wall:14.1f} {cpu:13.1f}")
    for ours, theirs in (("lmstream stream", "sdk stream"),
                         ("lmstream astream", "sdk async stream")):  # fmt: skip
        pairs = list(zip(results[ours], results[theirs], strict=True))
        cpu = statistics.median(a[1] / b[1] for a, b in pairs)
        wall = statistics.median(a[0] / b[0] for a, b in pairs)
        verdict = "ok" if cpu <= GOAL else f"OVER {GOAL}x"
        print(f"  {ours} / {theirs}: CPU {cpu:.2f}x, wall {wall:.2f}x  [{verdict}]")


def main() -> int:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.openai_chat", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--chunks", type=int, default=1000, help="deltas per stream")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--repeat", type=int, default=3, help="streams per case per round")
    args = parser.parse_args()
    process, url = start_server()
    try:
        print(f"scripted chat server at {url} (own process); python {sys.version.split()[0]}")
        report(per_chunk(url, args.chunks, args.rounds, args.repeat), args.chunks)
    finally:
        process.terminate()
        process.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
