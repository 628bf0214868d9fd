"""The patches between signal trees: applied as Datastar applies them, they give the new tree."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from statekeep.web._signals import diff, indexed, path_key, plain

from ._datastar import merge, remove

keys = st.sampled_from(["a", "b", "c", "0", "1", "todo", "a.b", "x__y", "", "é", "done"])
leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=8,
)
trees = st.dictionaries(keys.filter(path_key), values, max_size=5).map(plain)


def applied(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    patch, removed = diff(old, new)
    page = copy.deepcopy(old)
    for path in removed:
        remove(page, path)
    merge(page, patch)
    return page


@settings(suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(trees, trees)
def test_a_patch_takes_a_page_from_the_old_tree_to_the_new(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    assert applied(old, new) == new


@given(trees)
def test_a_tree_is_strict_json_with_keys_datastar_accepts(tree: dict[str, Any]) -> None:
    json.dumps(tree, allow_nan=False)

    def keys_of(value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                assert path_key(key)
                keys_of(inner)

    keys_of(tree)


def test_only_the_changed_leaves_go_out() -> None:
    old = {"todo": indexed([{"title": "a", "done": False}, {"title": "b", "done": False}])}
    new = {"todo": indexed([{"title": "a", "done": False}, {"title": "b", "done": True}])}
    assert diff(old, new) == ({"todo": {"1": {"done": True}}}, [])


def test_a_row_that_left_is_a_removed_path() -> None:
    old = {"todo": indexed(["a", "b", "c"]), "todo_count": 3}
    new = {"todo": indexed(["a", "b"]), "todo_count": 2}
    assert diff(old, new) == ({"todo_count": 2}, ["todo.2"])


def test_user_keys_that_cannot_be_paths_keep_their_object_whole() -> None:
    assert plain({"tags": {"a.b": 1, "x__y": 2}}) == {"tags": [["a.b", 1], ["x__y", 2]]}
    assert plain({"n": math.inf, "m": [math.nan]}) == {"n": None, "m": [None]}
    assert plain({"ok": {"a-b": {"c_d": 1}}}) == {"ok": {"a-b": {"c_d": 1}}}
