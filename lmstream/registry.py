"""Model ids (``provider:model``) and the providers behind them.

Built-in providers are registered by import path, so nothing heavy is imported until a
model is loaded. Third-party providers register through the ``lmstream.providers``
entry-point group: the entry point's name is the provider name and it loads a class
(or factory) called as ``factory(model, **kwargs)`` with the part after the colon.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from lmstream.errors import InvalidInputError
from lmstream.llm import BaseLLM

__all__ = ["ProviderInfo", "available_providers", "load_llm", "register_provider"]

ENTRY_POINT_GROUP = "lmstream.providers"
DEFAULT_MODEL = "llamacpp"


class ProviderInfo:
    """A registered provider: how to build it (``target``: ``"module:Class"`` or a
    callable), which keyword gets the model part of the id (``model_arg``), and what it
    needs (``requires``: a module; ``extra``: the pip extra that installs it)."""

    def __init__(
        self,
        name: str,
        target: str | Callable[..., BaseLLM],
        model_arg: str | None,
        description: str = "",
        requires: str | None = None,
        extra: str | None = None,
    ) -> None:
        self.name = name
        self.target = target
        self.model_arg = model_arg
        self.description = description
        self.requires = requires
        self.extra = extra

    def __repr__(self) -> str:
        return f"ProviderInfo(name={self.name!r}, target={self.target!r})"

    @property
    def installed(self) -> bool:
        """Whether what the provider needs is installed."""
        import importlib.util

        return self.requires is None or importlib.util.find_spec(self.requires) is not None

    def factory(self) -> Callable[..., BaseLLM]:
        """The class or callable that builds the provider."""
        if callable(self.target):
            return self.target
        module, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


_BUILTIN = [
    ProviderInfo(
        "llamacpp", "lmstream.providers.llamacpp:LlamaCpp", "model_path",
        "a local GGUF model through llama.cpp (default: the embedded SmolLM2-135M-Instruct)",
        "llama_cpp", "local",
    ),
    ProviderInfo(
        "openai", "lmstream.providers.openai:OpenAI", "model",
        "any OpenAI-compatible /v1/completions server (OPENAI_BASE_URL, OPENAI_API_KEY)",
        "httpx", "openai",
    ),
    ProviderInfo(
        "remote", "lmstream.providers.remote:RemoteLLM", "url",
        "a model served by lmstream serve (remote:http://host:8000)", "httpx", "openai",
    ),
    ProviderInfo(
        "fake", "lmstream.providers.fake:FakeLLM", "responses",
        "scripted responses for tests and demos (fake:<text> answers <text>)",
    ),
]  # fmt: skip
_REGISTRY: dict[str, ProviderInfo] = {p.name: p for p in _BUILTIN}
_PLUGINS_LOADED = False


def register_provider(info: ProviderInfo) -> None:
    """Register (or replace) a provider."""
    _REGISTRY[info.name] = info


_CHAT_MODELS = {"fake": ("lmstream.providers.fake_chat:FakeChatModel", "responses")}


def load_chat_model(model_id: str, **kwargs: Any) -> Any:
    """The chat model for an id such as ``"fake:hello"`` (answers ``hello``); kwargs go to
    the provider."""
    info, model = _parse(model_id)
    target = _CHAT_MODELS.get(info.name)
    if target is None:
        known = ", ".join(sorted(_CHAT_MODELS))
        raise InvalidInputError(f"provider {info.name!r} has no chat model yet (chat: {known})")
    path, model_arg = target
    if model is not None:
        kwargs.setdefault(model_arg, [model] if info.name == "fake" else model)
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)(**kwargs)


def _load_plugins() -> None:
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            _REGISTRY[ep.name] = ProviderInfo(ep.name, ep.value, "model", f"plugin {ep.value}")


def available_providers() -> list[ProviderInfo]:
    """Every registered provider, built-in and from plugins."""
    _load_plugins()
    return sorted(_REGISTRY.values(), key=lambda p: p.name)


def _parse(model_id: str) -> tuple[ProviderInfo, str | None]:
    if not isinstance(model_id, str) or not model_id.strip():
        raise InvalidInputError(f"a model id is a non-empty string, got {model_id!r}")
    name, sep, model = model_id.strip().partition(":")
    _load_plugins()
    info = _REGISTRY.get(name.lower())
    if info is None:
        known = ", ".join(sorted(_REGISTRY))
        raise InvalidInputError(f"unknown provider {name!r} in {model_id!r} (known: {known})")
    return info, (model if sep and model else None)


def load_llm(model_id: str = DEFAULT_MODEL, **kwargs: Any) -> BaseLLM:
    """The LLM for an id such as ``"llamacpp"``, ``"llamacpp:/models/x.gguf"``,
    ``"openai:gpt-3.5-turbo-instruct"`` or ``"fake:hello"``; kwargs go to the provider."""
    info, model = _parse(model_id)
    if not info.installed:
        raise ImportError(
            f"provider {info.name!r} needs {info.requires!r}: pip install 'lmstream[{info.extra}]'"
        )
    if model is not None:
        if info.model_arg is None:
            raise InvalidInputError(f"provider {info.name!r} takes no model part: {model_id!r}")
        value: Any = [model] if info.name == "fake" else model  # fake:<text> answers <text>
        kwargs.setdefault(info.model_arg, value)
    return info.factory()(**kwargs)
