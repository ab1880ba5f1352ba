"""Model ids (``provider:model``) and the providers behind them.

Built-in providers are registered by import path, so nothing heavy is imported until a
model is loaded. Third-party providers register through the ``lmstream.providers``
entry-point group: the entry point's name is the provider name and it loads a class
(or factory); the part of the id after the colon goes to its ``model`` setting (or, for a
class without one, to its first positional setting; a plain function gets ``model=``).
Chat models register the same way in the ``lmstream.chat_models`` group, and get the
model part as ``model=``.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from lmstream.errors import InvalidInputError
from lmstream.llm import BaseLLM
from lmstream.settings import settings_of

__all__ = [
    "ProviderInfo",
    "available_providers",
    "builtin_classes",
    "chat_only_providers",
    "chat_providers",
    "load_llm",
    "register_provider",
]

ENTRY_POINT_GROUP = "lmstream.providers"
CHAT_ENTRY_POINT_GROUP = "lmstream.chat_models"
DEFAULT_MODEL = "llamacpp"


class ProviderInfo:
    """A registered provider: how to build it (``target``: ``"module:Class"`` or a
    callable), which keyword gets the model part of the id (``model_arg``; ``None``: the
    class's ``model`` setting or its first positional one), what it needs (``requires``: a
    module; ``extra``: the pip extra that installs it), and ``claims``, a pattern of model
    ids that belong to it (``gpt-4`` to ``openai``), for suggestions."""

    def __init__(
        self,
        name: str,
        target: str | Callable[..., BaseLLM],
        model_arg: str | None,
        description: str = "",
        requires: str | None = None,
        extra: str | None = None,
        claims: str | None = None,
    ) -> None:
        self.name = name
        self.target = target
        self.model_arg = model_arg
        self.description = description
        self.requires = requires
        self.extra = extra
        self.claims = re.compile(claims, re.IGNORECASE) if claims else None

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
        "llama_cpp", "local", claims=r".+\.gguf$",
    ),
    ProviderInfo(
        "openai", "lmstream.providers.openai:OpenAI", "model",
        "any OpenAI-compatible server, /v1/completions or /v1/chat/completions (OPENAI_BASE_URL, "
        "OPENAI_API_KEY)",
        "httpx", "openai", claims=r"(gpt-|o\d|text-|davinci|babbage|chatgpt|ft:)",
    ),
    ProviderInfo(
        "remote", "lmstream.providers.remote:RemoteLLM", "url",
        "a model served by lmstream serve (remote:http://host:8000)", "httpx", "openai",
        claims=r"https?://",
    ),
    ProviderInfo(
        "langchain", "lmstream.langchain:load", "path",
        "any LangChain LLM or chat model (langchain:module.Class, settings as options)",
        "langchain_core", "langchain",
    ),
    ProviderInfo(
        "fake", "lmstream.providers.fake:FakeLLM", "responses",
        "scripted responses for tests and demos (fake:<text> answers <text>)",
    ),
]  # fmt: skip
"""The built-in providers: the one list of them (``lmstream`` exports their classes)."""


def builtin_classes() -> dict[str, str]:
    """The built-in provider classes whose dependencies are heavy, by name: their module
    (a factory function, such as LangChain's adapter, is not a class to export)."""
    found = {}
    for info in _BUILTIN:
        if info.requires is not None and isinstance(info.target, str):
            module, _, name = info.target.partition(":")
            if name[:1].isupper():
                found[name] = module
    return found


_REGISTRY: dict[str, ProviderInfo] = {p.name: p for p in _BUILTIN}
_PLUGINS_LOADED = False


def register_provider(info: ProviderInfo) -> None:
    """Register (or replace) a provider."""
    _REGISTRY[info.name] = info


_CHAT_MODELS = {
    "fake": ("lmstream.providers.fake_chat:FakeChatModel", "responses"),
    "langchain": ("lmstream.langchain_chat:load_chat", "path"),
    "llamacpp": ("lmstream.providers.llamacpp_chat:ChatLlamaCpp", "model_path"),
    "openai": ("lmstream.providers.openai_chat:ChatOpenAI", "model"),
    "remote": ("lmstream.providers.remote_chat:RemoteChatModel", "url"),
}


def load_chat_model(model_id: str, **kwargs: Any) -> Any:
    """The chat model for an id such as ``"fake:hello"`` (answers ``hello``); kwargs go to
    the provider."""
    info, model = _parse(model_id, chat=True)
    target = _CHAT_MODELS.get(info.name)
    if target is None:
        known = ", ".join(sorted(_CHAT_MODELS))
        raise InvalidInputError(f"provider {info.name!r} has no chat model yet (chat: {known})")
    path, model_arg = target
    if model is not None:
        kwargs.setdefault(model_arg, [model] if info.name == "fake" else model)
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)(**kwargs)


