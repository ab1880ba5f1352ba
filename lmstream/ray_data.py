"""Bulk generation on Ray Data: millions of prompts over a Ray ``Dataset``, one model per
actor, each row ending in a typed outcome, resumable from its output directory.

::

    import ray
    from lmstream.ray_data import batch

    prompts = ray.data.read_json("prompts.jsonl")       # columns "id", "prompt", ...
    summary = batch(prompts, "openai:my-model", output="results/", key="id", actors=4,
                    concurrency=16, options={"base_url": "http://gpu1:8000/v1"})

Each output row is its input row (key, prompt and any other column) plus ``outcome``
(``"finished"`` or ``"failed"``), ``text`` (for a failed row: the text produced before
the error), ``finish_reason``, ``usage`` and ``error`` (``{"type", "message"}`` of a
failed row). A failed row never fails the job unless ``fail_on_error=True``.

A chat model (an id with ``chat=True``, loaded with ``load_chat_model``, or a callable
that builds a ``BaseChatModel``) takes a row's ``prompt`` as one user message, or its
``messages`` (OpenAI's ``{"role", "content"}`` dicts) when set, after its ``system``
when set. Its rows also get ``reasoning`` and ``tool_calls`` (``{"id", "name",
"arguments"}``, the arguments as JSON text, as OpenAI sends them); the files show them
only when there are any.

The output is a directory of JSON Lines files that Ray Data writes block by block. A
rerun with ``resume=True`` reads which keys finished there and generates only the rest:
rows not written when the job stopped and rows that failed (their old lines are taken
out first, so every key ends up in the output once). Ray places the actors and retries
their tasks; lmstream schedules nothing itself.

Needs the ``ray`` extra: ``pip install 'lmstream[ray]'``.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import reduce
from operator import add
from pathlib import Path
from typing import Any

try:
    import pyarrow as pa
    import ray.data
    from ray.data.datasource import BlockBasedFileDatasink
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("lmstream.ray_data needs Ray Data: pip install 'lmstream[ray]'") from exc

from lmstream import (
    AIMessageChunk,
    BaseChatModel,
    BaseLLM,
    GenerationChunk,
    InvalidInputError,
    load_chat_model,
    load_llm,
)
from lmstream._json import dumps, to_jsonable

__all__ = [
    "CHAT_COLUMNS",
    "RESULT_COLUMNS",
    "Generate",
    "Summary",
    "batch",
    "finished_keys",
    "generate",
    "summarize",
]

Model = str | Callable[[], BaseLLM | BaseChatModel]
"""A model id (loaded with ``options``) or a picklable callable that builds the model."""

CHAT_COLUMNS = ("messages", "system")
"""Columns a chat model reads besides the prompt: a row's messages and system message."""

BATCHES_PER_BLOCK = 8
"""Batches per block: an actor streams a block's batches side by side, and the block's
rows are written together when it is done (so a kill loses at most the blocks in flight)."""

ROW_SETTINGS = ("max_tokens", "temperature", "seed", "stop")
"""Columns that, when set on a row, win over the call's settings for that row."""

