"""What tracing costs: ``stream``/``astream`` of an N-token model with OpenTelemetry off
(never imported), installed with no provider set, with the SDK's tracer provider and
a span processor whose exporter does nothing (with and without a meter provider), and
with a tracer provider of this file whose spans do nothing: what lmstream itself spends
on a traced call, apart from the SDK.

    python -m bench.otel [--quick]

The cases run interleaved in one process (see ``bench._util``), timed by this thread's
CPU time (every case does all its work on it): the provider is swapped
between cases, which lmstream notices at the next call. The cost per chunk is the
difference from "off" at N tokens, less the cost per call (the difference at 1 token),
over N - 1; the cost per call is the difference at 1 token. Goals: ~0 with no provider
(≤ 0.05 µs per chunk); ≤ 1 µs per chunk and ≤ 20 µs per call with the SDK. Of a traced
call, lmstream's share is the do-nothing tracer's cost over "off" and the SDK's share the
SDK tracer's cost over the do-nothing tracer's, both from the same rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import lmstream
from bench._util import Case, async_case, fmt_time, interleave, render, sync_case
from lmstream import _otel

__all__ = ["main", "measure"]

NULL = "a tracer that does nothing"
MODES = ("off", "no provider", "SDK tracer", "SDK tracer + meter", NULL, "a no-op listener")
GOALS = {"no provider": (0.05e-6, None), "SDK tracer": (1e-6, 20e-6)}


class Tokens(lmstream.LLM):
    """One chunk per scripted token."""

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


class _Listener:
    """An event sink that does nothing: what any listener costs lmstream's own path."""

    def run_started(self, run: Any) -> None:
        pass

    def custom_event(self, *args: Any) -> None:
        pass

    def run_chunk(self, run: Any, chunk: Any) -> None:
        pass

    def run_finished(self, run: Any, outcome: str, payload: Any, error: Any) -> None:
        pass


class _Span:
    """A span that records nothing: only what lmstream calls on one."""

    def set_attributes(self, attributes: Any) -> None:
        pass

    def add_event(self, *args: Any) -> None:
        pass

    def record_exception(self, error: Any) -> None:
        pass

    def set_status(self, status: Any) -> None:
        pass

    def end(self) -> None:
        pass


class _NullTracer:
    def start_span(self, *args: Any) -> _Span:
        return _Span()


class NullTracerProvider:
    """A tracer provider whose spans do nothing, so a traced call costs only lmstream."""

    def get_tracer(self, *args: Any) -> _NullTracer:
        return _NullTracer()


class _Providers:
    """Switches what lmstream sees: no OpenTelemetry, no provider, or the SDK's."""

    def __init__(self) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            SimpleSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        class Nothing(SpanExporter):
            def export(self, spans: Sequence[Any]) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        self.trace, self.metrics = trace, metrics._internal  # type: ignore[attr-defined]
        self.tracer = TracerProvider()
        self.tracer.add_span_processor(SimpleSpanProcessor(Nothing()))
        self.meter = MeterProvider(metric_readers=[InMemoryMetricReader()])
        self.null = NullTracerProvider()
        self.hidden = {k: v for k, v in sys.modules.items() if k.split(".")[0] == "opentelemetry"}

    def use(self, mode: str) -> None:
        if mode in ("off", "a no-op listener"):  # as if never imported
            for name in self.hidden:
                sys.modules.pop(name, None)
            _otel._apis.clear()
            return
        sys.modules.update(self.hidden)
        tracer = {"no provider": None, NULL: self.null}.get(mode, self.tracer)
        self.trace._TRACER_PROVIDER = tracer
        self.metrics._METER_PROVIDER = self.meter if mode.endswith("meter") else None


