"""The custom-provider guide's HTTP provider, as the page shows it: saved as a module,
installed with the page's entry point (a dist-info on the path, as pip leaves it), and run
against a real server on loopback that speaks Anthropic's Messages API."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import chunks_of, collect, invoke_of, stream_of, take
from servers.scripted import Reply, ScriptedServer, Send, Stall

from lmstream import APIError, InvalidInputError, ServerError

PAGE = Path(__file__).resolve().parent.parent / "docs" / "custom-provider.md"
BLOCK = re.compile(r"```(python|toml)\n(.*?)```", re.DOTALL)


def _block(kind: str, needle: str) -> str:
    found = [body for lang, body in BLOCK.findall(PAGE.read_text()) if lang == kind]
    return next(body for body in found if needle in body)


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n".encode()


def messages_stream(
    words: list[str], reason: str = "end_turn", tail: tuple[Any, ...] = ()
) -> Reply:
    """A streamed Messages answer of ``words``."""
    start = _event("message_start", {"message": {"usage": {"input_tokens": 4}}})
    steps = [Send(start)] + [
        Send(_event("content_block_delta", {"delta": {"type": "text_delta", "text": w}}))
        for w in words
    ]
    if tail:
        return Reply(headers={"content-type": "text/event-stream"}, steps=[*steps, *tail])
    end = _event("message_delta", {"delta": {"stop_reason": reason},
                                   "usage": {"output_tokens": len(words)}})  # fmt: skip
    steps += [Send(end), Send(_event("message_stop", {}))]
    return Reply(headers={"content-type": "text/event-stream"}, steps=steps)


def messages(body: Any) -> Reply:
    """The server's default answer: the user's words back, at most ``max_tokens``."""
    words = [w + " " for w in body["messages"][0]["content"].split()]
    reason = "max_tokens" if len(words) > body["max_tokens"] else "end_turn"
    words = words[: body["max_tokens"]]
    if body.get("stream"):
        return messages_stream(words, reason)
    answer = {"content": [{"type": "text", "text": "".join(words)}], "stop_reason": reason,
              "usage": {"input_tokens": 4, "output_tokens": len(words)}}  # fmt: skip
    return Reply(200, {"content-type": "application/json"}, [Send(json.dumps(answer).encode())])


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page's provider as an installed distribution: module, metadata, entry point."""
    root = tmp_path_factory.mktemp("site")
    (root / "anthropic_provider.py").write_text(_block("python", "class AnthropicLLM(HTTPLLM)"))
    entry = _block("toml", "lmstream.providers")
    found = re.search(r'^(\w+) = "([\w.:]+)"', entry, re.MULTILINE)
    assert found is not None, entry
    name, target = found.groups()
    info = root / "anthropic_provider-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: anthropic-provider\nVersion: 1.0\n"
    )
    (info / "entry_points.txt").write_text(f"[lmstream.providers]\n{name} = {target}\n")
    return root


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(messages) as running:
        yield running


@pytest.fixture
def provider(package: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.syspath_prepend(str(package))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    return importlib.import_module("anthropic_provider").AnthropicLLM


def test_it_streams_with_its_own_auth_header(
    provider: Any, server: ScriptedServer, flavour: str
) -> None:
    llm = provider("claude-test", base_url=server.url, max_tokens=3)
    chunks = chunks_of(llm, flavour, "one two three four", temperature=0.5)
    assert "".join(c.text for c in chunks) == "one two three "
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 7
    request = server.requests[-1]
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == "sk-ant-test" and "authorization" not in request.headers
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.body["model"] == "claude-test" and request.body["temperature"] == 0.5
    assert invoke_of(llm, flavour, "hello there", stop=["zz"]) == "hello there "
    assert server.requests[-1].body["stop_sequences"] == ["zz"]
    assert server.requests[-1].body["stream"] is False


def test_a_failure_keeps_the_text_so_far(
    provider: Any, server: ScriptedServer, flavour: str
) -> None:
    overloaded = _event("error", {"error": {"type": "overloaded_error", "message": "busy"}})
    server.script(messages_stream(["a ", "b "], tail=(Send(overloaded),)))
    llm = provider(base_url=server.url)
    with pytest.raises(APIError, match="busy") as caught:
        collect(stream_of(llm, flavour, "x"))
    assert caught.value.partial_text == "a b "


def test_the_base_retries_and_closes(provider: Any, server: ScriptedServer, flavour: str) -> None:
    body = json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "later"}})
    overloaded = Reply(529, {"content-type": "application/json", "retry-after": "0"},
                       [Send(body.encode())])  # fmt: skip
    server.script(overloaded, overloaded)
    llm = provider(base_url=server.url, max_retries=1)
    with pytest.raises(ServerError, match="529: later"):
        invoke_of(llm, flavour, "x")
    assert invoke_of(llm, flavour, "x y") == "x y " and len(server.requests) == 3
    server.script(messages_stream(["first "], tail=(Stall(),)))
    assert take(stream_of(llm, flavour, "x"), 1) == ["first "]
    assert server.wait(lambda: server.requests[-1].disconnected is not None)


def test_its_settings_are_checked(provider: Any) -> None:
    with pytest.raises(InvalidInputError, match=r"did you mean 'max_tokens'"):
        provider(max_token=3)
    with pytest.raises(InvalidInputError, match=r"temperature must be a number from 0 to 1"):
        provider(temperature=3)


def _run(package: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package), "ANTHROPIC_API_KEY": "sk-ant-cli"}
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_installed_through_its_entry_point(package: Path, server: ScriptedServer) -> None:
    url = f"--option=base_url={server.url}"
    result = _run(package, "-m", "lmstream", "hi there", "-m", "anthropic:claude-cli", url)
    assert (result.returncode, result.stdout, result.stderr) == (0, "hi there \n", "")
    assert server.requests[-1].body["model"] == "claude-cli"
    assert server.requests[-1].headers["x-api-key"] == "sk-ant-cli"
    code = f"import lmstream; print(lmstream.load_llm('anthropic', base_url={server.url!r}).model)"
    assert _run(package, "-c", code).stdout == "claude-3-5-haiku-latest\n"
    models = _run(package, "-m", "lmstream", "models").stdout
    assert any(line.startswith("anthropic ") for line in models.splitlines())
