"""RunnableConfig rules: ensure, merge, patch, per-input lists, the ambient config."""

from __future__ import annotations

import uuid

import pytest

from lmstream import InvalidInputError, ensure_config, get_config_list, merge_configs, patch_config
from lmstream.config import use_config


def test_ensure_fills_defaults_and_moves_unknown_keys() -> None:
    config = ensure_config({"foo": "bar", "configurable": {"model": "m1"}, "tags": ["a"]})  # type: ignore[typeddict-unknown-key]
    assert config["tags"] == ["a"] and config["recursion_limit"] == 25
    assert config["configurable"] == {"model": "m1", "foo": "bar"}
    assert config["metadata"] == {"model": "m1"}
    assert config["callbacks"] is None


def test_ensure_copies_what_it_is_given() -> None:
    tags = ["a"]
    config = ensure_config({"tags": tags})
    config["tags"].append("b")
    assert tags == ["a"]


@pytest.mark.parametrize(
    "bad",
    [
        {"tags": "a"},
        {"metadata": []},
        {"max_concurrency": 0},
        {"max_concurrency": True},
        {"run_name": 3},
    ],
)
def test_bad_config_values_are_typed_errors(bad: dict[str, object]) -> None:
    with pytest.raises(InvalidInputError):
        ensure_config(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        ensure_config("nope")  # type: ignore[arg-type]


def test_the_ambient_config_is_the_base() -> None:
    with use_config(ensure_config({"tags": ["outer"], "metadata": {"k": 1}})):
        config = ensure_config({"tags": ["inner"]})
    assert config["tags"] == ["inner"] and config["metadata"] == {"k": 1}
    assert ensure_config()["metadata"] == {}


def test_merge_configs() -> None:
    merged = merge_configs(
        {"tags": ["b"], "metadata": {"x": 1}, "recursion_limit": 10, "callbacks": [1]},  # type: ignore[list-item]
        {"tags": ["a"], "metadata": {"y": 2}, "recursion_limit": 25, "callbacks": [2]},  # type: ignore[list-item]
    )
    assert merged["tags"] == ["a", "b"]
    assert merged["metadata"] == {"x": 1, "y": 2}
    assert merged["recursion_limit"] == 10
    assert merged["callbacks"] == [1, 2]


def test_patch_with_callbacks_drops_run_identity() -> None:
    config = patch_config({"run_name": "r", "run_id": uuid.uuid4()}, callbacks=[])
    assert "run_name" not in config and "run_id" not in config
    assert patch_config({}, configurable={"a": 1})["configurable"] == {"a": 1}


def test_config_lists() -> None:
    assert len(get_config_list(None, 3)) == 3
    with pytest.raises(InvalidInputError, match="same length"):
        get_config_list([{}, {}], 3)
    run_id = uuid.uuid4()
    with pytest.warns(RuntimeWarning, match="first element"):
        configs = get_config_list({"run_id": run_id}, 2)
    assert configs[0]["run_id"] == run_id and "run_id" not in configs[1]
