"""Chunks are built by a C constructor: they must be exactly what their Python
``__init__`` builds, for every way of calling it, and cost nothing in references."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import Any

import pytest

from lmstream import Generation, GenerationChunk, _speedups
from lmstream.chunks import _build_fast

CLASSES = [Generation, GenerationChunk]

GOOD_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((), {}),
    (("a",), {}),
    (("a", {"k": 1}), {}),
    ((), {"text": "a"}),
    ((), {"generation_info": {"k": 1}}),
    ((), {"text": "a", "generation_info": None}),
    ((), {"generation_info": {}, "text": "b"}),
    (("a",), {"generation_info": {"k": 1}}),
    ((), {"".join(["te", "xt"]): "a key built at run time, not the interned name"}),
    ((1,), {}),  # stored as given, as the Python ``__init__`` stores it
]

BAD_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("a", None, 3), {}),
    (("a",), {"text": "b"}),
    ((), {"txt": "a"}),
    (("a",), {"generation_info": None, "extra": 1}),
]


def by_python(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    obj = object.__new__(cls)
    cls.__init__(obj, *args, **kwargs)  # type: ignore[misc]
    return obj


def python_init_calls(build: Callable[[], object], init: Any = Generation.__init__) -> int:
    """How many times the Python function ``init`` ran while ``build`` ran."""
    calls = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is init.__code__:
            calls.append(frame.f_code)

    sys.setprofile(profile)
    try:
        build()
    finally:
        sys.setprofile(None)
    return len(calls)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_the_c_constructor_builds_them_without_the_python_init(cls: type) -> None:
    assert _speedups.installed(cls)
    assert python_init_calls(lambda: cls(text="a")) == 0
    assert python_init_calls(lambda: cls("a", {})) == 0

    class Sub(cls):  # type: ignore[valid-type, misc]
        __slots__ = ()

    assert not _speedups.installed(Sub)  # a subclass takes the usual path
    assert python_init_calls(lambda: Sub(text="a")) == 1


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("args", "kwargs"), GOOD_CALLS)
def test_a_chunk_is_what_its_python_init_builds(
    cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    fast, slow = cls(*args, **kwargs), by_python(cls, args, kwargs)
    assert type(fast) is cls
    assert fast.text == slow.text and type(fast.text) is type(slow.text)
    assert fast.generation_info == slow.generation_info
    if "generation_info" in kwargs or len(args) > 1:  # stored itself, not a copy
        given = kwargs.get("generation_info", args[1] if len(args) > 1 else None)
        assert fast.generation_info is given
    assert fast == slow and repr(fast) == repr(slow)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("args", "kwargs"), BAD_CALLS)
def test_a_bad_call_fails_as_the_python_init_fails(
    cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(TypeError) as slow:
        by_python(cls, args, kwargs)
    with pytest.raises(TypeError) as fast:
        cls(*args, **kwargs)
    assert str(fast.value) == str(slow.value)


def test_building_and_dropping_chunks_keeps_reference_counts() -> None:
    text, info = "".join(["refcount", "ed"]), {"k": 1}
    before = sys.getrefcount(text), sys.getrefcount(info)
    chunks = [GenerationChunk(text=text, generation_info=info) for _ in range(100)]
    assert (sys.getrefcount(text), sys.getrefcount(info)) == (before[0] + 100, before[1] + 100)
    for _ in range(100):
        with pytest.raises(TypeError):
            GenerationChunk(text, text=text)
    del chunks
    assert (sys.getrefcount(text), sys.getrefcount(info)) == before


def test_a_chunk_in_a_reference_cycle_is_collected() -> None:
    freed: list[bool] = []

    class Canary:
        def __del__(self) -> None:
            freed.append(True)

    info: dict[str, Any] = {"canary": Canary()}
    chunk = GenerationChunk("x", info)
    info["chunk"] = chunk  # chunk -> info -> chunk
    assert gc.is_tracked(chunk)
    del chunk, info
    gc.collect()
    assert freed == [True]


def test_a_subclass_with_its_own_init_and_slots_is_built_by_it() -> None:
    class Tagged(GenerationChunk):
        __slots__ = ("tag",)

        def __init__(self, text: str = "", generation_info: Any = None, tag: Any = None):
            super().__init__(text, generation_info)
            self.tag = tag

    chunk = Tagged(text="a", tag=1)
    assert (chunk.text, chunk.generation_info, chunk.tag) == ("a", None, 1)
    assert isinstance(chunk + GenerationChunk("b"), GenerationChunk)


def test_a_required_parameter_and_what_install_refuses() -> None:
    class Pair:
        __slots__ = ("a", "b")

        def __init__(self, a: Any, b: Any = 2) -> None:
            self.a, self.b = a, b

    _speedups.install(Pair, ("a", "b"), (2,))
    pair = Pair(b=3, a=1)
    assert (pair.a, pair.b) == (1, 3) and Pair(1).b == 2
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'a'"):
        Pair(b=3)
    with pytest.raises(TypeError, match="not a plain class"):
        _speedups.install(Pair, ("a", "b"), (2,))  # twice
    with pytest.raises(TypeError, match="not a plain class"):
        _speedups.install(int, (), ())

    class Loose:
        def __init__(self, a: Any) -> None:
            self.a = a

    with pytest.raises(TypeError, match="not a writable slot"):
        _speedups.install(Loose, ("a",), ())


def _table_full(cls: type, names: tuple[str, ...], defaults: tuple[Any, ...]) -> None:
    raise RuntimeError("too many classes")


@pytest.mark.parametrize("why", ["not built", "its table is full"])
def test_without_the_c_part_classes_build_through_python(
    monkeypatch: pytest.MonkeyPatch, why: str
) -> None:
    class Plain:
        __slots__ = ("text",)

        def __init__(self, text: str = "") -> None:
            self.text = text

    if why == "not built":
        monkeypatch.setitem(sys.modules, "lmstream._speedups", None)
    else:  # the classes of many subinterpreters
        monkeypatch.setattr(_speedups, "install", _table_full)
    _build_fast(Plain)
    assert not _speedups.installed(Plain)
    assert python_init_calls(lambda: Plain(text="a"), Plain.__init__) == 1
