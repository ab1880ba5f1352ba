"""Declared settings: a model names each of its settings once, with its default and the
rule its values follow; the constructor and a call's own arguments are checked against it.

::

    class MyLLM(LLM):
        model: str = setting("small", TEXT)
        temperature: float | None = setting(None, number(0), per_call=True)

``MyLLM(temprature=1)`` raises ``InvalidInputError`` listing the valid settings, a value
outside its rule raises one saying what a valid value is, and ``for_call`` gives one call's
settings: the instance's, with the call's own arguments checked and applied. A plain
annotated attribute (``prefix: str = ""``) is a setting without a rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Generic, NamedTuple, TypeVar, overload

from lmstream.errors import InvalidInputError

__all__ = [
    "STOP",
    "TEXT",
    "URL",
    "Rule",
    "Setting",
    "for_call",
    "init_settings",
    "kind",
    "number",
    "positional",
    "setting",
    "settings_of",
]

T = TypeVar("T")
REQUIRED: Any = object()


class Rule(NamedTuple):
    """What a valid value is: ``test`` passes it, ``text`` says it in words, ``convert``
    (if any) gives the value to keep."""

    test: Callable[[Any], bool]
    text: str
    convert: Callable[[Any], Any] | None = None


def _is_number(value: Any, integer: bool) -> bool:
    kinds = int if integer else (int, float)
    return not isinstance(value, bool) and isinstance(value, kinds) and math.isfinite(value)


def number(
    at_least: float | None = None,
    at_most: float | None = None,
    *,
    above: float | None = None,
    integer: bool = False,
) -> Rule:
    """A finite number (an int when ``integer``) within the bounds given."""

    def test(v: Any) -> bool:
        return (
            _is_number(v, integer)
            and (at_least is None or v >= at_least)
            and (at_most is None or v <= at_most)
            and (above is None or v > above)
        )

    words = ["an int" if integer else "a number"]
    if at_least is not None and at_most is not None:
        words = [f"{words[0]} from {at_least} to {at_most}"]
    elif at_least is not None:
        words.append(f">= {at_least}")
    elif at_most is not None:
        words.append(f"<= {at_most}")
    if above is not None:
        words.append(f"> {above}")
    return Rule(test, " ".join(words))


def kind(*types: type, text: str) -> Rule:
    """An instance of one of ``types`` (a bool is not a number)."""
    return Rule(lambda v: isinstance(v, types) and not (isinstance(v, bool) and bool not in types),
                text)  # fmt: skip


def _stops(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, Sequence) and all(isinstance(s, str) for s in value)
    )


STOP = Rule(_stops, "a str or a list of str", lambda v: [v] if isinstance(v, str) else list(v))
"""Stop sequences: one string or several, kept as a list."""
TEXT = Rule(lambda v: isinstance(v, str) and bool(v), "a non-empty str")
"""A non-empty string."""
URL = Rule(
    lambda v: isinstance(v, str) and v.startswith(("http://", "https://")),
    "an http:// or https:// URL",
    lambda v: v.rstrip("/"),
)
"""An http(s) URL, kept without its trailing slash."""


class Setting(Generic[T]):
    """One declared setting. Read on the class, it gives its default; an instance keeps
    its own value in its ``__dict__``, so reading it costs what a plain attribute does."""

    __slots__ = ("default", "factory", "name", "nullable", "per_call", "rule")

    def __init__(
        self,
        default: Any = REQUIRED,
        rule: Rule | None = None,
        *,
        factory: Callable[[], Any] | None = None,
        per_call: bool = False,
        nullable: bool = False,
    ) -> None:
        self.default, self.rule, self.factory = default, rule, factory
        self.per_call, self.name = per_call, ""
        self.nullable = nullable or default is None or factory is not None

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: object, owner: type | None = None) -> T:
        return self.initial()  # type: ignore[no-any-return]

    @property
    def required(self) -> bool:
        """Whether the constructor must be given a value."""
        return self.default is REQUIRED and self.factory is None

    def initial(self) -> Any:
        """The value of a setting not given (a ``factory`` makes one per instance)."""
        return self.factory() if self.factory is not None else self.default

    def check(self, value: Any, owner: str) -> Any:
        """``value`` as kept, or ``InvalidInputError`` saying what a valid one is."""
        if value is None and self.nullable:
            if self.factory is None:
                return None  # None is a value of its own (no time limit, no size limit)
            value = self.factory()  # a factory's value is checked like a given one
        rule = self.rule
        if rule is None:
            return value
        if not rule.test(value):
            none = " or None" if self.nullable else ""
            raise InvalidInputError(
                f"{owner}: {self.name} must be {rule.text}{none}, not {value!r}"
            )
        return value if rule.convert is None else rule.convert(value)

    def with_default(self, default: Any) -> Setting[T]:
        """This setting with another default (a subclass overriding it)."""
        copy: Setting[T] = Setting(default, self.rule, per_call=self.per_call,
                                   nullable=self.nullable)  # fmt: skip
        copy.name = self.name
        return copy


@overload
def setting(
    default: T, rule: Rule | None = None, *, per_call: bool = ..., nullable: bool = ...
) -> T: ...
@overload
def setting(*, factory: Callable[[], T], rule: Rule | None = None, per_call: bool = ...) -> T: ...
@overload
def setting(*, rule: Rule | None = None, per_call: bool = ...) -> Any: ...
def setting(
    default: Any = REQUIRED,
    rule: Rule | None = None,
    *,
    factory: Callable[[], Any] | None = None,
    per_call: bool = False,
    nullable: bool = False,
) -> Any:
    """Declare a setting: its default (none: required; ``factory``: one made per instance,
    and what ``None`` stands for), the ``rule`` its values follow, and whether a call's own
    arguments may override it (``per_call``)."""
    return Setting(default, rule, factory=factory, per_call=per_call, nullable=nullable)


_CACHE: dict[tuple[type, type], dict[str, Setting[Any]]] = {}


def settings_of(cls: type, stop_at: type) -> dict[str, Setting[Any]]:
    """The settings ``cls`` declares below ``stop_at``: its public annotated attributes, in
    the order of declaration, base classes first."""
    found = _CACHE.get((cls, stop_at))
    if found is not None:
        return found
    found = {}
    for klass in reversed(cls.__mro__):
        if not issubclass(klass, stop_at) or klass is stop_at:
            continue
        attrs = vars(klass)
        for name in found.keys() & attrs.keys():  # a default overridden without annotation
            if not isinstance(attrs[name], Setting):
                found[name] = found[name].with_default(attrs[name])
        for name, annotation in attrs.get("__annotations__", {}).items():
            if name.startswith("_") or "ClassVar" in str(annotation):
                continue
            value = attrs.get(name, REQUIRED)
            if isinstance(value, Setting):
                found[name] = value
            elif name in found:
                found[name] = found[name].with_default(value)
            else:
                found[name] = Setting(value, nullable=False)
                found[name].name = name
    _CACHE[cls, stop_at] = found
    return found


def _listing(names: Sequence[str]) -> str:
    return ", ".join(sorted(names)) if names else "none"


def _hint(unknown: Sequence[str], valid: Sequence[str]) -> str:
    import difflib  # only when a name is wrong

    close = [m for name in unknown for m in difflib.get_close_matches(name, valid, 1)]
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""


def init_settings(
    obj: Any, stop_at: type, values: dict[str, Any], others: Sequence[str] = ()
) -> None:
    """Set ``obj``'s settings from constructor arguments, checked; the others to their
    defaults. Unknown or missing ones raise ``InvalidInputError`` naming the valid ones
    (and ``others``, the constructor's other arguments)."""
    settings, owner = settings_of(type(obj), stop_at), type(obj).__name__
    unknown = sorted(values.keys() - settings.keys())
    if unknown or any(s.required and n not in values for n, s in settings.items()):
        valid = f"its settings: {_listing(list(settings))}" + (
            f"; also {_listing(others)}" if others else ""
        )
        if unknown:
            hint = _hint(unknown, [*settings, *others])
            raise InvalidInputError(f"{owner} got unexpected arguments: {unknown}{hint}; {valid}")
        missing = [n for n, s in settings.items() if s.required and n not in values]
        raise InvalidInputError(f"{owner} requires the argument {missing[0]!r}; {valid}")
    for name, declared in settings.items():
        if name in values:
            obj.__dict__[name] = declared.check(values[name], owner)
        elif name not in obj.__dict__:
            obj.__dict__[name] = (
                declared.check(None, owner) if declared.factory else declared.default
            )


def positional(
    owner: str, names: Sequence[str], args: Sequence[Any], values: dict[str, Any]
) -> dict[str, Any]:
    """``values`` with the positional ``args`` given to the settings ``names``, in order."""
    if len(args) > len(names):
        raise InvalidInputError(
            f"{owner} takes {len(names)} positional argument(s) ({_listing(names)}), "
            f"got {len(args)}: give the others by name"
        )
    for name, value in zip(names, args, strict=False):
        if name in values:
            raise InvalidInputError(f"{owner} got {name!r} both by position and by name")
        values[name] = value
    return values


def for_call(obj: Any, stop_at: type, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Every setting of ``obj`` for one call: the call's arguments (checked; only settings
    declared ``per_call``) over the instance's values, read now."""
    settings, owner = settings_of(type(obj), stop_at), type(obj).__name__
    values = {name: getattr(obj, name) for name in settings}
    for name, value in kwargs.items():
        declared = settings.get(name)
        if declared is None or not declared.per_call:
            allowed = [n for n, s in settings.items() if s.per_call]
            raise InvalidInputError(
                f"{owner} got an unknown argument {name!r} for a call{_hint([name], allowed)}; "
                f"per-call settings: {_listing(allowed)}"
            )
        values[name] = declared.check(value, owner)
    return values
