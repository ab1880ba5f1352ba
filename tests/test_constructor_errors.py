"""Every constructor mistake, for every provider, in Python and on the command line, is
one InvalidInputError that lists the valid settings; a wrong model id suggests the likely
one."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from lmstream import FakeLLM, InvalidInputError, OpenAI, RemoteLLM, load_llm

CLI = [sys.executable, "-m", "lmstream"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize(
    ("make", "listed", "typo", "meant"),
    [
        (lambda **kw: FakeLLM(["x"], **kw), "chunking, delay, error, error_after", "chunkng",
         "chunking"),
        (lambda **kw: OpenAI(base_url="http://127.0.0.1:9/v1", **kw), "base_url, best_of",
         "temprature", "temperature"),
        (lambda **kw: RemoteLLM("http://127.0.0.1:9", **kw), "max_retries, max_tokens, model",
         "max_retrys", "max_retries"),
    ],
)  # fmt: skip
def test_an_unknown_setting_lists_the_valid_ones(
    make: Any, listed: str, typo: str, meant: str
) -> None:
    with pytest.raises(InvalidInputError, match=f"unexpected arguments: \\['foo'\\]; .*{listed}"):
        make(foo=1)
    with pytest.raises(InvalidInputError, match=f"did you mean '{meant}'"):
        make(**{typo: 1})


def test_the_local_model_lists_its_settings() -> None:
    from lmstream import LlamaCpp

    with pytest.raises(InvalidInputError, match=r"\['foo'\]; its settings: chat, max_tokens, "):
        LlamaCpp(foo=1)
    with pytest.raises(InvalidInputError, match=r"LlamaCpp: n_ctx must be an int >= 1, not 0"):
        LlamaCpp(n_ctx=0)


@pytest.mark.parametrize("cls", [OpenAI, RemoteLLM])
def test_errors_name_the_provider_that_raised_them(cls: Any) -> None:
    with pytest.raises(
        InvalidInputError, match=rf"^{cls.__name__}: max_retries must be an int >= 0"
    ):
        cls("http://127.0.0.1:9", max_retries=-1) if cls is RemoteLLM else cls(max_retries=-1)


def test_a_missing_url_is_a_typed_error() -> None:
    with pytest.raises(InvalidInputError, match="RemoteLLM requires the argument 'url'"):
        RemoteLLM()
    with pytest.raises(InvalidInputError, match="write remote:<url>"):
        load_llm("remote")
    with pytest.raises(InvalidInputError, match="takes 1 positional argument"):
        RemoteLLM("http://a", "http://b")


@pytest.mark.parametrize(
    ("model_id", "meant"),
    [("gpt-4", "openai:gpt-4"), ("http://127.0.0.1:8000", "remote:http://127.0.0.1:8000"),
     ("/models/x.gguf", "llamacpp:/models/x.gguf"), ("openia:gpt-4", "openai:gpt-4"),
     ("llama", "llamacpp")],
)  # fmt: skip
def test_an_unknown_model_id_suggests_the_likely_one(model_id: str, meant: str) -> None:
    with pytest.raises(InvalidInputError, match=f"did you mean '{meant}'"):
        load_llm(model_id)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["hi", "--option", "foo=1"], "LlamaCpp got unexpected arguments: ['foo']; its settings"),
        (["serve", "--option", "n-ctx=512"], "['n-ctx'] (did you mean 'n_ctx'?)"),
        (["hi", "-m", "fake:x", "--option", "foo=1"], "FakeLLM got unexpected arguments: ['foo']"),
        (["hi", "-m", "remote"], "lacks the url that provider 'remote' needs"),
        (["hi", "-m", "gpt-4"], "did you mean 'openai:gpt-4'?"),
        (["hi", "-m", "fake:x", "--option", "delay=-1"], "FakeLLM: delay must be a number >= 0"),
        (["serve", "-m", "fake:x", "--option", "n-ctx=512"], "unexpected arguments: ['n-ctx']"),
    ],
)
def test_on_the_command_line_a_mistake_is_one_line(args: list[str], says: str) -> None:
    result = run(*args)
    assert result.returncode == 1
    assert result.stderr.startswith("lmstream: error: InvalidInputError: "), result.stderr
    assert says in result.stderr and result.stderr.count("\n") == 1
    assert "Traceback" not in result.stderr and result.stdout == ""