_USAGE = pa.struct(
    [("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()),
     ("total_tokens", pa.int64()), ("estimated", pa.bool_())]
)  # fmt: skip
_ERROR = pa.struct([("type", pa.string()), ("message", pa.string())])
_CALL = pa.struct([("id", pa.string()), ("name", pa.string()), ("arguments", pa.string())])
_RESULT = pa.schema(
    [("outcome", pa.string()), ("text", pa.string()), ("finish_reason", pa.string()),
     ("usage", _USAGE), ("error", _ERROR), ("reasoning", pa.string()),
     ("tool_calls", pa.list_(_CALL))]
)  # fmt: skip
RESULT_COLUMNS = tuple(_RESULT.names)
"""The columns each output row gets; an input may not have them."""

_SHOWN_WHEN_SET = ("reasoning", "tool_calls")
"""Result columns a written row has only when they hold something (a chat model's)."""


def _usage(value: Any) -> dict[str, Any] | None:
    usage = to_jsonable(value)
    if not isinstance(usage, dict):
        return None
    return {name: usage.get(name) for name in _USAGE.names} if usage else None


def _finished(result: GenerationChunk) -> dict[str, Any]:
    info = result.generation_info or {}
    reason, usage = info.get("finish_reason"), _usage(info.get("usage"))
    return {"outcome": "finished", "text": result.text, "finish_reason": reason, "usage": usage,
            "error": None}  # fmt: skip


def _failed(exc: Exception, text: str) -> dict[str, Any]:
    error = {"type": type(exc).__name__, "message": str(exc)}
    usage = _usage(getattr(exc, "usage", None))
    return {"outcome": "failed", "text": text, "finish_reason": None, "usage": usage,
            "error": error}  # fmt: skip


def _said(message: AIMessageChunk) -> dict[str, Any]:
    """A chat message's reasoning and tool calls, as result columns."""
    calls = [{"id": call.get("id"), "name": call["name"], "arguments": dumps(call["args"])}
             for call in message.tool_calls]  # fmt: skip
    return {"reasoning": message.reasoning or None, "tool_calls": calls or None}


def _chat_finished(message: AIMessageChunk) -> dict[str, Any]:
    meta, usage = message.response_metadata, message.usage_metadata
    counts = usage and {
        "prompt_tokens": usage.get("input_tokens"), "completion_tokens": usage.get("output_tokens"),
        "total_tokens": usage.get("total_tokens"), "estimated": bool(meta.get("usage_estimated")),
    }  # fmt: skip
    return {"outcome": "finished", "text": message.text, "finish_reason": meta.get("finish_reason"),
            "usage": counts or None, "error": None, **_said(message)}  # fmt: skip


def _chat_failed(exc: Exception, chunks: list[AIMessageChunk]) -> dict[str, Any]:
    partial = getattr(exc, "partial_message", None)
    if not isinstance(partial, AIMessageChunk):
        partial = reduce(add, chunks, AIMessageChunk(""))
    return {**_failed(exc, partial.text), **_said(partial)}


def _messages(row: dict[str, Any], prompt: str) -> list[dict[str, Any]]:
    """A row's conversation: its messages, else its prompt as one user message, after
    its system message when it has one."""
    messages = row.get("messages")
    if messages is None:
        text = row.get(prompt)
        if not isinstance(text, str):
            raise InvalidInputError(f"the row has neither messages nor a {prompt!r} string")
        messages = [{"role": "user", "content": text}]
    elif not isinstance(messages, list):
        raise InvalidInputError(f"messages must be a list of {{role, content}}, not {messages!r}")
    else:  # Arrow gives every message every key its column has; unset ones are None
        messages = [{k: v for k, v in m.items() if v is not None} for m in messages]
    system = row.get("system")
    return [{"role": "system", "content": system}, *messages] if system else messages


def _load(model: Model, chat: bool, options: Mapping[str, Any]) -> BaseLLM | BaseChatModel:
    if not isinstance(model, str):
        return model()
    return load_chat_model(model, **options) if chat else load_llm(model, **options)


class Generate:
    """A callable class for ``Dataset.map_batches(..., batch_format="pyarrow")``: each
    actor builds one model and streams up to ``concurrency`` rows at once, across the
    batches it is given. Rows whose key is in ``skip`` are left out of the output.
    ``chat``: a model id names a chat model; a callable's model is a chat model or not.

    ``Dataset.map_batches(Generate, fn_constructor_kwargs={"model": "fake:hi"},
    batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=4))``; ``generate``
    does this for you."""

    def __init__(
        self,
        model: Model,
        *,
        key: str = "index",
        prompt: str = "prompt",
        concurrency: int = 8,
        fail_on_error: bool = False,
        skip: Iterable[Any] = (),
        options: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
        chat: bool = False,
    ) -> None:
        self.model = _load(model, chat, options or {})
        self.chat = isinstance(self.model, BaseChatModel)
        self.key, self.prompt, self.fail_on_error = key, prompt, fail_on_error
        self.concurrency, self.skip, self.settings = concurrency, frozenset(skip), settings or {}
        self._gate: asyncio.Semaphore | None = None  # made on the actor's event loop

    async def __call__(self, batch: Any) -> Any:
        if self.skip:
            keys = batch.column(self.key).to_pylist()
            batch = batch.filter(pa.array([k not in self.skip for k in keys], pa.bool_()))
        read = (self.prompt, *ROW_SETTINGS, *(CHAT_COLUMNS if self.chat else ()))
        if not self.chat and self.prompt not in batch.schema.names:
            raise InvalidInputError(f"a text model needs a {self.prompt!r} column")
        rows = batch.select([c for c in read if c in batch.schema.names])
        results = await asyncio.gather(*(self._row(row) for row in rows.to_pylist()))
        out = pa.Table.from_pylist(results, schema=_RESULT)
        for name, column in zip(out.column_names, out.columns, strict=True):
            batch = batch.append_column(name, column)
        return batch

    async def _row(self, row: dict[str, Any]) -> dict[str, Any]:
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.concurrency)
        own = {k: row[k] for k in ROW_SETTINGS if row.get(k) is not None}
        settings = {**self.settings, **own}
        async with self._gate:
            if isinstance(self.model, BaseChatModel):
                return await self._chat(self.model, row, settings)
            chunks: list[GenerationChunk] = []
            try:
                async for chunk in self.model.astream_chunks(row[self.prompt], **settings):
                    chunks.append(chunk)
            except Exception as exc:
                if self.fail_on_error:
                    raise
                return _failed(exc, "".join(c.text for c in chunks))
        return _finished(reduce(add, chunks, GenerationChunk("")))

    async def _chat(
        self, model: BaseChatModel, row: dict[str, Any], settings: dict[str, Any]
    ) -> dict[str, Any]:
        chunks: list[AIMessageChunk] = []
        try:
            async for chunk in model.astream(_messages(row, self.prompt), **settings):
                chunks.append(chunk)
        except Exception as exc:
            if self.fail_on_error:
                raise
            return _chat_failed(exc, chunks)
        return _chat_finished(reduce(add, chunks, AIMessageChunk("")))


