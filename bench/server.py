"""Load on ``lmstream serve``: many SSE clients at once, and the embedded model through HTTP.

    python -m bench.server                 # 200 clients on the fake model, then the embedded one
    python -m bench.server --clients 400 --tokens 50 --delay 0.02
    python -m bench.server --skip-local    # only the fake-model load test

1. The server runs in its own process (``lmstream serve``) serving the fake model with a
   delay per token; N clients stream ``/v1/completions`` at once from one asyncio process.
   Every stream's text is checked (numbered tokens: nothing lost, nothing reordered), and
   the report gives delivered tokens/s and the p50/p99 gap between a client's tokens.
2. The embedded SmolLM2 model: tokens/s of ``LlamaCpp().stream`` in this process vs the
   same model streamed through ``lmstream serve`` (same prompt, seed and max_tokens,
   runs interleaved). The goal is a ratio of at least 0.95.
3. The same for chat: ``ChatLlamaCpp().stream`` in this process vs ``lmstream serve --chat``
   streaming ``/v1/chat/completions``, with this process's CPU time per chunk on each path
   (in process, that includes the model's own work).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(model: str, *options: str) -> Iterator[str]:
    """``lmstream serve`` in a subprocess; yields its base URL."""
    with serving_process(model, *options) as (url, _):
        yield url


@contextlib.contextmanager
def serving_process(model: str, *options: str) -> Iterator[tuple[str, int]]:
    """``lmstream serve`` in a subprocess; yields its base URL and its pid."""
    port = _port()
    command = [sys.executable, "-m", "lmstream", "serve", "-m", model, "--port", str(port),
               "--log-level", "warning", "--max-waiting", "1000", *options]  # fmt: skip
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/health").status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the server for {model} did not start")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=60)


async def _one_stream(client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[str, list[float]]:
    texts, times = [], []
    async with client.stream("POST", "/v1/completions", json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                choice = json.loads(line[6:])["choices"][0]
                if choice["text"]:
                    texts.append(choice["text"])
                    times.append(time.perf_counter())
    return "".join(texts), times


async def _load(url: str, clients: int, tokens: int) -> tuple[list[str], list[list[float]], float]:
    limits = httpx.Limits(max_connections=clients + 10, max_keepalive_connections=clients + 10)
    body = {"model": "m", "prompt": "p", "stream": True, "max_tokens": tokens}
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=600) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(_one_stream(client, body) for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    return [r[0] for r in results], [r[1] for r in results], elapsed


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def fake_load(clients: int, tokens: int, delay: float) -> dict[str, Any]:
    """N concurrent streams from the fake model through the server."""
    expected = "".join(f"t{i} " for i in range(tokens))
    model = "fake:" + expected.strip()
    with serving(model, "--option", f"delay={delay}", "--option", 'chunking="word"') as url:
        texts, times, elapsed = asyncio.run(_load(url, clients, tokens))
    complete = sum(t.strip() == expected.strip() for t in texts)
    gaps = [b - a for ts in times for a, b in itertools.pairwise(ts)]
    delivered = sum(len(ts) for ts in times)
    return {
        "clients": clients, "tokens per stream": tokens, "delay per token (ms)": delay * 1000,
        "complete streams": f"{complete}/{clients}", "delivered tokens/s": delivered / elapsed,
        "server's own limit (tokens/s)": clients / delay,
        "p50 gap (ms)": _percentile(gaps, 0.50) * 1000,
        "p99 gap (ms)": _percentile(gaps, 0.99) * 1000,
        "wall (s)": elapsed,
    }  # fmt: skip


def _timed(texts: Iterator[str]) -> tuple[int, float, float, float]:
    """Chunks with text, time to the first, mean gap after it, and this process's CPU time
    per chunk, for a stream of texts."""
    times = []
    cpu, t0 = time.process_time(), time.perf_counter()
    for text in texts:
        if text:
            times.append(time.perf_counter())
    cpu = time.process_time() - cpu
    return (
        len(times),
        times[0] - t0,
        (times[-1] - times[0]) / max(1, len(times) - 1),
        cpu / len(times),
    )


def _served(client: httpx.Client, path: str, body: dict[str, Any]) -> Iterator[str]:
    """The text of each frame of a streamed completion (``path``: text or chat)."""
    with client.stream("POST", path, json=body, timeout=300) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    yield choice.get("text") or (choice.get("delta") or {}).get("content") or ""


def _through_server(
    client: httpx.Client, prompt: str, tokens: int
) -> tuple[int, float, float, float]:
    body = {"model": "m", "prompt": prompt, "stream": True, "max_tokens": tokens,
            "temperature": 0, "seed": 1}  # fmt: skip
    return _timed(_served(client, "/v1/completions", body))


def _in_process(llm: Any, prompt: str, tokens: int) -> tuple[int, float, float, float]:
    return _timed(llm.stream(prompt, max_tokens=tokens, temperature=0, seed=1))


def _compare(model: Any, served: Any, warm: Any, rounds: int) -> dict[str, Any]:
    """In-process runs against served ones of the same model, interleaved round by round."""
    ratios, local, remote = [], [], []
    warm()
    for _ in range(rounds):
        local.append(model())
        remote.append(served())
        ratios.append(local[-1][2] / remote[-1][2])
    return {
        "rounds": rounds, "tokens per stream": remote[-1][0],
        "in-process tokens/s (best)": 1 / min(r[2] for r in local),
        "served tokens/s (best)": 1 / min(r[2] for r in remote),
        "served / in-process tokens/s (median of rounds)": statistics.median(ratios),
        "time to first token in-process (ms, best)": 1000 * min(r[1] for r in local),
        "time to first token served (ms, best)": 1000 * min(r[1] for r in remote),
        "client CPU per chunk in-process, model included (ms, median)":
            1000 * statistics.median(r[3] for r in local),
        "client CPU per chunk served (ms, median)": 1000 * statistics.median(r[3] for r in remote),
    }  # fmt: skip


def local_model(rounds: int, tokens: int) -> dict[str, Any]:
    """The embedded model in-process vs through the server, interleaved: the steady
    rate between the first and the last token, and the time to the first token."""
    from lmstream import LlamaCpp

    prompt = "Write a long story about a cat who learns to sail across the ocean."
    llm = LlamaCpp()
    # one client for all requests: a new httpx client per request costs tens of ms
    with serving("llamacpp") as url, httpx.Client(base_url=url) as client:

        def warm() -> None:
            _through_server(client, prompt, 8)
            _in_process(llm, prompt, 8)

        return _compare(
            lambda: _in_process(llm, prompt, tokens),
            lambda: _through_server(client, prompt, tokens), warm, rounds,
        )  # fmt: skip


CHAT = [
    {"role": "system", "content": "You are a storyteller."},
    {"role": "user", "content": "Write a long story about a cat who learns to sail."},
]


def chat_model(rounds: int, tokens: int) -> dict[str, Any]:
    """The embedded chat model, ``ChatLlamaCpp.stream`` in-process vs ``lmstream serve
    --chat`` streaming ``/v1/chat/completions``, interleaved as ``local_model``."""
    from lmstream import ChatLlamaCpp

    chat = ChatLlamaCpp()
    settings = {"max_tokens": tokens, "temperature": 0, "seed": 1}
    body = {"model": "m", "messages": CHAT, "stream": True, **settings}
    with serving("llamacpp", "--chat") as url, httpx.Client(base_url=url) as client:

        def served() -> tuple[int, float, float, float]:
            return _timed(_served(client, "/v1/chat/completions", body))

        def local() -> tuple[int, float, float, float]:
            return _timed(c.text for c in chat.stream(CHAT, **settings))

        return _compare(local, served, lambda: (served(), local()), rounds)


def _print(title: str, rows: dict[str, Any]) -> None:
    print(f"\n{title}\n")
    print("| measure | value |\n|---|---|")
    for key, value in rows.items():
        shown = f"{value:,.2f}" if isinstance(value, float) else str(value)
        print(f"| {key} | {shown} |")


def main(argv: list[str] | None = None) -> int:
    """Run both measurements and print Markdown tables."""
    parser = argparse.ArgumentParser(prog="python -m bench.server", description=__doc__)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--delay", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--local-tokens", type=int, default=200)
    parser.add_argument("--skip-local", action="store_true")
    args = parser.parse_args(argv)
    _print("Fake model, concurrent SSE clients", fake_load(args.clients, args.tokens, args.delay))
    if not args.skip_local:
        _print("Embedded model: through the server vs in-process",
               local_model(args.rounds, args.local_tokens))  # fmt: skip
        _print("Embedded chat model: through the server vs in-process",
               chat_model(args.rounds, args.local_tokens))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
