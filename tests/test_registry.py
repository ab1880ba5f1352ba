"""Model ids, the provider registry and third-party providers from entry points."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lmstream import FakeLLM, InvalidInputError, ProviderInfo, load_llm, register_provider
from lmstream.registry import available_providers


def test_fake_ids_name_the_answer() -> None:
    llm = load_llm("fake:hello there")
    assert isinstance(llm, FakeLLM)
    assert llm.invoke("p") == "hello there"
    assert load_llm("FAKE", responses=["x"]).invoke("p") == "x"


@pytest.mark.parametrize("bad", ["", "  ", "nope", "nope:model"])
def test_unknown_or_empty_ids_are_typed_errors(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        load_llm(bad)


def test_registered_providers_are_listed_and_loaded() -> None:
    register_provider(ProviderInfo("echo-test", lambda **kw: FakeLLM([kw["model"]]), "model"))
    assert "echo-test" in [p.name for p in available_providers()]
    assert load_llm("echo-test:repeat me").invoke("p") == "repeat me"


def test_a_provider_whose_dependency_is_missing_names_the_extra() -> None:
    register_provider(
        ProviderInfo(
            "missing-dep", "nowhere:Nothing", "model", requires="no_such_module_x", extra="x"
        )
    )
    with pytest.raises(ImportError, match=r"pip install 'lmstream\[x\]'"):
        load_llm("missing-dep:m")


def test_third_party_providers_come_from_entry_points(tmp_path: Path) -> None:
    (tmp_path / "plug.py").write_text(
        textwrap.dedent(
            """
            from lmstream import FakeLLM

            def make(model=None, **kwargs):
                return FakeLLM([f"plugin says {model}"])
            """
        )
    )
    info = tmp_path / "plug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: plug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[lmstream.providers]\nplug = plug:make\n")
    code = "import lmstream; print(lmstream.load_llm('plug:hi').invoke('p'))"
    env = {"PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "plugin says hi"
    models = subprocess.run(
        [sys.executable, "-m", "lmstream", "models"],
        capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    assert any(line.startswith("plug ") for line in models.stdout.splitlines())
