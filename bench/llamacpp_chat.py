"""ChatLlamaCpp against raw llama-cpp-python's chat completion on the same loaded model.

    python -m bench.llamacpp_chat [--rounds N] [--max-tokens N]
    python -m bench.llamacpp_chat --tools    # how often it calls the right tool, or none

Raw is ``Llama.create_chat_completion(stream=True)``; the paths are ``ChatLlamaCpp.stream``
and ``astream``, with the same messages and sampling at temperature 0. Runs are
interleaved (the order rotates every round) and compared round by round, as in
``bench.llamacpp``. Goal: tokens/s ratio >= 0.97. The CPU ratio (raw's CPU time over the
path's) is disturbed less by other processes than wall time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable, Iterable
from typing import Any

from bench.llamacpp import PROMPT, Timing, _interleave, _overhead, _ratio, _timed
from lmstream.providers.llamacpp_chat import ChatLlamaCpp

RAW = "raw create_chat_completion"
MESSAGES = [{"role": "system", "content": "You are a storyteller."},
            {"role": "user", "content": PROMPT}]  # fmt: skip


def run_raw(chat: ChatLlamaCpp, max_tokens: int) -> Timing:
    """The floor: llama-cpp-python's own streaming chat completion on the same model."""

    def chunks() -> Iterable[str]:
        stream = chat.client.create_chat_completion(
            MESSAGES, max_tokens=max_tokens, temperature=0.0, top_p=chat.top_p,  # type: ignore[arg-type]
            top_k=chat.top_k, repeat_penalty=chat.repeat_penalty, seed=0, stream=True,
        )  # fmt: skip
        return (part["choices"][0]["delta"].get("content") or "" for part in stream)  # type: ignore[union-attr,index]

    return _timed(chunks)


def run_stream(chat: ChatLlamaCpp, max_tokens: int) -> Timing:
    """``ChatLlamaCpp.stream``."""
    return _timed(lambda: (c.text for c in chat.stream(MESSAGES, max_tokens=max_tokens)))


def run_astream(chat: ChatLlamaCpp, max_tokens: int, loop: asyncio.AbstractEventLoop) -> Timing:
    """``ChatLlamaCpp.astream`` (one worker thread per stream)."""

    async def go() -> Timing:
        start, cpu = time.perf_counter(), time.process_time()
        first, parts = 0.0, []
        async for chunk in chat.astream(MESSAGES, max_tokens=max_tokens):
            if chunk.text and not first:
                first = time.perf_counter() - start
            parts.append(chunk.text)
        total = time.perf_counter() - start
        return Timing(first, total, "".join(parts), time.process_time() - cpu)

    return loop.run_until_complete(go())


def measure(rounds: int, max_tokens: int) -> dict[str, Any]:
    """Interleave raw, stream and astream runs; each path's figures, as data."""
    chat = ChatLlamaCpp(temperature=0, seed=0)
    loop = asyncio.new_event_loop()
    tokens = chat.get_num_tokens(run_stream(chat, max_tokens).text)  # warm-up
    paths: dict[str, Callable[[], Timing]] = {
        RAW: lambda: run_raw(chat, max_tokens),
        "ChatLlamaCpp.stream": lambda: run_stream(chat, max_tokens),
        "ChatLlamaCpp.astream": lambda: run_astream(chat, max_tokens, loop),
    }
    runs = _interleave(paths, rounds)
    loop.close()
    raw = runs[RAW]
    return {
        "model": chat.model_name, "n_threads": chat.n_threads, "tokens": tokens,
        "identical_text": all(t.text == raw[0].text for ts in runs.values() for t in ts),
        "paths": {
            name: {
                "tokens_per_s": tokens / statistics.median(t.total for t in runs[name]),
                "ratio": _ratio(raw, runs[name]),
                "cpu_ratio": statistics.median(
                    r.cpu / t.cpu for r, t in zip(raw, runs[name], strict=True)
                ),
                "ttft_overhead_ms": _overhead(raw, runs[name]),
            }
            for name in runs
        },
    }  # fmt: skip


_WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The current weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}  # fmt: skip
_ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two numbers.",
    "parameters": {"type": "object", "properties": {"a": {"type": "number"},
                   "b": {"type": "number"}}, "required": ["a", "b"]}}}  # fmt: skip
