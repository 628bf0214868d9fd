"""Indexed fields: real indexes on SQL backends, and new ones added to existing data."""

# `Todo.f.x == None` builds a condition; `is None` would not.
# ruff: noqa: E711

from __future__ import annotations

from typing import Annotated, Any

import pytest

import statekeep
from statekeep import Condition, Entity, Indexed
from statekeep.backends.base import Query

from .conftest import Backend
from .models import Todo


def plan(store: statekeep.Store, cls: type[Entity], *conditions: Condition, **equals: Any) -> str:
    info = cls.__statekeep__
    query = Query(info.filters(conditions, equals))
    lines: list[str] = store.backend.explain(info.spec, query)
    return "\n".join(lines)


@pytest.mark.requires("sqlite")
def test_find_on_an_indexed_field_uses_its_index(store: statekeep.Store) -> None:
    store.save_many(Todo(title=f"t{i}", notes=f"n{i}") for i in range(200))
    for conditions in (
        [Todo.f.title == "t5"],
        [Todo.f.title.startswith("t1")],
        [Todo.f.title.in_(["t1", "t2"])],
        [Todo.f.title > "t7"],
    ):
        assert "USING INDEX todo__title" in plan(store, Todo, *conditions), conditions
    assert "USING INDEX todo__title" in plan(store, Todo, title="t5")
    # and the check can tell: a field that is not indexed is a scan
    unindexed = plan(store, Todo, Todo.f.notes == "n5")
    assert "SCAN" in unindexed and "INDEX" not in unindexed


def _reopen(
    backend: Backend, store_url: str, store: statekeep.Store
) -> tuple[statekeep.Store, bool]:
    """A new store on the same data where the backend keeps data; else the same store."""
    if "persistent" in backend.capabilities:
        store.close()
        return statekeep.open(store_url), True
    return store, False


def test_a_new_indexed_field_on_existing_data(
    backend: Backend, store_url: str, store: statekeep.Store
) -> None:
    class Before(Entity, collection="evolving"):
        name: Annotated[str, Indexed()]
        size: int = 0

    store.save_many(Before(id=f"{i:02d}", name=f"n{i}", size=i) for i in range(20))

    class After(Entity, collection="evolving", shared=True):
        name: Annotated[str, Indexed()]
        size: Annotated[int, Indexed()] = 0  # was in the data, not indexed
        colour: Annotated[str | None, Indexed()] = None  # new

    after_store, reopened = _reopen(backend, store_url, store)
    try:
        assert after_store.count(After) == 20
        loaded = after_store.get(After, "07")
        assert (loaded.name, loaded.size, loaded.colour, loaded.version) == ("n7", 7, None, 1)
        assert [e.id for e in after_store.find(After, After.f.size >= 17)] == ["17", "18", "19"]
        assert [e.id for e in after_store.find(After, order_by="-size", limit=2)] == ["19", "18"]
        assert after_store.count(After, colour=None) == 20
        loaded.colour = "red"
        after_store.save(loaded)
        after_store.save(After(id="new", name="new", size=99, colour="blue"))
        assert [e.id for e in after_store.find(After, After.f.colour != None)] == ["07", "new"]
        assert [e.id for e in after_store.find(After, colour="red")] == ["07"]
        assert [e.id for e in after_store.find(After, After.f.size > 50)] == ["new"]
        if "sqlite" in backend.capabilities:
            assert "USING INDEX evolving__size" in plan(after_store, After, After.f.size == 3)
            assert "USING INDEX evolving__colour" in plan(after_store, After, colour="red")
    finally:
        if reopened:
            after_store.close()


@pytest.mark.parametrize("indexed", [True, False], ids=["indexed", "not-indexed"])
def test_a_new_field_with_a_default_is_found_by_its_default(
    backend: Backend, store_url: str, store: statekeep.Store, indexed: bool
) -> None:
    """Old data loads with the new field's default; find must agree with what get shows."""

    class Before(Entity, collection="growing"):
        name: str

    store.save_many(Before(id=f"{i}", name=f"n{i}") for i in range(5))

    if indexed:

        class After(Entity, collection="growing", shared=True):
            name: str
            tier: Annotated[int, Indexed()] = 1

    else:

        class After(Entity, collection="growing", shared=True):  # type: ignore[no-redef]
            name: str
            tier: int = 1

    after_store, reopened = _reopen(backend, store_url, store)
    try:
        assert {e.tier for e in after_store.find(After)} == {1}
        assert after_store.count(After, tier=1) == 5
        assert [e.id for e in after_store.find(After, After.f.tier >= 1)] == [
            "0",
            "1",
            "2",
            "3",
            "4",
        ]
        assert after_store.count(After, After.f.tier == None) == 0
    finally:
        if reopened:
            after_store.close()


def test_indexed_values_follow_updates(store: statekeep.Store) -> None:
    todo = store.save(Todo(title="before"))
    todo.title = "after"
    store.save(todo)
    assert store.count(Todo, title="before") == 0
    assert [t.id for t in store.find(Todo, title="after")] == [todo.id]
    store.delete(todo)
    assert store.count(Todo, title="after") == 0
