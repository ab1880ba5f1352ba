"""docs/server.md's table of RemoteLLM's parameters names exactly what the class accepts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lmstream import RemoteLLM
from lmstream.errors import InvalidInputError
from lmstream.llm import BaseLLM
from lmstream.settings import settings_of

PAGE = Path(__file__).resolve().parent.parent / "docs" / "server.md"


def _documented() -> set[str]:
    text = PAGE.read_text(encoding="utf-8").split("### `RemoteLLM`'s parameters", 1)[1]
    rows = [line for line in text.split("\n## ", 1)[0].splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`(\w+)`", row.split("|")[1])}


def test_the_table_names_every_setting_and_constructor_argument() -> None:
    accepted = set(settings_of(RemoteLLM, BaseLLM)) | set(RemoteLLM.constructor_arguments)
    assert _documented() == accepted


def test_a_parameter_outside_the_table_is_refused_with_the_list() -> None:
    with pytest.raises(InvalidInputError, match="max_tokens"):
        RemoteLLM("http://127.0.0.1:1", max_token=8)
