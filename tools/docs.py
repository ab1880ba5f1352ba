"""Run the examples in ``docs/`` and write what they really print into the pages.

    python tools/docs.py                     # run every example, rewrite the output blocks
    python tools/docs.py --check             # run them; exit 1 and show a diff if a page is stale
    python tools/docs.py docs/streaming.md   # only these pages

An example is a fenced ``python`` or ``sh`` block right after a ``<!-- run -->`` line. What
it prints goes in the ``text`` block after the ``<!-- output -->`` line that follows it
(added when missing, removed when the example prints nothing). ``<!-- run: raises -->``
marks an example expected to fail: its output ends with the exception's last line.

The examples of a page run in order in one process, like the cells of a notebook: one
namespace, one event loop, ``await`` and ``async for`` allowed at top level, and a
scratch working directory that ``sh`` examples share (they find ``lmstream`` on PATH).
A page containing ``<!-- docs: serve ARGS -->`` gets ``lmstream serve ARGS`` running for
its examples; they name it ``127.0.0.1:8000`` (or ``--port 8000``) and talk to it on a free
port.

Output is normalised so that it only changes when its content does: run ids and other
UUIDs (and 32-digit hex ids such as ``cmpl-...``) become ``<uuid-1>``, ``<uuid-2>``... in
order of appearance, object addresses ``0x...``, ``"created"`` timestamps one fixed
value, the scratch directory ``.``, and trailing spaces go. ``<!-- run: timings -->``
also replaces durations and rates (``12 ms``, ``3.5/s``) with ``…``.

``<!-- run: model -->`` marks an example that prints what the embedded model wrote. Its
words depend on the CPU's floating-point kernels, not only on lmstream, so such outputs
are compared only on a machine where the model writes what it wrote where the pages were
generated: ``docs/assets/model-fingerprint.txt`` holds that text, written with the pages.
Elsewhere a ``model`` example must still run, and print something where the page shows
something; the rest of every page is compared as usual.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import difflib
import functools
import io
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
RUN = re.compile(r"^<!-- run(?::\s*(?P<options>[\w ,-]+?))?\s*-->$")
OUTPUT = "<!-- output -->"
SERVE = re.compile(r"^<!-- docs: serve(?P<args>[^>]*?)\s*-->$", re.MULTILINE)
FENCE = re.compile(r"^(?P<fence>`{3,})(?P<lang>[\w-]*)\s*$")
LANGS = ("python", "sh")
DOC_PORT = 8000
FINGERPRINT = DOCS / "assets" / "model-fingerprint.txt"
PROBE = (
    "from lmstream import LlamaCpp\n"
    "print(LlamaCpp(temperature=0).invoke('Write me a 1 verse song about sparkling water.',"
    " max_tokens=32))"
)
UUID = re.compile(
    r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b|(?<=-)[0-9a-f]{32}\b"
)
ADDRESS = re.compile(r"\b0x[0-9a-f]{6,16}\b")
CREATED = re.compile(r"""(["']created["']:\s*)\d+""")
TIMING = re.compile(r"\b\d+(?:\.\d+)?(?= ?(?:ms|s|/s)\b)")


@dataclass
class Example:
    """One runnable block of a page and the output block that belongs to it."""

    line: int  # 1-based line of the code fence
    lang: str
    code: str
    options: tuple[str, ...]
    code_end: int  # index of the line after the closing fence
    output_span: tuple[int, int] | None  # lines [start, end) of the marker and output block
    output: str | None


@dataclass
class Page:
    """A Markdown page and its examples."""

    path: Path
    lines: list[str]
    examples: list[Example] = field(default_factory=list)

    @property
    def serve_args(self) -> list[str] | None:
        """``lmstream serve`` arguments when the page asks for a server."""
        found = SERVE.search("\n".join(self.lines))
        return None if found is None else shlex.split(found["args"])


# -- reading and writing pages ---------------------------------------------------------------


def _fenced(lines: list[str], start: int) -> tuple[str, str, int] | None:
    """(language, body, index after the closing fence) of a fence opening at ``start``."""
    opening = FENCE.match(lines[start]) if start < len(lines) else None
    if opening is None:
        return None
    fence = opening["fence"]
    for end in range(start + 1, len(lines)):
        if lines[end].strip() == fence:
            return opening["lang"], "\n".join(lines[start + 1 : end]), end + 1
    raise ValueError(f"line {start + 1}: code block never closed")


def _output_after(lines: list[str], start: int) -> tuple[tuple[int, int], str] | None:
    """The ``<!-- output -->`` block after an example ending at ``start``, if there is one."""
    i = start
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines) or lines[i].strip() != OUTPUT:
        return None
    block = _fenced(lines, i + 1)
    if block is None:
        raise ValueError(f"line {i + 1}: {OUTPUT} is not followed by a code block")
    return (start, block[2]), block[1]


def parse(path: Path, text: str | None = None) -> Page:
    """A page with its examples."""
    lines = (path.read_text(encoding="utf-8") if text is None else text).split("\n")
    page, i = Page(path, lines), 0
    while i < len(lines):
        marker = RUN.match(lines[i].strip())
        block = _fenced(lines, i) if marker is None else _fenced(lines, i + 1)
        if block is None:
            i += 1
            continue
        if marker is None:
            i = block[2]
            continue
        lang, code, end = block
        if lang not in LANGS:
            raise ValueError(f"{path}:{i + 2}: run a python or sh block, not {lang!r}")
        options = tuple((marker["options"] or "").replace(",", " ").split())
        found = _output_after(lines, end)
        span, output = found if found else (None, None)
        page.examples.append(Example(i + 2, lang, code, options, end, span, output))
        i = span[1] if span else end
    return page


def _block(output: str) -> list[str]:
    fence = "```"
    while fence in output:
        fence += "`"
    return ["", OUTPUT, f"{fence}text", *output.split("\n"), fence]


def rewrite(page: Page, outputs: Sequence[str]) -> str:
    """The page's text with each example's output block holding ``outputs[i]``."""
    lines = list(page.lines)
    for example, output in reversed(list(zip(page.examples, outputs, strict=True))):
        new = _block(output) if output else []
        if example.output_span is not None:
            start, end = example.output_span
            lines[start:end] = new
        else:
            lines[example.code_end : example.code_end] = new
    return "\n".join(lines)


# -- normalising ---------------------------------------------------------------------------


def normalise(text: str, scratch: str = "", port: int | None = None, timings: bool = False) -> str:
    """Output that only changes when its content does (see the module docstring)."""
    if scratch:
        text = text.replace(scratch + os.sep, "").replace(scratch, ".")
    if port is not None:
        text = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{DOC_PORT}")
    ids: dict[str, str] = {}
    text = UUID.sub(lambda m: ids.setdefault(m[0], f"<uuid-{len(ids) + 1}>"), text)
    text = ADDRESS.sub("0x...", text)
    text = CREATED.sub(r"\g<1>1700000000", text)
    if timings:
        text = TIMING.sub("…", text)
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


# -- running one page (in a child process) ---------------------------------------------------


def _run_python(code: str, where: str, namespace: dict[str, Any], loop: Any) -> None:
    # dont_inherit: this file's ``from __future__ import annotations`` must not turn the
    # examples' annotations into strings (a pydantic model defined there could not resolve them)
    compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    result = eval(compiled, namespace)
    if asyncio.iscoroutine(result):
        loop.run_until_complete(result)


def _run_sh(code: str) -> str:
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env = dict(os.environ, PATH=path, COLUMNS="88")
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", code],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=300,
    )  # fmt: skip
    return done.stdout + ("" if done.returncode == 0 else f"[exit status {done.returncode}]\n")


