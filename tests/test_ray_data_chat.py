"""Chat models in bulk on Ray Data (``lmstream.ray_data`` and ``lmstream batch --ray
--chat``), on one local Ray cluster (CPU only) that this module starts and shuts down.
Rows are prompts, ``messages`` lists and ``system`` messages; the model is the fake chat
model, scripted per row, streaming for real: reasoning, text, tool calls, usage, and a
failure after k chunks that a resume run redoes."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
from ray import cloudpickle

from lmstream import AIMessage, FakeChatModel
from lmstream.cli import main
from lmstream.messages import AIMessageChunk, BaseMessage
from lmstream.ray_data import batch

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import it
CALL = {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}
THIN = {"num_cpus": 0.5}


class PerRow(FakeChatModel):
    """The fake chat model, scripted by the conversation: it says the last message's
    words, thinks the system message's, calls ``get_weather`` when asked about the
    weather, and fails after two chunks when asked to fail, until ``healed``."""

    def __init__(self, healed: bool = False) -> None:
        super().__init__()
        self.healed = healed

    def _for(self, messages: list[BaseMessage]) -> FakeChatModel:
        said = messages[-1].text
        system = [m.text for m in messages if m.type == "system"]
        parts = [{"type": "reasoning", "reasoning": s} for s in system]
        reply = AIMessage(
            [*parts, {"type": "text", "text": said}],
            tool_calls=[CALL] if "weather" in said else [],
        )
        fails = "fail" in said and not self.healed
        return FakeChatModel([reply], chunking="word", error_after=2 if fails else None)

    def _stream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> Iterator[AIMessageChunk]:
        return self._for(messages)._stream(messages, stop, **kwargs)

    def _astream(
        self, messages: list[BaseMessage], stop: list[str] | None = None, **kwargs: Any
    ) -> AsyncIterator[AIMessageChunk]:
        return self._for(messages)._astream(messages, stop, **kwargs)


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False,
        object_store_memory=100 * 2**20,
    )  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()


def rows_in(output: Path) -> dict[Any, dict[str, Any]]:
    rows = [json.loads(ln) for p in output.glob("*.jsonl") for ln in p.read_text().splitlines()]
    assert len({r["index"] for r in rows}) == len(rows)  # every key once
    return {r["index"]: r for r in rows}


def row(n: int) -> dict[str, Any]:
    """Row ``n``: by ``n % 4`` a prompt, a system message and a prompt, a conversation,
    or a conversation after a system message; every third asks to fail, every fifth
    about the weather."""
    words = f"row {n} " + ("fail now" if n % 3 == 0 else "weather please" if n % 5 == 0 else "ok")
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes?"},
                {"role": "user", "content": words}]  # fmt: skip
    conversation = n % 4 >= 2
    system = f"think {n}" if n % 2 else None
    return {"index": n, "prompt": None if conversation else words,
            "messages": messages if conversation else None, "system": system}  # fmt: skip


def test_chat_rows_stream_reasoning_tool_calls_and_failures_then_resume(
    cluster: None, tmp_path: Path
) -> None:
    items = [row(n) for n in range(24)]
    run = functools.partial(
        batch, ray.data.from_items(items, override_num_blocks=2), output=tmp_path, actors=2,
        batch_size=4, ray_options=THIN,
    )  # fmt: skip
    summary = run(PerRow)
    rows = rows_in(tmp_path)
    failing = {n for n in range(24) if n % 3 == 0}
    assert sorted(rows) == list(range(24))
    assert (summary.finished, summary.failed) == (24 - len(failing), len(failing))
    for n, got in rows.items():
        item, words = row(n), f"row {n} "
        asked = item["prompt"] or item["messages"][-1]["content"]
        assert (got["prompt"], got["system"]) == (item["prompt"], item["system"])
        if n in failing:  # two chunks came before the failure: thinking first
            assert got["outcome"] == "failed" and got["error"]["type"] == "ProviderError"
            thought = f"think {n}" if item["system"] else ""
            assert got["text"] == ("" if thought else words)
            assert got.get("reasoning") == (thought or None)
            assert got["finish_reason"] is None
            continue
        assert got["outcome"] == "finished" and got["error"] is None
        assert got["text"] == asked and got.get("reasoning") == item["system"]
        calls = [
            {**c, "arguments": json.loads(c["arguments"])} for c in got.get("tool_calls") or []
        ]
        assert calls == ([{"id": "call_1", "name": "get_weather", "arguments": CALL["args"]}]
                         if n % 5 == 0 else [])  # fmt: skip
        assert "tool_calls" in got or n % 5  # shown only when there are any
        assert got["finish_reason"] == ("tool_calls" if n % 5 == 0 else "stop")
        history = 0 if item["prompt"] else 4  # "Human: hi AI: yes?" before the question
        system = 3 if item["system"] else 0  # "System: think n"
        assert got["usage"]["prompt_tokens"] == history + system + 1 + len(asked.split())

    summary = run(functools.partial(PerRow, healed=True), resume=True)
    assert (summary.finished, summary.failed, summary.skipped) == (24, 0, 24 - len(failing))
    again = rows_in(tmp_path)
    assert sorted(again) == list(range(24))
    assert all(again[n] == rows[n] for n in rows if n not in failing)  # not redone
    assert all(again[n]["outcome"] == "finished" for n in failing)
    assert all(again[n]["text"] == f"row {n} fail now" for n in failing)


def test_the_command_line_runs_a_chat_model_by_its_id(
    cluster: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, out = tmp_path / "prompts.jsonl", tmp_path / "out"
    source.write_text(json.dumps("Hello") + "\n" + json.dumps({"prompt": "Hi", "system": "Be"}))
    argv = ["batch", "--ray", "--chat", str(source), "-o", str(out), "-m", "fake:Hi there!",
            "--option", "chunking=word", "--option", "error_after=1"]  # fmt: skip
    assert main(argv) == 1
    assert "0 finished, 2 failed" in capsys.readouterr().err
    assert [r["text"] for _, r in sorted(rows_in(out).items())] == ["Hi ", "Hi "]
    assert main([*argv[:-2], "--resume"]) == 0
    assert "2 finished, 0 failed (0 had finished before)" in capsys.readouterr().err
    rows = sorted(rows_in(out).items())
    assert [(r["text"], r["usage"]["prompt_tokens"]) for _, r in rows] == [
        ("Hi there!", 2), ("Hi there!", 4)  # "Human: Hello"; "System: Be Human: Hi"
    ]  # fmt: skip
    with pytest.raises(SystemExit):  # --chat goes with --ray
        main(["batch", "--chat", str(source), "-o", str(tmp_path / "plain.jsonl")])
    assert "--chat" in capsys.readouterr().err


def test_a_row_without_a_conversation_fails_and_a_text_model_needs_prompts(
    cluster: None, tmp_path: Path
) -> None:
    items = [{"index": 0, "messages": None, "prompt": None}, row(2)]
    summary = batch(items, "fake:Hi", output=tmp_path / "a", chat=True, ray_options=THIN)
    rows = rows_in(tmp_path / "a")
    assert (summary.finished, summary.failed) == (1, 1)
    assert rows[0]["error"]["type"] == "InvalidInputError" and rows[2]["text"] == "Hi"
    only = ray.data.from_items([{"index": 0, "messages": [{"role": "user", "content": "Hi"}]}])
    with pytest.raises(Exception, match="a text model needs a 'prompt' column"):
        batch(only, "fake:Hi", output=tmp_path / "b", ray_options=THIN)
