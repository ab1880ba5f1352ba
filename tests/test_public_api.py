"""The public surface: ``__all__`` is complete, sorted and importable."""

from __future__ import annotations

import inspect

import lmstream


def test_all_is_sorted_and_unique() -> None:
    names = list(lmstream.__all__)
    assert len(names) == len(set(names))
    # constants first, then classes, then functions and the rest
    assert names == sorted(names, key=lambda n: (not n.isupper(), not n[:1].isupper(), n))


def test_every_public_name_is_exported() -> None:
    public = {
        name
        for name, value in vars(lmstream).items()
        if not name.startswith("_") and not inspect.ismodule(value)
    } - set(lmstream._LAZY)  # loaded on first use, once loaded they stay in the namespace
    assert public - set(lmstream.__all__) == set()
    for name in lmstream.__all__:
        assert hasattr(lmstream, name), name


def test_every_public_class_and_function_has_a_docstring() -> None:
    for name in lmstream.__all__:
        value = getattr(lmstream, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__doc__, name


def test_providers_with_heavy_dependencies_load_lazily() -> None:
    import subprocess
    import sys

    code = (
        "import sys, lmstream; "
        "assert 'llama_cpp' not in sys.modules and 'httpx' not in sys.modules; "
        "assert 'LlamaCpp' in dir(lmstream) and 'OpenAI' in dir(lmstream); "
        "assert 'HTTPLLM' in dir(lmstream) and 'HTTPLLM' not in vars(lmstream); "
        "from lmstream import HTTPLLM, OpenAI; assert issubclass(OpenAI, HTTPLLM)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_importing_lmstream_loads_no_heavy_standard_library_module() -> None:
    import subprocess
    import sys

    # each costs milliseconds on import; lmstream uses them only on paths that need them
    heavy = ["asyncio", "inspect", "dataclasses", "difflib", "ast", "json", "random", "pydantic"]
    heavy += ["opentelemetry", "queue"]
    code = f"import sys, lmstream; print(sorted(set({heavy!r}) & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


def test_the_builtin_providers_are_listed_once_in_the_registry() -> None:
    from lmstream.registry import available_providers

    classes = {p.factory().__name__ for p in available_providers() if p.name in _BUILTIN}
    assert classes == {"FakeLLM", "LlamaCpp", "OpenAI", "RemoteLLM"}
    lazy = {"LlamaCpp", "ChatLlamaCpp", "OpenAI", "RemoteLLM", "HTTPLLM", "ChatOpenAI",
            "HTTPChatModel",
            "RemoteChatModel"}  # fmt: skip
    assert set(lmstream._LAZY) == lazy | {"SizeLimits", "Router", "ChatRouter"}
    for name in classes:
        assert getattr(lmstream, name).__name__ == name


_BUILTIN = ("fake", "llamacpp", "openai", "remote")