def _cases(
    providers: _Providers, loop: asyncio.AbstractEventLoop, n: int, flavour: str
) -> dict[str, Case]:
    llm = Tokens(tokens=["tok "] * n)

    def one(mode: str) -> Case:
        config: Any = {"callbacks": [_Listener()]} if mode == "a no-op listener" else None
        if flavour == "stream":
            inner = sync_case(lambda: sum(1 for _ in llm.stream("p", config)))
        else:

            async def drain() -> None:
                async for _ in llm.astream("p", config):
                    pass

            inner = async_case(loop, drain)

        def run(times: int) -> None:
            providers.use(mode)
            inner(times)

        return run

    return {mode: one(mode) for mode in MODES}


def measure(quick: bool = False) -> dict[str, Any]:
    """Seconds per call at 1 and N tokens, per round, for each mode and flavour."""
    providers = _Providers()
    big, rounds, target = (200, 5, 0.02) if quick else (1000, 9, 0.05)
    loop = asyncio.new_event_loop()
    out: dict[str, Any] = {"tokens": big, "rounds": rounds, "flavours": {}}
    try:
        for flavour in ("stream", "astream"):
            found: dict[str, Any] = {}
            for n in (1, big):
                cases = _cases(providers, loop, n, flavour)
                # a call of one token is short: longer samples keep the noise down
                # all the work is on this thread (the exporter exports inline): its CPU
                # time is what a call costs, whatever else the machine runs
                samples = interleave(
                    cases, units=1, rounds=rounds, target=target * (4 if n == 1 else 1),
                    clock=time.thread_time,
                )  # fmt: skip
                found[str(n)] = samples.per_unit  # seconds per call, per round
            out["flavours"][flavour] = found
        out["bare_span"] = _bare_span(providers)
    finally:
        providers.use("no provider")
        loop.close()
    return out


def _bare_span(providers: _Providers) -> float:
    """Seconds the SDK itself takes to start and end a span with a model call's attributes."""
    import timeit

    tracer = providers.tracer.get_tracer("bench")
    start = {f"gen_ai.request.{k}": 1 for k in ("a", "b", "c", "d", "e")}
    end = {f"gen_ai.response.{k}": "x" for k in ("a", "b", "c", "d", "e", "f", "g")}

    def span() -> None:
        s = tracer.start_span("text_completion", None, attributes=start)
        s.set_attributes(end)
        s.end()

    return min(timeit.repeat(span, number=2000, repeat=5, timer=time.thread_time)) / 2000


def _extra(rounds: dict[str, list[float]], mode: str) -> float:
    """The median over rounds of the time ``mode`` took more than "off" in the same round."""
    return statistics.median(a - b for a, b in zip(rounds[mode], rounds["off"], strict=True))


def costs(result: dict[str, Any], flavour: str) -> dict[str, tuple[float, float]]:
    """Per mode: (cost per chunk, cost per call) over "off", in seconds."""
    found, big = result["flavours"][flavour], result["tokens"]
    out = {}
    for mode in MODES[1:]:
        if mode not in found["1"]:  # a mode added since the results were saved
            continue
        per_call = _extra(found["1"], mode)
        per_chunk = (_extra(found[str(big)], mode) - per_call) / (big - 1)
        out[mode] = (per_chunk, per_call)
    return out


def shares(result: dict[str, Any], *, markdown: bool = True) -> str:
    """A traced call's cost split: lmstream's (the do-nothing tracer over "off") and the
    SDK's (the SDK tracer over the do-nothing tracer), per call and per chunk."""
    rows = []
    for flavour in ("stream", "astream"):
        found = costs(result, flavour)
        if NULL not in found:  # results from before the do-nothing tracer
            return ""
        (ours_chunk, ours_call), (sdk_chunk, sdk_call) = found[NULL], found["SDK tracer"]
        rows.append([flavour, fmt_time(ours_call), fmt_time(sdk_call - ours_call),
                     fmt_time(ours_chunk), fmt_time(sdk_chunk - ours_chunk)])  # fmt: skip
    headers = ["path", "lmstream µs/call", "SDK µs/call", "lmstream µs/chunk", "SDK µs/chunk"]
    return render(headers, rows, markdown=markdown)


