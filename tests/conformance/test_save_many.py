"""save_many: any number of entities, chunked, atomic unless told otherwise."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator

import pytest

import statekeep
from statekeep import ConflictError, StatekeepError

from .models import Note, Todo

BULK = 100_000


def test_a_hundred_thousand_from_a_generator(store: statekeep.Store) -> None:
    def todos() -> Iterator[Todo]:
        for i in range(BULK):
            yield Todo(id=f"bulk-{i:06d}", title=f"title {i:06d}", priority=i % 10, done=i % 2 == 0)

    assert store.save_many(todos()) == BULK
    assert store.count(Todo) == BULK
    assert store.count(Todo, priority=7) == BULK // 10
    assert store.count(Todo, done=True) == BULK // 2
    for i in (0, 1, 999, 1000, 1001, 54_321, BULK - 1):
        todo = store.get(Todo, f"bulk-{i:06d}")
        assert (todo.title, todo.priority, todo.done, todo.version) == (
            f"title {i:06d}",
            i % 10,
            i % 2 == 0,
            1,
        )
    assert [t.id for t in store.find(Todo, title="title 077777")] == ["bulk-077777"]
    last = list(store.find(Todo, order_by="-title", limit=2))
    assert [t.id for t in last] == [f"bulk-{BULK - 1:06d}", f"bulk-{BULK - 2:06d}"]


def test_returns_the_count_and_moves_every_version(store: statekeep.Store) -> None:
    todos = [Todo(title=f"t{i}") for i in range(2500)]
    assert store.save_many(todos, chunk_size=1000) == 2500
    assert {t.version for t in todos} == {1}
    for todo in todos[::100]:
        todo.done = True
    assert store.save_many(todos[::100]) == 25
    assert store.count(Todo, done=True) == 25
    assert store.get(Todo, todos[100].id).version == 2
    assert store.save_many([]) == 0
    assert store.count(Todo) == 2500


def test_mixed_collections_in_one_call(store: statekeep.Store) -> None:
    items: list[Todo | Note] = []
    for i in range(10):
        items.append(Todo(id=f"{i}", title=f"t{i}"))
        items.append(Note(id=f"{i}", text=f"n{i}"))
    assert store.save_many(items, chunk_size=3) == 20
    assert store.count(Todo) == 10
    assert store.count(Note) == 10
    assert store.get(Note, "7").text == "n7"


def test_atomic_conflict_in_a_later_chunk_stores_nothing(store: statekeep.Store) -> None:
    store.save(Todo(id="taken", title="already stored"))
    todos = [Todo(id=f"new-{i:05d}", title="new") for i in range(5000)]
    todos[4500] = Todo(id="taken", title="stale copy")
    with pytest.raises(ConflictError):
        store.save_many(todos, chunk_size=1000)
    assert store.count(Todo) == 1
    assert store.get(Todo, "taken").title == "already stored"
    assert {t.version for t in todos} == {0}  # every version restored
    del todos[4500]
    assert store.save_many(todos, chunk_size=1000) == 4999  # and they save cleanly
    assert store.count(Todo) == 5000


def test_atomic_false_keeps_the_chunks_before_the_conflict(store: statekeep.Store) -> None:
    store.save(Todo(id="taken", title="already stored"))
    todos = [Todo(id=f"new-{i:05d}", title="new") for i in range(5000)]
    todos[4500] = Todo(id="taken", title="stale copy")
    with pytest.raises(ConflictError):
        store.save_many(todos, chunk_size=1000, atomic=False)
    assert store.count(Todo) == 1 + 4000
    assert {t.id for t in store.find(Todo, title="new")} == {t.id for t in todos[:4000]}
    assert store.get(Todo, "taken").title == "already stored"
    assert {t.version for t in todos[:4000]} == {1}
    assert {t.version for t in todos[4000:]} == {0}
    del todos[4500]
    assert store.save_many(todos[4000:], atomic=False) == 999
    assert store.count(Todo) == 5000


def test_a_stale_update_in_a_later_chunk(store: statekeep.Store) -> None:
    todos = [Todo(id=f"{i:04d}", title="v1") for i in range(3000)]
    store.save_many(todos)
    stale = store.get(Todo, "2500")
    store.save(store.get(Todo, "2500"))  # someone else moved it on
    for todo in todos:
        todo.title = "v2"
    todos[2500] = stale
    with pytest.raises(ConflictError):
        store.save_many(todos, chunk_size=1000)
    assert store.count(Todo, title="v1") == 3000
    assert {t.version for t in todos if t is not stale} == {1}


def test_duplicate_ids_in_one_call_conflict(store: statekeep.Store) -> None:
    todos = [Todo(id="dup", title="one"), Todo(id="other", title="x"), Todo(id="dup", title="two")]
    with pytest.raises(ConflictError):
        store.save_many(todos)
    assert store.count(Todo) == 0
    assert [t.version for t in todos] == [0, 0, 0]


def test_inside_a_transaction_that_rolls_back(store: statekeep.Store) -> None:
    todos = [Todo(title=f"t{i}") for i in range(2500)]
    with pytest.raises(RuntimeError), store.transaction():
        store.save(Note(text="outer"))
        assert store.save_many(todos, chunk_size=500) == 2500
        assert store.count(Todo) == 2500
        raise RuntimeError("roll back")
    assert store.count(Todo) == 0
    assert store.count(Note) == 0
    assert {t.version for t in todos} == {0}


def test_a_failed_save_many_inside_a_transaction_is_a_savepoint(store: statekeep.Store) -> None:
    store.save(Todo(id="taken", title="stored"))
    with store.transaction():
        store.save(Note(id="n", text="kept"))
        with pytest.raises(ConflictError):
            store.save_many([Todo(id="fresh", title="x"), Todo(id="taken", title="stale")])
        store.save(Note(id="m", text="also kept"))
    assert store.count(Note) == 2
    assert [t.id for t in store.find(Todo)] == ["taken"]


def test_memory_stays_bounded_with_a_generator(store: statekeep.Store) -> None:
    """Entities already written are let go: at most about one chunk is alive at a time."""
    chunk_size = 500
    alive = 0
    peak = 0

    def released() -> None:
        nonlocal alive
        alive -= 1

    def todos() -> Iterator[Todo]:
        nonlocal alive, peak
        for i in range(20 * chunk_size):
            todo = Todo(title=f"t{i}")
            weakref.finalize(todo, released)
            alive += 1
            peak = max(peak, alive)
            yield todo
            del todo

    assert store.save_many(todos(), chunk_size=chunk_size) == 20 * chunk_size
    assert store.count(Todo) == 20 * chunk_size
    assert peak <= 2 * chunk_size


@pytest.mark.parametrize("chunk_size", [0, -1, 1.5, "10", True])
def test_bad_chunk_size(
    store: statekeep.Store, assert_unchanged: Callable[[], None], chunk_size: object
) -> None:
    todo = Todo(title="x")
    with pytest.raises(StatekeepError):
        store.save_many([todo], chunk_size=chunk_size)  # type: ignore[arg-type]
    assert todo.version == 0
    assert_unchanged()


def test_the_default_chunk_size_is_the_backends(store: statekeep.Store) -> None:
    """chunk_size=None (the default): as many as the backend does best with."""
    assert store.save_many((Todo(title=f"t{i}") for i in range(2500)), chunk_size=None) == 2500
    assert store.save_many(Todo(title=f"u{i}") for i in range(10)) == 10
    assert store.count(Todo) == 2510
