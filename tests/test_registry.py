"""Model ids, the provider registry and third-party providers from entry points."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from lmstream import (
    LLM,
    FakeLLM,
    InvalidInputError,
    OpenAI,
    ProviderInfo,
    load_llm,
    register_provider,
)
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


class _Parrot(LLM):
    prefix: str = ""

    def _call(self, prompt: str, stop: list[str] | None = None, **kwargs: Any) -> str:
        return f"{self.prefix} {prompt}"


class _NamedParrot(_Parrot):
    positional = ("prefix",)


def test_a_plugin_class_gets_the_model_part_in_a_setting_it_has() -> None:
    # entry points register with model_arg=None: the class's model setting, else its first
    # positional one, else a clear error instead of an unexpected model= argument
    register_provider(ProviderInfo("named-parrot", _NamedParrot, None))
    assert load_llm("named-parrot:Polly says:").invoke("hi") == "Polly says: hi"
    register_provider(ProviderInfo("plain-parrot", _Parrot, None))
    assert load_llm("plain-parrot", prefix="Polly:").invoke("hi") == "Polly: hi"
    with pytest.raises(InvalidInputError, match="'plain-parrot' takes no model part"):
        load_llm("plain-parrot:Polly")
    register_provider(ProviderInfo("openai-like", OpenAI, None))
    assert load_llm("openai-like:my-model", base_url="http://127.0.0.1:9/v1").model == "my-model"


def test_a_chat_model_plugin_is_found_by_its_entry_point(tmp_path: Path) -> None:
    (tmp_path / "parrot_chat.py").write_text(
        textwrap.dedent(
            """
            from lmstream import SimpleChatModel

            class ParrotChat(SimpleChatModel):
                model: str = "parrot"

                def _call(self, messages, stop=None, **kwargs):
                    return f"{self.model} says {messages[-1].text}"
            """
        )
    )
    info = tmp_path / "parrot_chat-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: parrot_chat\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[lmstream.chat_models]\nparrot = parrot_chat:ParrotChat\n"
    )
    code = (
        "import asyncio, lmstream\n"
        "chat = lmstream.load_chat_model('parrot:Polly')\n"
        "print(''.join(c.text for c in chat.stream('hi')))\n"
        "async def main():\n"
        "    return ''.join([c.text async for c in chat.astream('ho')])\n"
        "print(asyncio.run(main()))\n"
    )
    env = {"PYTHONPATH": str(tmp_path)}
    run = functools.partial(subprocess.run, capture_output=True, text=True, env=env, timeout=60)
    out = run([sys.executable, "-c", code], check=True)
    assert out.stdout.splitlines() == ["Polly says hi", "Polly says ho"]
    models = run([sys.executable, "-m", "lmstream", "models"], check=True).stdout.splitlines()
    assert [line.split()[:3] for line in models if line.startswith("parrot ")] == [
        ["parrot", "chat", "installed"]
    ]
    said = run([sys.executable, "-m", "lmstream", "chat", "hey", "-m", "parrot:Polly"])
    assert (said.returncode, said.stdout.strip()) == (0, "Polly says hey")
    refused = run([sys.executable, "-m", "lmstream", "hey", "-m", "parrot:Polly"])
    assert refused.returncode == 1 and "unknown provider 'parrot'" in refused.stderr