def _run_one(example: dict[str, Any], namespace: dict[str, Any], loop: Any) -> str:
    if example["lang"] == "sh":
        return _run_sh(example["code"])
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            _run_python(example["code"], example["where"], namespace, loop)
    except Exception as exc:
        if "raises" not in example["options"]:
            raise
        out.write(traceback.format_exception_only(type(exc), exc)[-1])
    else:
        if "raises" in example["options"]:
            raise AssertionError(f"{example['where']}: expected an exception, none was raised")
    return out.getvalue()


def child(spec_file: str) -> None:
    """Run a page's examples as ``_execute`` describes them; write their outputs as JSON."""
    spec = json.loads(Path(spec_file).read_text(encoding="utf-8"))
    os.chdir(spec["scratch"])
    sys.path.insert(0, str(ROOT))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    outputs = [_run_one(example, namespace, loop) for example in spec["examples"]]
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
    Path(spec["result"]).write_text(json.dumps(outputs), encoding="utf-8")


# -- running pages ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serving(args: list[str], port: int) -> Iterator[None]:
    """``lmstream serve ARGS`` on ``port`` until the block ends."""
    command = [sys.executable, "-m", "lmstream", "serve", *args, "--port", str(port)]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"lmstream serve {' '.join(args)} did not start")
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _to_port(code: str, port: int | None) -> str:
    """``code`` talking to the page's server: its address, and ``--port 8000``."""
    if port is None:
        return code
    code = code.replace(f"127.0.0.1:{DOC_PORT}", f"127.0.0.1:{port}")
    return code.replace(f"--port {DOC_PORT}", f"--port {port}")


