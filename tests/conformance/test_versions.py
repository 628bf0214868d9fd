"""Optimistic concurrency: a stale version never overwrites, and changes nothing."""

from __future__ import annotations

import pytest

import statekeep
from statekeep import ConflictError, NotFoundError

from .models import Todo


def test_stale_save_raises_and_changes_nothing(store: statekeep.Store) -> None:
    original = store.save(Todo(id="t", title="original"))
    mine = store.get(Todo, "t")
    theirs = store.get(Todo, "t")
    theirs.title = "theirs"
    store.save(theirs)
    mine.title = "mine"
    with pytest.raises(ConflictError) as excinfo:
        store.save(mine)
    assert excinfo.value.id == "t"
    assert mine.version == 1  # not moved forward
    assert mine.title == "mine"
    stored = store.get(Todo, "t")
    assert (stored.title, stored.version) == ("theirs", 2)
    assert original.version == 1


def test_saving_a_new_entity_over_a_stored_id_conflicts(store: statekeep.Store) -> None:
    store.save(Todo(id="t", title="first"))
    impostor = Todo(id="t", title="second")
    with pytest.raises(ConflictError):
        store.save(impostor)
    assert impostor.version == 0
    stored = store.get(Todo, "t")
    assert (stored.title, stored.version) == ("first", 1)


def test_saving_after_someone_deleted_it_conflicts(store: statekeep.Store) -> None:
    todo = store.save(Todo(id="t", title="x"))
    store.delete(Todo, "t")
    todo.title = "resurrected?"
    with pytest.raises(ConflictError):
        store.save(todo)
    assert todo.version == 1
    with pytest.raises(NotFoundError):
        store.get(Todo, "t")


def test_a_version_ahead_of_the_stored_one_conflicts(store: statekeep.Store) -> None:
    store.save(Todo(id="t", title="x"))
    ahead = Todo(id="t", title="from the future", version=5)
    with pytest.raises(ConflictError):
        store.save(ahead)
    assert ahead.version == 5
    assert store.get(Todo, "t").title == "x"


def test_stale_delete_raises_and_keeps_the_entity(store: statekeep.Store) -> None:
    store.save(Todo(id="t", title="x"))
    stale = store.get(Todo, "t")
    fresh = store.get(Todo, "t")
    fresh.title = "newer"
    store.save(fresh)
    with pytest.raises(ConflictError):
        store.delete(stale)
    assert stale.version == 1
    stored = store.get(Todo, "t")
    assert (stored.title, stored.version) == ("newer", 2)
    store.delete(fresh)  # the current version may delete it
    with pytest.raises(NotFoundError):
        store.get(Todo, "t")


def test_each_save_moves_the_version_by_one(store: statekeep.Store) -> None:
    todo = Todo(title="x")
    for expected in range(1, 11):
        store.save(todo)
        assert todo.version == expected
        assert store.get(Todo, todo.id).version == expected
