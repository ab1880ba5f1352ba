"""RunnableConfig handling: ensure, patch, merge, split for batches, and the ambient config.

The ambient config is a context variable that a parent runnable sets around a child call,
so a runnable called inside a user function (a lambda calling ``llm.invoke``) becomes a
child of the run that called the function, with its callbacks, tags and metadata.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, cast

from lmstream._types import Callbacks, RunnableConfig
from lmstream.errors import InvalidInputError

__all__ = [
    "DEFAULT_RECURSION_LIMIT",
    "ensure_config",
    "get_config_list",
    "merge_configs",
    "patch_config",
    "use_config",
]

DEFAULT_RECURSION_LIMIT = 25
CONFIG_KEYS = frozenset(
    (
        "tags",
        "metadata",
        "callbacks",
        "run_name",
        "max_concurrency",
        "recursion_limit",
        "configurable",
        "run_id",
        "strict",
    )
)

_AMBIENT: ContextVar[RunnableConfig | None] = ContextVar("lmstream_config", default=None)


def _overlay(target: dict[str, Any], source: RunnableConfig | dict[str, Any]) -> None:
    items: dict[str, Any] = dict(source)
    for key, value in items.items():
        if value is not None and key in CONFIG_KEYS:
            # a copy: the caller's lists and dicts stay theirs
            target[key] = value.copy() if isinstance(value, (list, dict)) else value
    for key, value in items.items():
        if value is not None and key not in CONFIG_KEYS:
            if not isinstance(target["configurable"], dict):
                break  # reported by _check_types
            target["configurable"][key] = value


def ensure_config(config: RunnableConfig | None = None) -> RunnableConfig:
    """A complete config: defaults, then the ambient config, then ``config``.

    Unknown top-level keys move into ``configurable``; a string ``configurable["model"]``
    or ``configurable["checkpoint_ns"]`` is copied into ``metadata``.
    """
    if config is not None and not isinstance(config, dict):
        raise InvalidInputError(f"config must be a dict (RunnableConfig), not {type(config)!r}")
    ambient = _AMBIENT.get()
    if not config and ambient is None:  # the common case: nothing to merge or check
        return {"tags": [], "metadata": {}, "callbacks": None, "recursion_limit": 25,
                "configurable": {}}  # fmt: skip
    out: dict[str, Any] = {
        "tags": [],
        "metadata": {},
        "callbacks": None,
        "recursion_limit": DEFAULT_RECURSION_LIMIT,
        "configurable": {},
    }
    if ambient is not None:
        _overlay(out, ambient)
    if config:
        _overlay(out, config)
    _check_types(out)
    configurable = out["configurable"]
    metadata = out["metadata"]
    for key in ("model", "checkpoint_ns"):
        value = configurable.get(key)
        if isinstance(value, str) and key not in metadata:
            metadata[key] = value
    return cast(RunnableConfig, out)


def _check_types(config: dict[str, Any]) -> None:
    tags = config["tags"]
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidInputError(f"config['tags'] must be a list of str, not {tags!r}")
    for key in ("metadata", "configurable"):
        if not isinstance(config[key], dict):
            raise InvalidInputError(f"config[{key!r}] must be a dict, not {config[key]!r}")
    limit = config.get("max_concurrency")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise InvalidInputError(f"config['max_concurrency'] must be a positive int, not {limit!r}")
    name = config.get("run_name")
    if name is not None and not isinstance(name, str):
        raise InvalidInputError(f"config['run_name'] must be a str, not {name!r}")


def patch_config(
    config: RunnableConfig | None,
    *,
    callbacks: Callbacks = None,
    recursion_limit: int | None = None,
    max_concurrency: int | None = None,
    run_name: str | None = None,
    configurable: dict[str, Any] | None = None,
) -> RunnableConfig:
    """A copy of ``config`` with fields replaced. New callbacks drop ``run_name`` and
    ``run_id``: those belonged to the parent run."""
    out = ensure_config(config)
    if callbacks is not None:
        out["callbacks"] = callbacks
        out.pop("run_name", None)
        out.pop("run_id", None)
    if recursion_limit is not None:
        out["recursion_limit"] = recursion_limit
    if max_concurrency is not None:
        out["max_concurrency"] = max_concurrency
    if run_name is not None:
        out["run_name"] = run_name
    if configurable is not None:
        out["configurable"] = {**out.get("configurable", {}), **configurable}
    return out


def child_config(config: RunnableConfig, callbacks: Callbacks) -> RunnableConfig:
    """``config`` for a child run: same inherited keys, the parent's run as callbacks."""
    out = config.copy()
    out["callbacks"] = callbacks
    out.pop("run_name", None)
    out.pop("run_id", None)
    return out


def _merge_callbacks(base: Callbacks, new: Callbacks) -> Callbacks:
    from lmstream.callbacks import CallbackManager

    if base is None:
        return new
    if new is None:
        return base
    if isinstance(base, CallbackManager):
        extra = new.handlers if isinstance(new, CallbackManager) else list(new)
        return base.with_handlers(extra)
    if isinstance(new, CallbackManager):
        return new.with_handlers(list(base))
    return [*base, *new]


def merge_configs(*configs: RunnableConfig | None) -> RunnableConfig:
    """Merge configs left to right: tags unioned and sorted, metadata and configurable
    merged, callbacks combined, other keys last value wins."""
    out: dict[str, Any] = {}
    for config in configs:
        if not config:
            continue
        items: dict[str, Any] = dict(config)
        for key, value in items.items():
            if key == "tags":
                out["tags"] = sorted(set(value) | set(out.get("tags", [])))
            elif key in ("metadata", "configurable"):
                out[key] = {**out.get(key, {}), **(value or {})}
            elif key == "callbacks":
                out["callbacks"] = _merge_callbacks(out.get("callbacks"), value)
            elif key == "recursion_limit":
                if value != DEFAULT_RECURSION_LIMIT:
                    out[key] = value
            elif value is not None or key not in out:
                out[key] = value
    return cast(RunnableConfig, out)


def get_config_list(
    config: RunnableConfig | Sequence[RunnableConfig] | None, length: int
) -> list[RunnableConfig]:
    """One config per input: a list must match ``length``; one config is repeated
    (its ``run_id`` kept for the first input only)."""
    if length < 0:
        raise InvalidInputError(f"length must be >= 0, got {length}")
    if isinstance(config, Sequence):
        if len(config) != length:
            raise InvalidInputError(
                f"config must be a list of the same length as inputs, "
                f"but got {len(config)} configs for {length} inputs"
            )
        return [ensure_config(c) for c in config]
    if length > 1 and isinstance(config, dict) and config.get("run_id") is not None:
        warnings.warn(
            "Provided run_id be used only for the first element of the batch.",
            category=RuntimeWarning,
            stacklevel=3,
        )
        rest = cast(RunnableConfig, {k: v for k, v in config.items() if k != "run_id"})
        return [ensure_config(config)] + [ensure_config(rest) for _ in range(length - 1)]
    return [ensure_config(config) for _ in range(length)]


@contextmanager
def use_config(config: RunnableConfig) -> Iterator[None]:
    """Make ``config`` the ambient config for the duration of the block."""
    token = _AMBIENT.set(config)
    try:
        yield
    finally:
        _AMBIENT.reset(token)


def ambient() -> ContextVar[RunnableConfig | None]:
    """The context variable that holds the ambient config."""
    return _AMBIENT
