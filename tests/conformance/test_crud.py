"""Create, read, update, delete: the basics every backend must get right."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import statekeep
from statekeep import NotFoundError

from .models import Note, RecordingTake, RecordingTakeAlias, Todo


def test_save_returns_the_entity_at_version_one(store: statekeep.Store) -> None:
    todo = Todo(title="write tests")
    assert todo.version == 0
    saved = store.save(todo)
    assert saved is todo
    assert todo.version == 1
    loaded = store.get(Todo, todo.id)
    assert loaded == todo
    assert loaded is not todo
    assert (loaded.title, loaded.done, loaded.priority, loaded.version) == (
        "write tests",
        False,
        None,
        1,
    )


def test_ids_are_generated_unique_and_kept_when_given(store: statekeep.Store) -> None:
    generated = [store.save(Todo(title=f"t{i}")) for i in range(50)]
    assert all(isinstance(t.id, str) and t.id for t in generated)
    assert len({t.id for t in generated}) == 50
    given = store.save(Todo(id="my-own-id", title="mine"))
    assert given.id == "my-own-id"
    assert store.get(Todo, "my-own-id").title == "mine"


def test_update_moves_the_version_and_replaces_the_data(store: statekeep.Store) -> None:
    todo = store.save(Todo(title="draft", priority=1))
    todo.title = "final"
    todo.priority = None
    todo.done = True
    store.save(todo)
    assert todo.version == 2
    loaded = store.get(Todo, todo.id)
    assert (loaded.title, loaded.priority, loaded.done, loaded.version) == ("final", None, True, 2)
    assert store.count(Todo) == 1
    assert [t.title for t in store.find(Todo, title="draft")] == []
    assert [t.title for t in store.find(Todo, title="final")] == ["final"]


def test_get_missing_raises_not_found(store: statekeep.Store) -> None:
    # before the collection exists, and after
    with pytest.raises(NotFoundError) as excinfo:
        store.get(Todo, "nope")
    assert excinfo.value.id == "nope"
    assert isinstance(excinfo.value, LookupError)
    store.save(Todo(title="x"))
    with pytest.raises(NotFoundError):
        store.get(Todo, "nope")


def test_get_many_returns_found_ids_and_leaves_out_missing(store: statekeep.Store) -> None:
    assert store.get_many(Todo, ["a", "b"]) == {}
    todos = [store.save(Todo(id=f"id-{i}", title=f"t{i}")) for i in range(5)]
    found = store.get_many(Todo, ["id-3", "missing", "id-0", "id-3"])
    assert set(found) == {"id-3", "id-0"}
    assert found["id-3"] == todos[3]
    assert found["id-0"] == todos[0]
    assert store.get_many(Todo, []) == {}


def test_get_many_with_more_ids_than_one_sql_statement_takes(store: statekeep.Store) -> None:
    store.save_many(Todo(id=f"id-{i:05d}", title=f"t{i}") for i in range(2500))
    wanted = [f"id-{i:05d}" for i in range(0, 5000, 2)]  # half of them exist
    found = store.get_many(Todo, wanted)
    assert set(found) == {f"id-{i:05d}" for i in range(0, 2500, 2)}
    assert found["id-02498"].title == "t2498"


def test_get_many_takes_a_generator(store: statekeep.Store) -> None:
    store.save(Todo(id="a", title="a"))
    ids: Iterator[str] = (i for i in ["a", "b"])
    assert list(store.get_many(Todo, ids)) == ["a"]


def test_delete_entity(store: statekeep.Store) -> None:
    todo = store.save(Todo(title="gone soon"))
    keep = store.save(Todo(title="stays"))
    store.delete(todo)
    assert todo.version == 0
    with pytest.raises(NotFoundError):
        store.get(Todo, todo.id)
    assert store.count(Todo) == 1
    assert store.get(Todo, keep.id) == keep


def test_delete_by_type_and_id(store: statekeep.Store) -> None:
    todo = store.save(Todo(title="gone soon"))
    store.save(todo)  # version 2: delete by id needs no version
    store.delete(Todo, todo.id)
    with pytest.raises(NotFoundError):
        store.get(Todo, todo.id)
    assert store.count(Todo) == 0


def test_delete_missing_raises_not_found(store: statekeep.Store) -> None:
    with pytest.raises(NotFoundError):
        store.delete(Todo, "never-stored")  # collection does not exist yet
    store.save(Todo(title="x"))
    with pytest.raises(NotFoundError):
        store.delete(Todo, "never-stored")
    unsaved = Todo(title="never saved")
    with pytest.raises(NotFoundError):
        store.delete(unsaved)
    assert store.count(Todo) == 1


def test_a_deleted_entity_can_be_saved_again(store: statekeep.Store) -> None:
    todo = store.save(Todo(title="phoenix"))
    store.delete(todo)
    store.save(todo)
    assert todo.version == 1
    assert store.get(Todo, todo.id).title == "phoenix"


def test_collections_are_separate(store: statekeep.Store) -> None:
    store.save(Todo(id="same", title="a todo"))
    store.save(Note(id="same", text="a note"))
    assert store.get(Todo, "same").title == "a todo"
    assert store.get(Note, "same").text == "a note"
    store.delete(Todo, "same")
    assert store.get(Note, "same").text == "a note"
    assert store.count(Todo) == 0
    assert store.count(Note) == 1


def test_collection_name_is_the_snake_case_class_name(store: statekeep.Store) -> None:
    # RecordingTakeAlias names its collection "recording_take" explicitly
    store.save(RecordingTake(id="s1", name="take one"))
    assert store.get(RecordingTakeAlias, "s1").name == "take one"


def test_empty_store_reads(store: statekeep.Store) -> None:
    assert list(store.find(Todo)) == []
    assert store.count(Todo) == 0
    assert store.count(Todo, Todo.f.done == True) == 0


def test_count_and_find_agree(store: statekeep.Store) -> None:
    for i in range(30):
        store.save(Todo(title=f"t{i}", done=i % 3 == 0, priority=i % 5))
    assert store.count(Todo) == 30
    assert store.count(Todo, done=True) == 10 == len(list(store.find(Todo, done=True)))
    assert store.count(Todo, Todo.f.priority >= 3, done=False) == len(
        list(store.find(Todo, Todo.f.priority >= 3, done=False))
    )