def table(result: dict[str, Any], *, markdown: bool = False) -> str:
    """The costs as a table, against the goals."""
    rows = []
    for flavour in ("stream", "astream"):
        for mode, (per_chunk, per_call) in costs(result, flavour).items():
            goal_chunk, goal_call = GOALS.get(mode, (None, None))
            goal = "" if goal_chunk is None else f"≤ {goal_chunk * 1e6:g} µs/chunk"
            goal += "" if goal_call is None else f", ≤ {goal_call * 1e6:g} µs/call"
            ok = goal_chunk is None or (
                per_chunk <= goal_chunk and (goal_call is None or per_call <= goal_call)
            )
            rows.append([flavour, mode, fmt_time(per_chunk), fmt_time(per_call), goal,
                         ("PASS" if ok else "FAIL") if goal else ""])  # fmt: skip
    headers = ["path", "OpenTelemetry", "µs per chunk", "µs per call", "goal", ""]
    return render(headers, rows, markdown=markdown)


def plot(results: dict[str, Any], out: Any) -> Any:
    """Cost per chunk and per call over "off": no provider, and the SDK tracer split into
    lmstream's part (the do-nothing tracer) and the SDK's, against the goals."""
    import matplotlib.pyplot as plt

    from bench.plots import COLORS, _save

    found = results["otel"]
    names, ours, sdk = [], [], []
    for flavour in ("stream", "astream"):
        cost = costs(found, flavour)
        split = cost.get(NULL, cost["SDK tracer"])  # older results: no split, all lmstream's
        names += [f"{flavour}, no provider", f"{flavour}, SDK tracer"]
        ours += [cost["no provider"], split]
        sdk += [(0.0, 0.0), tuple(a - b for a, b in zip(cost["SDK tracer"], split, strict=True))]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, (ax, what, goal) in enumerate(zip(axes, ("chunk", "call"), (1.0, 20.0), strict=True)):
        mine, theirs = [v[i] * 1e6 for v in ours], [v[i] * 1e6 for v in sdk]
        ax.barh(names, mine, color=COLORS["lmstream"], label="lmstream's part")
        ax.barh(names, theirs, left=mine, color=COLORS["langchain-core"], label="the SDK's part")
        for y, total in enumerate(a + b for a, b in zip(mine, theirs, strict=True)):
            ax.annotate(f"{total:.2f} µs", (max(total, 0), y), va="center", fontsize=8,
                        xytext=(3, 0), textcoords="offset points")  # fmt: skip
        ax.axvline(goal, color=COLORS["other"], linestyle="--", linewidth=1,
                   label="the goal with the SDK")  # fmt: skip
        ax.set_title(f"µs per {what} over OpenTelemetry not imported (goal: ≤ {goal:g} µs)",
                     fontsize=9)  # fmt: skip
        ax.invert_yaxis()
        ax.margins(x=0.2)
        ax.tick_params(labelsize=8)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="upper center", ncol=3, fontsize=8,
               bbox_to_anchor=(0.5, 0.92))  # fmt: skip
    fig.suptitle(f"Tracing: {found['tokens']:,}-token streams, the SDK's exporter doing nothing "
                 "(lower is better)", fontsize=10)  # fmt: skip
    fig.tight_layout(rect=(0, 0.05, 1, 0.86))
    return _save(fig, results, out / "otel.png")


def main(argv: list[str] | None = None) -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(prog="python -m bench.otel", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer tokens and rounds")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    result = measure(args.quick)
    print(f"{result['tokens']} tokens, {result['rounds']} rounds, costs over 'off':\n")
    print(table(result, markdown=args.markdown))
    print(f"\nthe SDK's own span, started and ended: {fmt_time(result['bare_span'])} µs")
    print("\na traced call's cost, lmstream's part and the SDK's:\n")
    print(shares(result, markdown=args.markdown))


if __name__ == "__main__":
    main()
