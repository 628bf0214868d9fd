"""Transactions: atomic blocks, nested blocks as savepoints, versions undone on rollback."""

from __future__ import annotations

import pytest

import statekeep
from statekeep import ConflictError, NotFoundError

from .models import Note, Todo


class BoomError(Exception):
    pass


def test_commit_stores_everything(store: statekeep.Store) -> None:
    with store.transaction():
        a = store.save(Todo(title="a"))
        b = store.save(Todo(title="b"))
    assert (a.version, b.version) == (1, 1)
    assert {t.title for t in store.find(Todo)} == {"a", "b"}


def test_reads_inside_a_transaction_see_its_writes(store: statekeep.Store) -> None:
    gone = store.save(Todo(id="gone", title="to delete"))
    with store.transaction():
        store.save(Todo(id="new", title="new"))
        store.delete(gone)
        assert store.get(Todo, "new").title == "new"
        with pytest.raises(NotFoundError):
            store.get(Todo, "gone")
        assert [t.id for t in store.find(Todo)] == ["new"]
        assert store.count(Todo) == 1
        assert set(store.get_many(Todo, ["new", "gone"])) == {"new"}


def test_an_exception_rolls_back_and_is_reraised(store: statekeep.Store) -> None:
    kept = store.save(Todo(id="kept", title="kept"))
    error = BoomError("stop")
    with pytest.raises(BoomError) as excinfo, store.transaction():
        store.save(Todo(id="new", title="new"))
        kept.title = "changed"
        store.save(kept)
        store.delete(Todo, "kept")
        raise error
    assert excinfo.value is error
    assert [t.id for t in store.find(Todo)] == ["kept"]
    assert store.get(Todo, "kept").title == "kept"


def test_versions_are_restored_after_rollback(store: statekeep.Store) -> None:
    existing = store.save(Todo(title="existing"))
    fresh = Todo(title="fresh")
    deleted = store.save(Todo(title="deleted"))
    with pytest.raises(BoomError), store.transaction():
        existing.title = "edited"
        store.save(existing)
        store.save(existing)  # twice in one block
        store.save(fresh)
        store.delete(deleted)
        assert (existing.version, fresh.version, deleted.version) == (3, 1, 0)
        raise BoomError
    assert (existing.version, fresh.version, deleted.version) == (1, 0, 1)
    # so each can be used again as if the block never ran
    store.save(existing)
    store.save(fresh)
    store.delete(deleted)
    assert store.get(Todo, existing.id).title == "edited"
    assert store.get(Todo, existing.id).version == 2
    assert store.get(Todo, fresh.id).version == 1
    assert store.count(Todo) == 2


def test_atomic_across_two_collections(store: statekeep.Store) -> None:
    with pytest.raises(BoomError), store.transaction():
        store.save(Todo(id="t", title="t"))
        store.save(Note(id="n", text="n"))
        raise BoomError
    assert store.count(Todo) == 0
    assert store.count(Note) == 0
    with store.transaction():
        store.save(Todo(id="t", title="t"))
        store.save(Note(id="n", text="n"))
    assert store.get(Todo, "t").title == "t"
    assert store.get(Note, "n").text == "n"


def test_a_conflict_rolls_back_the_whole_block(store: statekeep.Store) -> None:
    store.save(Todo(id="t", title="stored"))
    stale = Todo(id="t", title="stale")
    other = Todo(id="other", title="other")
    with pytest.raises(ConflictError), store.transaction():
        store.save(other)
        store.save(stale)
    assert other.version == 0
    assert stale.version == 0
    assert [t.title for t in store.find(Todo)] == ["stored"]


def test_a_conflict_caught_inside_the_block_leaves_the_rest(store: statekeep.Store) -> None:
    store.save(Todo(id="t", title="stored"))
    with store.transaction():
        store.save(Todo(id="before", title="before"))
        with pytest.raises(ConflictError):
            store.save(Todo(id="t", title="stale"))
        store.save(Todo(id="after", title="after"))
    assert {t.id: t.title for t in store.find(Todo)} == {
        "after": "after",
        "before": "before",
        "t": "stored",
    }


def test_nested_failure_caught_rolls_back_only_the_inner_block(store: statekeep.Store) -> None:
    outer_before = Todo(id="a", title="outer before")
    inner = Todo(id="b", title="inner")
    outer_after = Todo(id="c", title="outer after")
    shared = store.save(Todo(id="s", title="shared"))
    with store.transaction():
        store.save(outer_before)
        shared.title = "outer edit"
        store.save(shared)
        with pytest.raises(BoomError), store.transaction():
            store.save(inner)
            shared.title = "inner edit"
            store.save(shared)
            raise BoomError
        assert inner.version == 0
        assert shared.version == 2  # back to the outer block's version
        assert shared.title == "inner edit"  # data is the caller's; only versions are managed
        store.save(outer_after)
    assert {t.id for t in store.find(Todo)} == {"a", "c", "s"}
    assert (store.get(Todo, "s").title, store.get(Todo, "s").version) == ("outer edit", 2)
    store.save(inner)  # its version was restored, so it saves cleanly now
    assert store.get(Todo, "b").version == 1


def test_inner_success_then_outer_failure_rolls_back_both(store: statekeep.Store) -> None:
    a, b, c = Todo(title="a"), Todo(title="b"), Todo(title="c")
    with pytest.raises(BoomError), store.transaction():
        store.save(a)
        with store.transaction():
            store.save(b)
            with store.transaction():
                store.save(c)
        assert store.count(Todo) == 3
        raise BoomError
    assert store.count(Todo) == 0
    assert (a.version, b.version, c.version) == (0, 0, 0)
    store.save_many([a, b, c])
    assert store.count(Todo) == 3


def test_three_levels_with_a_failure_in_the_middle(store: statekeep.Store) -> None:
    with store.transaction():
        store.save(Todo(id="1", title="level 1"))
        with pytest.raises(BoomError), store.transaction():
            store.save(Todo(id="2", title="level 2"))
            with store.transaction():
                store.save(Todo(id="3", title="level 3"))
            raise BoomError
        with store.transaction():
            store.save(Todo(id="4", title="level 2 again"))
    assert [t.id for t in store.find(Todo)] == ["1", "4"]


def test_a_rolled_back_delete_inside_a_savepoint(store: statekeep.Store) -> None:
    todo = store.save(Todo(id="t", title="x"))
    with store.transaction():
        with pytest.raises(BoomError), store.transaction():
            store.delete(todo)
            raise BoomError
        assert todo.version == 1
        assert store.get(Todo, "t").version == 1
    todo.title = "still here"
    store.save(todo)
    assert store.get(Todo, "t").version == 2


def test_first_write_to_a_collection_rolled_back_then_written_again(
    store: statekeep.Store,
) -> None:
    with pytest.raises(BoomError), store.transaction():
        store.save(Note(id="n", text="first ever"))
        raise BoomError
    assert store.count(Note) == 0
    store.save(Note(id="n", text="second try"))
    assert store.get(Note, "n").text == "second try"


def test_the_store_works_normally_after_a_rollback(store: statekeep.Store) -> None:
    for _ in range(3):
        with pytest.raises(BoomError), store.transaction():
            store.save(Todo(title="never"))
            raise BoomError
    store.save(Todo(title="after"))
    with store.transaction():
        store.save(Todo(title="in a block"))
    assert sorted(t.title for t in store.find(Todo)) == ["after", "in a block"]
