"""docs/limits.md states the limits the code enforces, not what they once were."""

from __future__ import annotations

import re
from pathlib import Path

from lmstream.llm import BaseLLM
from lmstream.providers._http_llm import HTTPLLM
from lmstream.server import ServerSettings, schemas
from lmstream.settings import settings_of

PAGE = (Path(__file__).resolve().parent.parent / "docs" / "limits.md").read_text(encoding="utf-8")


def _row(name: str) -> str:
    rows = [line for line in PAGE.splitlines() if line.startswith("|") and name in line]
    assert len(rows) == 1, f"one row names {name}"
    return rows[0].split("|")[2]


def _numbers(cell: str) -> list[float]:
    return [float(n) for n in re.findall(r"\d+(?:\.\d+)?", cell)]


def test_the_client_limits_are_the_http_providers_defaults() -> None:
    declared = settings_of(HTTPLLM, BaseLLM)
    for name in ("max_event_bytes", "max_body_bytes", "max_retries", "connect_timeout",
                 "first_token_timeout", "idle_timeout"):  # fmt: skip
        assert _numbers(_row(f"`{name}`")) == [declared[name].initial()], name


def test_the_server_limits_are_its_defaults() -> None:
    defaults = ServerSettings()
    for flag, field in (("--max-body-bytes", "max_body_bytes"), ("--max-tokens-cap",
                        "max_tokens_cap"), ("--max-batch", "max_batch"), ("--max-waiting",
                        "max_waiting"), ("--max-connections", "max_connections"),
                        ("--header-timeout", "header_timeout"),
                        ("--send-timeout", "send_timeout")):  # fmt: skip
        assert _numbers(_row(f"`{flag}`")) == [getattr(defaults, field)], flag


def test_the_request_limits_are_the_schemas() -> None:
    assert _numbers(_row("stop sequences")) == [schemas.MAX_STOPS, schemas.MAX_STOP_CHARS]
    assert _numbers(_row("tags of one")) == [schemas.MAX_TAGS, schemas.MAX_NAME_CHARS]
    assert _numbers(_row("metadata of one")) == [schemas.MAX_METADATA_BYTES, schemas.MAX_DEPTH]


def test_the_python_floor_is_the_package_s() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    floor = project["project"]["requires-python"].removeprefix(">=")
    assert _row("Python").strip().startswith(floor)


def test_the_usage_answer_names_where_generate_puts_it() -> None:
    from lmstream import FakeLLM

    assert 'llm_output["token_usage"]' in PAGE and 'generation_info["usage"]' in PAGE
    result = FakeLLM(responses=["hello world"]).generate(["hi"])
    assert result.llm_output is not None and result.llm_output["token_usage"]["total_tokens"] > 0
    info = result.generations[0][0].generation_info
    assert info is not None and info["usage"].total_tokens > 0
