"""``lmstream batch``: many prompts, results written as each one finishes.

Input is JSONL (a string or ``{"prompt": ...}`` per line) or plain text (one prompt per
line). A JSON line may set ``max_tokens``, ``temperature``, ``stop`` and ``seed`` for
itself (they win over the command line's), and any other key (an ``id``, metadata) is
copied to its result. Each result is appended to the output as one JSON line: the input
line's keys, its ``index``, and ``text``, ``finish_reason`` and ``usage``, or ``error``.
``--resume`` skips inputs that already have a result, re-runs the failed ones (their old
line is replaced), and stops if an input changed since its result was written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from functools import reduce
from operator import add
from pathlib import Path
from typing import Any

from lmstream import BaseLLM, GenerationChunk, InvalidInputError, RunnableLambda, load_llm
from lmstream._json import dumps, error_dict, to_jsonable
from lmstream.cli._term import Progress, Spinner
from lmstream.cli.common import (
    GENERATION_OPTIONS,
    HelpFormatter,
    add_model_options,
    call_kwargs,
    close,
    guarded,
    provider_options,
)
from lmstream.cli.ray_batch import add_ray_options, run_ray_batch

__all__ = ["RESULT_KEYS", "finished_results", "parser", "read_inputs", "run_batch"]

RESULT_KEYS = ("index", "text", "finish_reason", "usage", "error")
"""Keys of a result line that the batch writes; an input line may not use them."""

DESCRIPTION = """Run many prompts; append each result to the output as soon as it finishes.

input: JSONL, one string or {"prompt": ..., ...} per line, or plain text, one prompt per
line. A JSON line may set max_tokens, temperature, stop and seed for itself (they win over
the options below); its other keys (an id, metadata) are copied to its result.

output: one JSON line per input: the input's keys, its index, and text, finish_reason and
usage, or error. With --resume, inputs with a result are skipped, failed ones run again
(their old line is replaced), and a changed input stops the run: write to a new file."""


def parser() -> argparse.ArgumentParser:
    """The parser of ``lmstream batch``."""
    parser = argparse.ArgumentParser(
        prog="lmstream batch", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    parser.add_argument("input", help="the prompts: .jsonl, or plain text with one per line")
    parser.add_argument(
        "-o", "--output", required=True, help="where results go, one JSON line each (required)"
    )
    parser.add_argument(
        "-c", "--concurrency", type=int, default=1, metavar="N",
        help="prompts generated at once (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the output: run what has no result yet, or failed",
    )
    parser.add_argument(
        "--format", choices=("auto", "jsonl", "text"), default="auto",
        help="how to read the input; auto: JSONL if it ends in .jsonl or its first line looks "
        "like JSON (default: %(default)s)",
    )  # fmt: skip
    add_model_options(parser)
    add_ray_options(parser)
    return parser


def _input_of(line: str, number: int) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"line {number}: not JSON ({exc.msg})") from None
    if isinstance(value, str):
        return {"prompt": value}
    if not isinstance(value, dict) or not isinstance(value.get("prompt"), str):
        raise InvalidInputError(f'line {number}: expected a string or {{"prompt": "..."}}')
    reserved = [k for k in RESULT_KEYS if k in value]
    if reserved:
        raise InvalidInputError(f"line {number}: {reserved[0]!r} names a result key")
    return value


def read_inputs(path: Path, fmt: str = "auto") -> list[dict[str, Any]]:
    """The inputs in ``path``, each a dict with a ``prompt`` and whatever its line set."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if fmt == "auto":
        first = next((ln.strip() for ln in lines if ln.strip()), "")
        fmt = "jsonl" if path.suffix == ".jsonl" or first[:1] in ("{", '"') else "text"
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()]
    if fmt == "text":
        return [{"prompt": ln} for _, ln in numbered]
    return [_input_of(ln, n) for n, ln in numbered]