def _execute(page: Page, scratch: str, port: int | None) -> list[str]:
    examples = [
        {
            "lang": e.lang,
            "options": list(e.options),
            "where": f"{page.path.name}:{e.line}",
            "code": _to_port(e.code, port),
        }
        for e in page.examples
    ]
    spec_file, result = Path(scratch, ".spec.json"), Path(scratch, ".result.json")
    spec = {"scratch": scratch, "examples": examples, "result": str(result)}
    spec_file.write_text(json.dumps(spec), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(spec_file)],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"{page.path}: the examples failed\n{done.stdout}{done.stderr}")
    outputs: list[str] = json.loads(result.read_text(encoding="utf-8"))
    return outputs


def run_page(page: Page) -> list[str]:
    """Run a page's examples; their normalised outputs, in order."""
    with tempfile.TemporaryDirectory(prefix="lmstream-docs-") as scratch:
        scratch = os.path.realpath(scratch)
        args = page.serve_args
        port = _free_port() if args is not None else None
        with serving(args, port) if args is not None and port else contextlib.nullcontext():
            outputs = _execute(page, scratch, port)
    return [
        normalise(out, scratch, port, "timings" in example.options)
        for out, example in zip(outputs, page.examples, strict=True)
    ]


def pages(paths: Sequence[str] = ()) -> list[Page]:
    """The pages named (default: every page under docs/) that have examples."""
    files = [Path(p).resolve() for p in paths] or sorted(DOCS.rglob("*.md"))
    return [page for page in map(parse, files) if page.examples]


def slowest_first(selected: Sequence[Page]) -> list[Page]:
    """Pages that start processes (shell examples, a server) first, then the longest."""

    def weight(page: Page) -> tuple[int, int]:
        processes = sum(e.lang == "sh" for e in page.examples) + 3 * (page.serve_args is not None)
        return processes, len(page.examples)

    return sorted(selected, key=weight, reverse=True)


def run_all(selected: Sequence[Page], workers: int = 3) -> dict[Path, list[str]]:
    """Outputs of every page, ``workers`` pages at a time (most of them wait, not compute)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {page.path: pool.submit(run_page, page) for page in slowest_first(selected)}
        return {path: future.result() for path, future in futures.items()}


@functools.cache
def model_fingerprint() -> str:
    """What the embedded model writes here, greedily, for a fixed prompt."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(f"the embedded model did not run:\n{done.stderr}")
    return done.stdout.strip()


def model_outputs_comparable() -> bool:
    """Whether the embedded model writes here what it wrote where the pages were made."""
    published = FINGERPRINT.read_text(encoding="utf-8").strip() if FINGERPRINT.exists() else ""
    return published == model_fingerprint()


def comparable(page: Page, outputs: Sequence[str]) -> list[str]:
    """``outputs``, with the page's own output kept for ``model`` examples that ran and
    printed where the page shows output, when this machine's model writes differently."""
    if not any("model" in e.options for e in page.examples) or model_outputs_comparable():
        return list(outputs)
    return [
        example.output if "model" in example.options and bool(out) == bool(example.output)
        and example.output is not None else out
        for example, out in zip(page.examples, outputs, strict=True)
    ]  # fmt: skip


def stale(page: Page, outputs: Sequence[str]) -> str:
    """A unified diff between the page and what its examples print ("" when current)."""
    old, new = "\n".join(page.lines), rewrite(page, comparable(page, outputs))
    name = str(page.path.relative_to(ROOT)) if page.path.is_relative_to(ROOT) else page.path.name
    diff = difflib.unified_diff(
        old.split("\n"), new.split("\n"), f"{name} (on disk)", f"{name} (as run)", lineterm=""
    )
    return "\n".join(diff)


def main(argv: Sequence[str] | None = None) -> int:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python tools/docs.py", description=__doc__)
    parser.add_argument("pages", nargs="*", help="Markdown pages (default: all of docs/)")
    parser.add_argument("--check", action="store_true", help="report stale pages, change none")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    selected = pages(args.pages)
    results = run_all(selected)
    failed = 0
    uses_model = any("model" in e.options for page in selected for e in page.examples)
    if uses_model and not args.check:
        FINGERPRINT.write_text(model_fingerprint() + "\n", encoding="utf-8")
    elif uses_model and not model_outputs_comparable():
        print("note: the embedded model writes differently on this machine; its outputs")
        print("      were only checked to be there (see model-fingerprint.txt)")
    for page in selected:
        diff = stale(page, results[page.path])
        if diff and args.check:
            print(diff)
            failed += 1
        elif diff:
            page.path.write_text(rewrite(page, results[page.path]), encoding="utf-8")
            print(f"updated {page.path.relative_to(ROOT)}")
    print(f"{len(selected)} pages, {sum(len(p.examples) for p in selected)} examples run")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
