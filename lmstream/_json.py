"""JSON-safe forms of what runs produce: chunks, usage, results, prompt values, errors."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any
from uuid import UUID

__all__ = ["dumps", "error_dict", "to_jsonable"]


def error_dict(exc: BaseException) -> dict[str, Any]:
    """``{"type", "message"}`` plus whatever the error carries (partial text, usage...)."""
    out: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    for key in ("partial_text", "llm_output", "status_code", "phase", "retry_after", "path"):
        value = getattr(exc, key, None)
        if value not in (None, ""):
            out[key] = value
    usage = getattr(exc, "usage", None)
    if usage is not None:
        out["usage"] = to_jsonable(usage)
    return out


def to_jsonable(value: Any) -> Any:
    """``value`` with every lmstream object replaced by plain JSON data."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, BaseException):
        return error_dict(value)
    if isinstance(value, UUID):
        return str(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict):
        return to_jsonable(to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    to_string = getattr(value, "to_string", None)
    if callable(to_string):
        return to_string()
    return repr(value)


def dumps(value: Any) -> str:
    """One line of JSON for ``value``."""
    return json.dumps(to_jsonable(value), ensure_ascii=False, separators=(",", ":"))
