"""Defaults, per-call overrides and the threads knob."""

from __future__ import annotations

import pytest
from helpers import collect, invoke_of, stream_of

from lmstream.providers import _llamacpp_engine as engine_module
from lmstream.providers.llamacpp import LlamaCpp


@pytest.mark.parametrize(("cores", "threads"), [(1, 1), (2, 1), (3, 1), (8, 4), (64, 4)])
def test_default_threads_leave_half_the_cores_free(
    monkeypatch: pytest.MonkeyPatch, cores: int, threads: int
) -> None:
    monkeypatch.setattr(engine_module.os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert engine_module.default_threads() == threads
    assert LlamaCpp().n_threads == threads


def test_threads_can_change_per_call(llm: LlamaCpp, flavour: str, long_prompt: str) -> None:
    text = "".join(collect(stream_of(llm, flavour, long_prompt, max_tokens=4, n_threads=2)))
    assert len(text.split()) >= 2
    assert invoke_of(llm, flavour, long_prompt, max_tokens=4, n_threads=1)


def test_call_arguments_override_the_defaults(llm: LlamaCpp, long_prompt: str) -> None:
    assert llm.max_tokens == 12
    short = llm.stream_chunks(long_prompt, max_tokens=2)
    assert list(short)[-1].generation_info["usage"].completion_tokens == 2
    default = list(llm.stream_chunks(long_prompt))
    assert default[-1].generation_info["usage"].completion_tokens == 12


def test_identity(llm: LlamaCpp) -> None:
    params = llm.asdict()
    assert params["_type"] == "llamacpp"
    assert params["model_path"] == llm.model_path
    assert params["temperature"] == 0 and params["max_tokens"] == 12 and params["chat"] is True
    assert llm.model_name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert LlamaCpp.thread_safe is False
    assert LlamaCpp.can_stream is True
    assert LlamaCpp.native_async is False  # astream runs in a worker thread