_CASES = [
    ("What is the weather in Paris?", "get_weather", {"city": "Paris"}),
    ("Is it raining in London right now?", "get_weather", {"city": "London"}),
    ("Tell me the weather in Tokyo.", "get_weather", {"city": "Tokyo"}),
    ("How warm is it in Madrid today?", "get_weather", {"city": "Madrid"}),
    ("Weather for Berlin please", "get_weather", {"city": "Berlin"}),
    ("What is 2 plus 3?", "add", {"a": 2, "b": 3}),
    ("Add 10 and 32.", "add", {"a": 10, "b": 32}),
    ("What's the sum of 7 and 8?", "add", {"a": 7, "b": 8}),
    ("Compute 100 + 250.", "add", {"a": 100, "b": 250}),
    ("Please add 4 to 9.", "add", {"a": 4, "b": 9}),
]


_NO_TOOL = [
    "Who wrote Hamlet?", "Write a haiku about the sea.", "Hi!", "What is the capital of France?",
    "Tell me a joke.", "How do I boil an egg?", "Translate 'hello' into Spanish.",
    "What colour is the sky?", "Name three fruits.", "Who are you?",
]  # fmt: skip


def tool_reliability() -> None:
    """Ten one-line requests that a tool fits and ten that none does, two tools,
    ``tool_choice="auto"``, temperature 0: how many calls parse, name the right tool and
    carry the right arguments, and how often the model answers in text when no tool fits.
    Then the same ten tool requests with ``tool_choice="required"``, and with
    ``"required"`` and ``parallel_tool_calls=True``, where answers that make more than one
    call are counted. The first call of an answer is judged."""
    chat = ChatLlamaCpp(temperature=0, seed=0, max_tokens=120)
    for choice, parallel in (("auto", None), ("required", None), ("required", True)):
        called = parsed = right = exact = more = 0
        for question, name, args in _CASES:
            message = chat.invoke(
                question, tools=[_WEATHER, _ADD], tool_choice=choice, parallel_tool_calls=parallel
            )
            call = message.tool_calls[0] if message.tool_calls else None
            called += call is not None or bool(message.invalid_tool_calls)
            parsed += call is not None and not message.invalid_tool_calls
            right += call is not None and call["name"] == name
            exact += call is not None and call["name"] == name and call["args"] == args
            more += len(message.tool_calls) + len(message.invalid_tool_calls) > 1
            said = [f"{c['name']} {c['args']}" for c in message.tool_calls]
            print(f"{choice:8} {question:36} -> {said or repr(message.text[:40])}")
        n, how = len(_CASES), f"{choice}{', parallel' if parallel else ''}"
        print(f"{how}: called {called}/{n}, well-formed {parsed}/{called}, right tool "
              f"{right}/{n}, right tool and arguments {exact}/{n}, "
              f"more than one call {more}/{n}")  # fmt: skip
    texts = 0
    for question in _NO_TOOL:
        message = chat.invoke(question, tools=[_WEATHER, _ADD], tool_choice="auto")
        texts += not message.tool_calls and not message.invalid_tool_calls
        said = message.tool_calls[0]["name"] if message.tool_calls else repr(message.text[:40])
        print(f"auto     {question:36} -> {said}")
    print(f"auto, no tool fits: answered in text {texts}/{len(_NO_TOOL)}")


def main() -> None:
    """Parse the command line, measure and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.llamacpp_chat", description=__doc__)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--max-tokens", type=int, default=200)
    parser.add_argument("--tools", action="store_true", help="measure tool-call reliability")
    args = parser.parse_args()
    if args.tools:
        tool_reliability()
        return
    found = measure(args.rounds, args.max_tokens)
    print(f"model {found['model']}, n_threads={found['n_threads']}, {found['tokens']} tokens "
          f"per run, {args.rounds} rounds, identical text: {found['identical_text']}")  # fmt: skip
    print(f"{'path':26} {'tok/s':>7} {'ratio':>6} {'CPU ratio':>9} {'TTFT overhead ms':>17}")
    for name, p in found["paths"].items():
        print(f"{name:26} {p['tokens_per_s']:7.1f} {p['ratio']:6.3f} {p['cpu_ratio']:9.3f} "
              f"{p['ttft_overhead_ms']:17.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