def finished_results(path: Path, inputs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The successful results in ``path`` by index, each checked against its input. The
    file keeps only those: failed results (to be run again) and a torn last line (from a
    kill) are taken out of it."""
    if not path.exists():
        return {}
    data = path.read_bytes()
    lines = data[: data.rfind(b"\n") + 1].splitlines(keepends=True)
    done: dict[int, dict[str, Any]] = {}
    kept: list[bytes] = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "error" not in record and "index" in record:
            done.setdefault(int(record["index"]), record)
            kept.append(line)
    _check_unchanged(done, inputs)
    if len(kept) != len(lines) or len(data) != sum(map(len, lines)):
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(b"".join(kept))
        os.replace(partial, path)  # all at once: a kill now loses nothing
    return done


def _shown(values: dict[str, Any], key: str) -> str:
    return repr(values[key]) if key in values else "absent"


def _changes(was: dict[str, Any], now: dict[str, Any]) -> str:
    keys = [k for k in {**was, **now} if was.get(k, ...) != now.get(k, ...)]
    shown = {k: (_shown(was, k), _shown(now, k)) for k in keys}
    return "; ".join(f"{k} was {old}, now {new}" for k, (old, new) in shown.items())


def _check_unchanged(done: dict[int, dict[str, Any]], inputs: list[dict[str, Any]]) -> None:
    for index, record in sorted(done.items()):
        was = {k: v for k, v in record.items() if k not in RESULT_KEYS}
        if index >= len(inputs):
            what = f"the input has only {len(inputs)} prompts now"
        elif was != inputs[index]:
            what = _changes(was, inputs[index])
        else:
            continue
        raise InvalidInputError(
            f"input {index} changed since its result was written ({what}): "
            "write the results to a new file"
        )


def _generate(llm: BaseLLM, item: dict[str, Any], kwargs: dict[str, Any], stop: Any) -> Any:
    chunks: list[GenerationChunk] = []
    settings = {k: item[k] for k in GENERATION_OPTIONS if item.get(k) is not None}
    stream = llm.stream_chunks(item["prompt"], **{**kwargs, **settings})
    try:
        for chunk in stream:
            chunks.append(chunk)
            if stop.is_set():  # Ctrl-C: stop this generation now
                raise KeyboardInterrupt
    finally:
        close(stream)
    return reduce(add, chunks, GenerationChunk(""))


def _record(index: int, item: dict[str, Any], result: Any) -> dict[str, Any]:
    if isinstance(result, BaseException):
        return {"index": index, **item, "error": error_dict(result)}
    info = result.generation_info or {}
    return {
        "index": index,
        **item,
        "text": result.text,
        "finish_reason": info.get("finish_reason"),
        "usage": to_jsonable(info.get("usage")),
    }


def _run(
    args: argparse.Namespace, inputs: list[dict[str, Any]], todo: list[int], progress: Progress
) -> int:
    with Spinner(f"loading {args.model}"):
        llm = load_llm(args.model, **provider_options(args))
    stop = threading.Event()
    kwargs = call_kwargs(args)
    runner: RunnableLambda[int, Any] = RunnableLambda(
        lambda i: _generate(llm, inputs[i], kwargs, stop)
    )
    config = {"max_concurrency": max(1, args.concurrency)}
    results = runner.batch_as_completed(todo, config, return_exceptions=True)  # type: ignore[arg-type]
    with open(args.output, "a", encoding="utf-8") as out:
        try:
            for j, result in results:
                out.write(dumps(_record(todo[j], inputs[todo[j]], result)) + "\n")
                out.flush()
                progress.advance(failed=isinstance(result, BaseException))
        except KeyboardInterrupt:
            stop.set()
            results.close()  # type: ignore[attr-defined]
            sys.stderr.write(f"\nlmstream: interrupted at {progress.line()}; rerun with --resume\n")
            return 130
    progress.finish()
    return 1 if progress.failed else 0


def run_batch(argv: list[str]) -> int:
    """The ``lmstream batch`` command."""
    parse = parser()
    args = parse.parse_args(argv)
    if args.concurrency < 1 or args.actors < 1:
        parse.error("--concurrency and --actors must be >= 1")
    if not args.ray and (args.fail_on_error or args.actors != 1 or args.chat):
        parse.error("--actors, --chat and --fail-on-error go with --ray")
    output = Path(args.output)

    def body() -> int:
        inputs = read_inputs(Path(args.input), args.format)
        if args.ray:
            return run_ray_batch(args, inputs)
        if not args.resume and output.exists() and output.stat().st_size:
            raise InvalidInputError(f"{output} exists: pass --resume to continue it")
        done = finished_results(output, inputs) if args.resume else {}
        todo = [i for i in range(len(inputs)) if i not in done]
        progress = Progress(len(inputs), done=len(inputs) - len(todo))
        if not todo:
            progress.finish()
            return 0
        os.makedirs(output.parent or ".", exist_ok=True)
        return _run(args, inputs, todo, progress)

    return guarded(args, body)
