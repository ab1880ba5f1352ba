"""Partial pydantic models: every field optional, all the way down, constraints left out,
so that any prefix of a valid object (in the JSON sense) validates. Pure; pydantic is
imported when a partial model is first built."""

from __future__ import annotations

import types
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["Partial", "partial_model"]


def _is_model(tp: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _partial_type(tp: Any) -> Any:
    if _is_model(tp):
        return partial_model(tp)
    origin, args = get_origin(tp), get_args(tp)
    if origin is None or not args:
        return tp
    mapped = tuple(_partial_type(a) for a in args)
    if origin is Union or origin is types.UnionType:
        return Union.__getitem__(mapped)
    if origin in (list, set, frozenset, dict):
        return origin[mapped]
    return tp


@lru_cache(maxsize=256)
def partial_model(model: type[BaseModel]) -> type[BaseModel]:
    """``model`` with every field optional (default ``None``), nested models partial too."""
    from pydantic import ConfigDict, Field, create_model

    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation = _partial_type(info.annotation)
        field = Field(default=None, alias=info.alias, description=info.description)
        fields[name] = (annotation | None, field)
    config = {k: v for k, v in model.model_config.items() if k in ("populate_by_name", "extra")}
    partial: type[BaseModel] = create_model(
        f"Partial{model.__name__}",
        __config__=ConfigDict(**config),  # type: ignore[typeddict-item]
        __doc__=model.__doc__,
        __module__=model.__module__,
        **fields,
    )
    return partial


class Partial:
    """``Partial[Model]``: the partial model of ``Model`` (every field optional, nested
    models partial too); a streamed object validates against it at every step."""

    def __class_getitem__(cls, model: type[BaseModel]) -> type[BaseModel]:
        return partial_model(model)
