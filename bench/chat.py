"""Chat models against langchain-core's ``BaseChatModel``, in one process run.

    python -m bench.chat                # N = 100 / 1,000 (a minute or two)
    python -m bench.chat --quick        # N = 1,000, fewer rounds
    python -m bench.chat --markdown     # the table as Markdown
    python -m bench.chat --only chat-astream,chat-stream   # some paths

The same fake provider is written against both libraries: one ``AIMessageChunk`` per token
from a pre-built list of N strings (``_stream``, ``_astream``), the joined message for the
non-streaming hook. Each base class reports the chunks itself (langchain-core's
``BaseChatModel.stream`` calls ``on_llm_new_token`` for every chunk), so neither provider
does. Budgets are those of DESIGN §5 and the chat issue: ``stream()`` ≤ 1/10,
``astream()`` ≤ 1/15, ``astream_events`` v2 ≤ 1/20, ``prompt | chat | parser`` events ≤ 1/20.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models.chat_models import BaseChatModel as LcChatModel
from langchain_core.messages import AIMessage as LcAIMessage
from langchain_core.messages import AIMessageChunk as LcAIMessageChunk
from langchain_core.output_parsers import StrOutputParser as LcParser
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.prompts import ChatPromptTemplate as LcChatPrompt

import lmstream
from bench._util import interleave, render
from bench.core import (
    HEADERS,
    PROMPT,
    Path,
    Row,
    astream_cases,
    chain_cases,
    events_cases,
    invoke_cases,
    make_tokens,
    stream_cases,
)

QUESTION = {"q": PROMPT}
MESSAGES = [("human", "{q}")]


class LcChat(LcChatModel):
    """langchain-core: one message chunk per scripted token."""

    tokens: list[str]

    @property
    def _llm_type(self) -> str:
        return "bench-chat"

    def _generate(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> ChatResult:
        message = LcAIMessage(content="".join(self.tokens))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> Iterator[ChatGenerationChunk]:
        for text in self.tokens:
            yield ChatGenerationChunk(message=LcAIMessageChunk(content=text))

    async def _astream(
        self, messages: Any, stop: Any = None, run_manager: Any = None, **kw: Any
    ) -> AsyncIterator[ChatGenerationChunk]:
        for text in self.tokens:
            yield ChatGenerationChunk(message=LcAIMessageChunk(content=text))


class LmChat(lmstream.BaseChatModel):
    """lmstream: one message chunk per scripted token."""

    tokens: list[str]

    def _call(self, messages: Any, stop: Any = None, **kw: Any) -> str:
        return "".join(self.tokens)

    def _stream(
        self, messages: Any, stop: Any = None, **kw: Any
    ) -> Iterator[lmstream.AIMessageChunk]:
        for text in self.tokens:
            yield lmstream.AIMessageChunk(text)

    async def _astream(
        self, messages: Any, stop: Any = None, **kw: Any
    ) -> AsyncIterator[lmstream.AIMessageChunk]:
        for text in self.tokens:
            yield lmstream.AIMessageChunk(text)


@dataclass
class ChatSetup:
    """Both libraries' chat model and chain over the same N tokens (the shape of
    ``bench.core.Setup``, so its case builders apply)."""

    loop: asyncio.AbstractEventLoop
    tokens: list[str]
    lm: Any
    lc: Any
    lm_chain: Any
    lc_chain: Any

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop, n: int) -> ChatSetup:
        tokens = make_tokens(n)
        lm, lc = LmChat(tokens=tokens), LcChat(tokens=tokens)
        lm_prompt = lmstream.ChatPromptTemplate.from_messages(MESSAGES)
        lm_chain = lm_prompt | lm | lmstream.StrOutputParser()
        lc_chain = LcChatPrompt.from_messages(MESSAGES) | lc | LcParser()
        return cls(loop, tokens, lm, lc, lm_chain, lc_chain)


PATHS = [
    Path("chat-stream", "chat stream()", stream_cases, 1 / 10),
    Path("chat-astream", "chat astream()", astream_cases, 1 / 15),
    Path("chat-events-v2", "chat astream_events v2", events_cases("v2"), 1 / 20),
    Path("chat-chain-stream", "prompt | chat | parser stream()", chain_cases("stream")),
    Path(
        "chat-chain-events-v2",
        "prompt | chat | parser astream_events v2",
        chain_cases("events"),
        1 / 20,
    ),
    Path("chat-invoke", "chat invoke() [µs/call]", invoke_cases, fixed=10),
]


def measure_path(
    path: Path, loop: asyncio.AbstractEventLoop, sizes: tuple[int, ...], rounds: int, target: float
) -> list[Row]:
    """Every N of one path, each an interleaved comparison."""
    rows = []
    for n in [path.fixed] if path.fixed is not None else sizes:
        cases = path.make(ChatSetup.of(loop, n))  # type: ignore[arg-type]
        units = path.units if path.fixed is not None else n
        row = Row(path, n, interleave(cases, units=units, rounds=rounds, target=target))
        rows.append(row)
        print("  " + "  ".join(c for c in row.cells()[:7] if c), file=sys.stderr, flush=True)
    return rows


async def _events(runnable: Any, value: Any) -> list[str]:
    return [e["event"] async for e in runnable.astream_events(value, version="v2")]


def check(loop: asyncio.AbstractEventLoop, n: int = 100) -> list[str]:
    """Differences in what the two libraries produce for the measured calls (none expected)."""
    s, problems = ChatSetup.of(loop, n), []
    text = "".join(s.tokens)
    if not "".join(c.text for c in s.lm.stream(PROMPT)) == s.lc.invoke(PROMPT).text == text:
        problems.append("chat stream: texts differ")
    if not "".join(s.lm_chain.stream(QUESTION)) == "".join(s.lc_chain.stream(QUESTION)) == text:
        problems.append("chain stream: texts differ")
    for name, lm, lc, value in (("chat", s.lm, s.lc, PROMPT),
                                ("chain", s.lm_chain, s.lc_chain, QUESTION)):  # fmt: skip
        a = loop.run_until_complete(_events(lm, value))
        b = loop.run_until_complete(_events(lc, value))
        if a != b:
            problems.append(f"{name} events: {len(a)} events vs {len(b)}")
    return problems


def measure(
    sizes: tuple[int, ...], rounds: int, target: float, only: set[str] | None = None
) -> dict[str, Any]:
    """Every path (or those in ``only``) at every N, as JSON-ready data (what
    ``python -m bench`` stores)."""
    warnings.filterwarnings("ignore", message=".*astream_events.*")
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        problems, paths = check(loop), {}
        for path in [p for p in PATHS if only is None or p.key in only]:
            print(f"{path.title} ...", file=sys.stderr, flush=True)
            rows = measure_path(path, loop, sizes, rounds, target)
            paths[path.key] = {
                "title": path.title, "budget": path.budget, "raw_budget": path.raw_budget,
                "fixed": path.fixed, "lc_max": None,
                "rows": [{"n": r.n, "samples": r.samples.per_unit} for r in rows],
                "cells": [r.cells() for r in rows],
            }  # fmt: skip
    finally:
        loop.close()
    return {"sizes": list(sizes), "rounds": rounds, "problems": problems, "paths": paths}


def main(argv: list[str] | None = None) -> None:
    """``python -m bench.chat``."""
    parser = argparse.ArgumentParser(prog="python -m bench.chat", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="N = 1,000, 3 rounds")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument(
        "--only", help="comma-separated path keys: " + ",".join(p.key for p in PATHS)
    )
    args = parser.parse_args(argv)
    sizes, rounds, target = ((1000,), 3, 0.02) if args.quick else ((100, 1000), 7, 0.05)
    result = measure(sizes, rounds, target, set(args.only.split(",")) if args.only else None)
    for problem in result["problems"]:
        print(f"warning: not the same work: {problem}", file=sys.stderr)
    rows = [cells for p in result["paths"].values() for cells in p["cells"]]
    print(render(HEADERS, rows, markdown=args.markdown))
    judged = [r[i] for r in rows for i in (6, 10) if r[i]]
    print(f"\n{judged.count('PASS')} of {len(judged)} budgets pass. Ratios: median of "
          f"per-round ratios over {rounds} rounds; times: best round.")  # fmt: skip


if __name__ == "__main__":
    main()
