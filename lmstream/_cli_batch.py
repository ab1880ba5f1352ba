"""``lmstream batch``: many prompts, results written as each one finishes.

Input is JSONL (a string or ``{"prompt": ...}`` per line) or plain text (one prompt per
line). Each result is appended to the output as one JSON line with its input index,
text, finish_reason and usage, or its error. ``--resume`` skips inputs that already
have a result, so an interrupted run loses nothing and never repeats finished work.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

from lmstream._accumulate import aggregate
from lmstream._cli_term import Progress, Spinner
from lmstream._execution import close
from lmstream._json import dumps, error_dict, to_jsonable
from lmstream.chunks import GenerationChunk
from lmstream.errors import InvalidInputError
from lmstream.functions import RunnableLambda
from lmstream.llm import BaseLLM
from lmstream.registry import load_llm

__all__ = ["read_prompts", "run_batch"]


def _parser() -> argparse.ArgumentParser:
    from lmstream.cli import _add_model_options

    parser = argparse.ArgumentParser(prog="lmstream batch", description=__doc__.split("\n")[0])
    parser.add_argument("input", help="prompts: .jsonl, or plain text with one per line")
    parser.add_argument("-o", "--output", required=True, help="results, one JSON line each")
    parser.add_argument("-c", "--concurrency", type=int, default=1, help="prompts at once")
    parser.add_argument("--resume", action="store_true", help="skip inputs already done")
    parser.add_argument("--format", choices=("auto", "jsonl", "text"), default="auto")
    _add_model_options(parser)
    return parser


def _prompt_of(line: str, number: int) -> str:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"line {number}: not JSON ({exc.msg})") from None
    if isinstance(value, dict) and isinstance(value.get("prompt"), str):
        return str(value["prompt"])
    if isinstance(value, str):
        return value
    raise InvalidInputError(f'line {number}: expected a string or {{"prompt": "..."}}')


def read_prompts(path: Path, fmt: str = "auto") -> list[str]:
    """The prompts in ``path``."""
    lines = path.read_text(encoding="utf-8").splitlines()
    if fmt == "auto":
        first = next((ln.strip() for ln in lines if ln.strip()), "")
        fmt = "jsonl" if path.suffix == ".jsonl" or first[:1] in ("{", '"') else "text"
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()]
    if fmt == "text":
        return [ln for _, ln in numbered]
    return [_prompt_of(ln, n) for n, ln in numbered]


def finished_indices(path: Path) -> set[int]:
    """Indices with a result in ``path``; a torn last line (from a kill) is cut off."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with path.open("r+b") as fh:
            fh.truncate(keep)
    done = set()
    for line in data[:keep].decode("utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "error" not in record and "index" in record:
            done.add(int(record["index"]))
    return done


def _generate(llm: BaseLLM, prompt: str, kwargs: dict[str, Any], stop: threading.Event) -> Any:
    chunks: list[GenerationChunk] = []
    stream = llm.stream_chunks(prompt, **kwargs)
    try:
        for chunk in stream:
            chunks.append(chunk)
            if stop.is_set():  # Ctrl-C: stop this generation now
                raise KeyboardInterrupt
    finally:
        close(stream)
    return aggregate(chunks) if chunks else GenerationChunk("")


def _record(index: int, prompt: str, result: Any) -> dict[str, Any]:
    if isinstance(result, BaseException):
        return {"index": index, "prompt": prompt, "error": error_dict(result)}
    info = result.generation_info or {}
    return {
        "index": index,
        "prompt": prompt,
        "text": result.text,
        "finish_reason": info.get("finish_reason"),
        "usage": to_jsonable(info.get("usage")),
    }


def _run(args: argparse.Namespace, prompts: list[str], todo: list[int], progress: Progress) -> int:
    from lmstream.cli import call_kwargs, provider_options

    with Spinner(f"loading {args.model}"):
        llm = load_llm(args.model, **provider_options(args))
    stop = threading.Event()
    kwargs = call_kwargs(args)
    runner: RunnableLambda[int, Any] = RunnableLambda(
        lambda i: _generate(llm, prompts[i], kwargs, stop)
    )
    config = {"max_concurrency": max(1, args.concurrency)}
    results = runner.batch_as_completed(todo, config, return_exceptions=True)  # type: ignore[arg-type]
    with open(args.output, "a", encoding="utf-8") as out:
        try:
            for j, result in results:
                out.write(dumps(_record(todo[j], prompts[todo[j]], result)) + "\n")
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
    from lmstream.cli import _guarded

    parser = _parser()
    args = parser.parse_args(argv)
    if args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    output = Path(args.output)

    def body() -> int:
        prompts = read_prompts(Path(args.input), args.format)
        if not args.resume and output.exists() and output.stat().st_size:
            raise InvalidInputError(f"{output} exists: pass --resume to continue it")
        done = finished_indices(output) if args.resume else set()
        todo = [i for i in range(len(prompts)) if i not in done]
        progress = Progress(len(prompts), done=len(prompts) - len(todo))
        if not todo:
            progress.finish()
            return 0
        os.makedirs(output.parent or ".", exist_ok=True)
        return _run(args, prompts, todo, progress)

    return _guarded(args, body)