def chat_providers() -> list[str]:
    """The providers whose ids name a chat model (``load_chat_model``), plugins included."""
    _load_plugins()
    return sorted(_CHAT_MODELS)


def chat_only_providers() -> list[ProviderInfo]:
    """The chat-model plugins whose names no text provider has."""
    names = [name for name in chat_providers() if name not in _REGISTRY]
    return [ProviderInfo(n, _CHAT_MODELS[n][0], "model", f"chat plugin {_CHAT_MODELS[n][0]}")
            for n in names]  # fmt: skip


def _load_plugins() -> None:
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _REGISTRY:
            _REGISTRY[ep.name] = ProviderInfo(ep.name, ep.value, None, f"plugin {ep.value}")
    for ep in entry_points(group=CHAT_ENTRY_POINT_GROUP):
        _CHAT_MODELS.setdefault(ep.name, (ep.value, "model"))


def available_providers() -> list[ProviderInfo]:
    """Every registered provider, built-in and from plugins."""
    _load_plugins()
    return sorted(_REGISTRY.values(), key=lambda p: p.name)


def _suggestion(model_id: str, name: str, names: list[str]) -> str:
    """The id the user likely meant, among the providers ``names``, as a hint (``gpt-4``:
    ``openai:gpt-4``)."""
    for info in sorted(_REGISTRY.values(), key=lambda p: p.name):
        if info.name in names and info.claims is not None and info.claims.match(model_id):
            return f"; did you mean '{info.name}:{model_id}'?"
    import difflib  # only when a name is wrong

    close = difflib.get_close_matches(name.lower(), names, 1, cutoff=0.7)
    if close:
        return f"; did you mean {close[0] + model_id[len(name) :]!r}?"
    return ""


def _parse(model_id: str, chat: bool = False) -> tuple[ProviderInfo, str | None]:
    if not isinstance(model_id, str) or not model_id.strip():
        raise InvalidInputError(f"a model id is a non-empty string, got {model_id!r}")
    model_id = model_id.strip()
    name, sep, model = model_id.partition(":")
    _load_plugins()
    info = _REGISTRY.get(name.lower())
    if info is None and chat:  # a chat-model plugin and no text provider of that name
        info = next((p for p in chat_only_providers() if p.name == name.lower()), None)
    if info is None:
        names = chat_providers() if chat else sorted(_REGISTRY)
        raise InvalidInputError(
            f"unknown provider {name!r} in {model_id!r}{_suggestion(model_id, name, names)} "
            f"({'chat' if chat else 'known'}: {', '.join(names)})"
        )
    return info, (model if sep and model else None)


def _model_arg(info: ProviderInfo, factory: Callable[..., BaseLLM]) -> str | None:
    """The keyword that gets the model part of an id."""
    if info.model_arg is not None or not isinstance(factory, type):
        return info.model_arg or "model"
    settings = settings_of(factory, BaseLLM) if issubclass(factory, BaseLLM) else {}
    if "model" in settings:
        return "model"
    positional = getattr(factory, "positional", ())
    return positional[0] if positional else None


def _required(factory: Callable[..., BaseLLM], name: str) -> bool:
    if not (isinstance(factory, type) and issubclass(factory, BaseLLM)):
        return False
    setting = settings_of(factory, BaseLLM).get(name)
    return setting is not None and setting.required


def load_llm(model_id: str = DEFAULT_MODEL, **kwargs: Any) -> BaseLLM:
    """The LLM for an id such as ``"llamacpp"``, ``"llamacpp:/models/x.gguf"``,
    ``"openai:gpt-3.5-turbo-instruct"`` or ``"fake:hello"``; kwargs go to the provider."""
    info, model = _parse(model_id)
    if not info.installed:
        raise ImportError(
            f"provider {info.name!r} needs {info.requires!r}: pip install 'lmstream[{info.extra}]'"
        )
    factory = info.factory()
    arg = _model_arg(info, factory)
    if model is not None:
        if arg is None:
            raise InvalidInputError(f"provider {info.name!r} takes no model part: {model_id!r}")
        value: Any = [model] if info.name == "fake" else model  # fake:<text> answers <text>
        kwargs.setdefault(arg, value)
    elif arg is not None and arg not in kwargs and _required(factory, arg):
        raise InvalidInputError(
            f"{model_id!r} lacks the {arg} that provider {info.name!r} needs: "
            f"write {info.name}:<{arg}>" + (f" ({info.description})" if info.description else "")
        )
    return factory(**kwargs)