def generate(
    dataset: Any,
    model: Model,
    *,
    key: str = "index",
    prompt: str = "prompt",
    actors: int = 1,
    concurrency: int = 8,
    batch_size: int = 16,
    fail_on_error: bool = False,
    skip: Iterable[Any] = (),
    options: Mapping[str, Any] | None = None,
    ray_options: Mapping[str, Any] | None = None,
    chat: bool = False,
    **settings: Any,
) -> Any:
    """``dataset`` with each row's outcome added (lazily, as Ray Data does): ``actors``
    actors, each with its own model and ``concurrency`` streams at once. ``settings``
    (``max_tokens``, ``temperature``...) go to every call; ``ray_options`` to
    ``map_batches`` (``{"num_gpus": 1}``, ``{"num_cpus": 0.5}``); ``chat``: ``model``
    is a chat model's id."""
    _check_columns(dataset.columns() or [], key, prompt)
    for name, value in (
        ("actors", actors),
        ("concurrency", concurrency),
        ("batch_size", batch_size),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidInputError(f"{name} must be an int >= 1, not {value!r}")
    kwargs = {"model": model, "key": key, "prompt": prompt, "concurrency": concurrency,
              "fail_on_error": fail_on_error, "skip": list(skip), "options": dict(options or {}),
              "settings": settings, "chat": chat}  # fmt: skip
    rows = dataset.repartition(target_num_rows_per_block=batch_size * BATCHES_PER_BLOCK)
    return rows.map_batches(
        Generate, fn_constructor_kwargs=kwargs, batch_format="pyarrow", batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors), **{"num_cpus": 1, **(ray_options or {})},
    )  # fmt: skip


def _check_columns(columns: list[str], key: str, prompt: str) -> None:
    missing = [c for c in (key, prompt) if c not in columns]
    if missing == [prompt] and "messages" in columns:
        missing = []  # a chat model's rows (a text model's actors say it needs prompts)
    if missing:
        raise InvalidInputError(
            f"the dataset has no {missing[0]!r} column (it has {columns}); name the key and "
            "prompt columns with key= and prompt=, or add one with Dataset.add_column"
        )
    clash = [c for c in RESULT_COLUMNS if c in columns]
    if clash:
        raise InvalidInputError(f"the dataset's column {clash[0]!r} names a result column")


