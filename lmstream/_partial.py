"""Partial pydantic models: every field optional, all the way down, constraints left out,
so that any prefix of a valid object (in the JSON sense) validates. Pure; pydantic is
imported when a partial model is first built."""

from __future__ import annotations

import types
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = ["Partial", "PartialBuilder", "partial_model"]


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


def _nested(annotation: Any) -> tuple[str, Any] | None:
    """``("model", M)`` or ``("list", M)`` when a field holds a model or a list of them."""
    args = [a for a in get_args(annotation) if a is not type(None)]
    if get_origin(annotation) in (Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if _is_model(annotation):
        return "model", annotation
    inner = get_args(annotation)
    if get_origin(annotation) is list and len(inner) == 1 and _is_model(inner[0]):
        return "list", inner[0]
    return None


@lru_cache(maxsize=256)
def _layout(cls: type[BaseModel]) -> dict[str, tuple[str, str, Any]]:
    """JSON key -> (field name, "model"/"list", nested partial class), for nested fields."""
    out = {}
    for name, info in cls.model_fields.items():
        nested = _nested(info.annotation)
        if nested is not None:
            out[info.alias or name] = (name, *nested)
    return out


class PartialBuilder:
    """Partial instances of one streamed object, each built in time that does not grow with
    the object: the items of a list before its last are complete, so each is validated once
    and kept (by its path); only the open path from the root is validated again.

    Relies on the snapshots of ``JsonStream``: what is handed out never changes."""

    def __init__(self, cls: type[BaseModel]) -> None:
        self.cls = cls
        self._lists: dict[tuple[Any, ...], list[Any]] = {}

    def build(self, value: Any) -> BaseModel:
        """The partial instance of ``value`` (raises pydantic's ``ValidationError``)."""
        return self._model(value, self.cls, ())

    def _model(self, value: Any, cls: type[BaseModel], path: tuple[Any, ...]) -> BaseModel:
        layout = _layout(cls)
        if not isinstance(value, dict) or not layout:
            return cls.model_validate(value)
        plain = {k: v for k, v in value.items() if k not in layout}
        instance = cls.model_validate(plain)
        for key, (name, kind, sub) in layout.items():
            if key not in value:
                continue
            child = value[key]
            if kind == "model" and isinstance(child, dict):
                built: Any = self._model(child, sub, (*path, key))
            elif kind == "list" and isinstance(child, list) and _all_dicts(child):
                built = self._list(child, sub, (*path, key))
            else:  # null, or not the shape the field wants: pydantic judges it whole
                built = cls.model_validate({**plain, key: child}).__dict__[name]
            instance.__dict__[name] = built
            instance.__pydantic_fields_set__.add(name)
        return instance

    def _list(self, items: list[Any], cls: type[BaseModel], path: tuple[Any, ...]) -> list[Any]:
        done = self._lists.setdefault(path, [])
        while len(done) < len(items) - 1:  # complete items: validated once
            done.append(self._model(items[len(done)], cls, (*path, len(done))))
        if not items:
            return []
        return [*done, self._model(items[-1], cls, (*path, len(items) - 1))]


def _all_dicts(items: list[Any]) -> bool:
    return not items or (isinstance(items[0], dict) and isinstance(items[-1], dict))