@dataclass(frozen=True)
class Summary:
    """What an output directory holds after a run."""

    finished: int
    failed: int
    skipped: int = 0
    """Rows that had finished in an earlier run and were not generated again."""


def _lines(path: Path) -> tuple[list[bytes], bool]:
    """The complete lines of ``path``, and whether a torn last line was left off."""
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(keepends=True), end != len(data)


def _rewrite(path: Path, lines: list[bytes]) -> None:
    """Replace ``path`` with ``lines`` all at once (a kill meanwhile loses nothing)."""
    if not lines:
        path.unlink()
        return
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(b"".join(lines))
    os.replace(partial, path)


def finished_keys(output: str | os.PathLike[str], key: str = "index") -> set[Any]:
    """The keys of the finished rows in ``output``. The directory keeps only those: failed
    rows (to be generated again), repeated keys and torn lines (from a kill) are taken out."""
    done: set[Any] = set()
    for path in sorted(Path(output).glob("*.jsonl")):
        lines, changed = _lines(path)
        kept: list[bytes] = []
        for line in lines:
            try:
                row = json.loads(line)
            except ValueError:
                row = None
            if (
                not isinstance(row, dict)
                or row.get("outcome") != "finished"
                or row.get(key) in done
            ):
                changed = True
                continue
            done.add(row.get(key))
            kept.append(line)
        if changed:
            _rewrite(path, kept)
    return done


def summarize(output: str | os.PathLike[str], skipped: int = 0) -> Summary:
    """Count the outcomes in ``output``."""
    counts = {"finished": 0, "failed": 0}
    for path in Path(output).glob("*.jsonl"):
        for line in _lines(path)[0]:
            outcome = json.loads(line).get("outcome")
            counts[outcome] = counts.get(outcome, 0) + 1
    return Summary(counts["finished"], counts["failed"], skipped)


class _JsonLines(BlockBasedFileDatasink):
    """One ``.jsonl`` file per write task, one compact JSON object per row."""

    def __init__(self, path: str) -> None:
        super().__init__(path, file_format="jsonl")

    def write_block_to_file(self, block: Any, file: Any) -> None:
        rows = block.to_arrow().to_pylist()
        file.write("".join(dumps(_shown(row)) + "\n" for row in rows).encode())


def _shown(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if v is not None or k not in _SHOWN_WHEN_SET}


def _dataset(data: Any, key: str, batch_size: int) -> Any:
    if isinstance(data, ray.data.Dataset):
        return data
    rows = []
    for i, item in enumerate(data):
        row = {"prompt": item} if isinstance(item, str) else dict(item)
        rows.append({key: i, **row})
    names = dict.fromkeys(name for row in rows for name in row)  # rows may lack some columns
    rows = [{name: row.get(name) for name in names} for row in rows]
    blocks = max(1, -(-len(rows) // (batch_size * BATCHES_PER_BLOCK)))
    return ray.data.from_items(rows, override_num_blocks=blocks)


def batch(
    data: Any,
    model: Model,
    *,
    output: str | os.PathLike[str],
    key: str = "index",
    resume: bool = False,
    batch_size: int = 16,
    **options: Any,
) -> Summary:
    """Generate every row of ``data`` (a ``Dataset``, or prompts and dicts, which are keyed
    by position) and write the outcomes to the directory ``output``; ``resume`` continues
    a directory, generating only the keys that have not finished there. Other keywords
    are ``generate``'s. Returns the directory's counts."""
    out = Path(output)
    if out.is_file():
        raise InvalidInputError(f"{out} is a file: the output is a directory")
    if not resume and out.is_dir() and any(out.iterdir()):
        raise InvalidInputError(f"{out} is not empty: pass resume=True to continue it")
    dataset = _dataset(data, key, batch_size)
    done = finished_keys(out, key) if resume else set()
    out.mkdir(parents=True, exist_ok=True)
    generated = generate(dataset, model, key=key, skip=done, batch_size=batch_size, **options)
    generated.write_datasink(_JsonLines(str(out.resolve())))
    return summarize(out, skipped=len(done))
