"""Events are delivered after their change commits, never before, never for a
rollback; in the order the changes were made; for every kind of write
(save, save_many atomic and chunked, delete, write-behind)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import cast

import pytest

import statekeep
from statekeep import ConflictError, NotFoundError

from ._support import Recorder, names, outbox, outbox_events, read_elsewhere, wait_for
from .models import Counter, Note, Todo


class BoomError(Exception):
    pass


def test_a_save_is_delivered_after_it_commits(store: statekeep.Store) -> None:
    visible: list[int | None] = []
    recorder = Recorder(lambda e: visible.append(read_elsewhere(store, Todo, e.entity_id)))
    store.on(Todo, recorder)

    todo = store.save(Todo(id="a", title="first"))
    assert recorder.seen == [("todo.created", "a", 1)]
    todo.title = "second"
    store.save(todo)
    assert recorder.seen[1:] == [("todo.updated", "a", 2)]
    assert visible == [1, 2]  # what the event says is already there for everyone


def test_a_transaction_delivers_at_its_commit(store: statekeep.Store) -> None:
    visible: list[int | None] = []
    recorder = Recorder(lambda e: visible.append(read_elsewhere(store, Todo, e.entity_id)))
    store.on(Todo, recorder)

    with store.transaction():
        store.save(Todo(id="a", title="a"))
        store.save(Todo(id="b", title="b"))
        assert len(recorder) == 0
    assert recorder.seen == [("todo.created", "a", 1), ("todo.created", "b", 1)]
    assert visible == [1, 1]


def test_an_exception_after_a_save_delivers_nothing(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(statekeep.Event, recorder)
    todo = Todo(id="a", title="a")

    with pytest.raises(BoomError), store.transaction():
        store.save(todo)
        store.save(Note(id="n", text="n"))
        raise BoomError

    assert len(recorder) == 0
    assert todo.version == 0
    assert store.count(Todo) == 0
    store.save(todo)  # the same entity can be saved again, and that is delivered
    assert recorder.seen == [("todo.created", "a", 1)]


def test_a_rolled_back_savepoint_delivers_none_of_its_events(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(statekeep.Event, recorder)
    inner = Todo(id="inner", title="x")

    with store.transaction():
        store.save(Todo(id="before", title="x"))
        with pytest.raises(BoomError), store.transaction():
            store.save(inner)
            inner.title = "y"
            store.save(inner)
            store.save(Note(id="inner-note", text="x"))
            raise BoomError
        with store.transaction():  # a savepoint that is released: its events stay
            store.save(Todo(id="kept", title="x"))
        store.save(Todo(id="after", title="x"))
        assert len(recorder) == 0

    assert recorder.seen == [
        ("todo.created", "before", 1),
        ("todo.created", "kept", 1),
        ("todo.created", "after", 1),
    ]
    assert inner.version == 0


def test_an_outer_rollback_drops_the_events_of_committed_savepoints(
    store: statekeep.Store,
) -> None:
    recorder = Recorder()
    store.on(statekeep.Event, recorder)
    with pytest.raises(BoomError), store.transaction():
        with store.transaction():
            store.save(Todo(id="a", title="x"))
        raise BoomError
    assert len(recorder) == 0


def test_the_outbox_holds_exactly_the_committed_events(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    with store.transaction():
        store.save(Todo(id="a", title="x"))
        with pytest.raises(BoomError), store.transaction():
            store.save(Todo(id="b", title="x"))
            raise BoomError
    with pytest.raises(BoomError), store.transaction():
        store.save(Todo(id="c", title="x"))
        raise BoomError
    store.save(Note(id="n", text="x"))

    assert names(outbox_events(store)) == [("todo.created", "a", 1), ("note.created", "n", 1)]
    positions = [position for position, _ in outbox(store)]
    assert positions == sorted(positions) and len(set(positions)) == 2


def test_events_come_in_change_order_per_entity_in_version_order(
    store: statekeep.Store,
) -> None:
    recorder = Recorder()
    store.on(statekeep.Event, recorder)
    a, b = Todo(id="a", title="a"), Todo(id="b", title="b")

    with store.transaction():
        store.save(a)
        store.save(b)
        a.title = "a2"
        store.save(a)
        store.delete(b)
        store.save(Note(id="n", text="n"))
        a.title = "a3"
        store.save(a)
        store.save_many([Todo(id="c", title="c"), a])
    store.save(a)

    assert recorder.seen == [
        ("todo.created", "a", 1),
        ("todo.created", "b", 1),
        ("todo.updated", "a", 2),
        ("todo.deleted", "b", 1),
        ("note.created", "n", 1),
        ("todo.updated", "a", 3),
        ("todo.created", "c", 1),
        ("todo.updated", "a", 4),
        ("todo.updated", "a", 5),
    ]
    titles = [e.entity.title for e in recorder.events if isinstance(e, Todo.Updated)]
    assert titles == ["a2", "a3", "a3", "a3"]  # each event carries the entity as it was saved


def test_lifecycle_events_are_typed_and_carry_the_entity(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(statekeep.Event, recorder)
    todo = store.save(Todo(id="a", title="x", priority=3))
    store.delete(todo)

    created, deleted = recorder.events
    assert type(created) is Todo.Created and isinstance(created, statekeep.Created)
    assert type(deleted) is Todo.Deleted and isinstance(deleted, statekeep.Deleted)
    assert isinstance(created.entity, Todo)
    assert created.entity.model_dump() == {**todo.model_dump(), "version": 1}
    assert created.event_id != deleted.event_id
    assert created.event_id < deleted.event_id  # ids are ordered by time
    assert created.at <= deleted.at


@pytest.mark.parametrize("atomic", [True, False], ids=["atomic", "chunked"])
def test_save_many_makes_created_and_updated(store: statekeep.Store, atomic: bool) -> None:
    recorder = Recorder()
    store.on(statekeep.Event, recorder)
    delivered_when_pulled: list[int] = []

    def todos() -> Iterator[Todo]:
        for n in range(25):
            delivered_when_pulled.append(len(recorder))
            yield Todo(id=f"t{n:02}", title=f"t{n}")

    assert store.save_many(todos(), chunk_size=10, atomic=atomic) == 25
    assert recorder.seen == [("todo.created", f"t{n:02}", 1) for n in range(25)]
    if atomic:  # one transaction: nothing is delivered until all of it commits
        assert delivered_when_pulled == [0] * 25
    else:  # a transaction per chunk: each chunk is delivered once it commits
        assert delivered_when_pulled == [0] * 10 + [10] * 10 + [20] * 5

    recorder.clear()
    loaded = list(store.find(Todo))
    for todo in loaded:
        todo.done = True
    store.save_many(loaded, chunk_size=10, atomic=atomic)
    assert recorder.seen == [("todo.updated", f"t{n:02}", 2) for n in range(25)]
    assert all(cast(statekeep.Updated, e).entity.done for e in recorder.events)


def test_save_many_of_mixed_classes_keeps_the_input_order(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(statekeep.Event, recorder)
    old = store.save(Todo(id="old", title="x"))
    recorder.clear()

    store.save_many(
        [Note(id="n1", text="x"), old, Todo(id="t1", title="x"), Note(id="n2", text="")]
    )
    assert recorder.seen == [
        ("note.created", "n1", 1),
        ("todo.updated", "old", 2),
        ("todo.created", "t1", 1),
        ("note.created", "n2", 1),
    ]


@pytest.mark.parametrize("atomic", [True, False], ids=["atomic", "chunked"])
def test_save_many_failing_in_a_later_chunk(store: statekeep.Store, atomic: bool) -> None:
    store.save(Todo(id="t12", title="stored first"))
    recorder = Recorder()
    store.on(statekeep.Event, recorder)
    todos = [Todo(id=f"t{n:02}", title="x") for n in range(20)]  # t12 is stale: a conflict

    with pytest.raises(ConflictError):
        store.save_many(todos, chunk_size=10, atomic=atomic)

    if atomic:
        assert len(recorder) == 0
        assert store.count(Todo) == 1
    else:  # the first chunk committed and was delivered; the second was not
        assert recorder.seen == [("todo.created", f"t{n:02}", 1) for n in range(10)]
        assert store.count(Todo) == 11
    assert [t.version for t in todos[10:]] == [0] * 10


def test_delete_makes_deleted_with_the_last_stored_version(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(Todo.Deleted, recorder)
    a = store.save(Todo(id="a", title="x"))
    a.title = "y"
    store.save(a)
    store.save(Todo(id="b", title="x"))

    store.delete(a)
    store.delete(Todo, "b")
    assert recorder.seen == [("todo.deleted", "a", 2), ("todo.deleted", "b", 1)]
    assert all(type(e) is Todo.Deleted for e in recorder.events)

    with pytest.raises(NotFoundError):
        store.delete(Todo, "b")
    stale = store.save(Todo(id="c", title="x"))
    fresh = store.get(Todo, "c")
    store.save(fresh)
    with pytest.raises(ConflictError):
        store.delete(stale)
    assert len(recorder) == 2  # failed deletes deliver nothing


def test_write_behind_makes_the_same_events_as_save(store: statekeep.Store) -> None:
    direct, queued = Recorder(), Recorder()
    store.on(Todo, direct)
    store.on(Note, queued)

    def sequence(
        write: Callable[[statekeep.Entity], object],
        remove: Callable[[statekeep.Entity], object],
        cls: type[Todo] | type[Note],
    ) -> None:
        a = cls(id="a", **({"title": "a"} if cls is Todo else {"text": "a"}))
        b = cls(id="b", **({"title": "b"} if cls is Todo else {"text": "b"}))
        write(a)
        write(b)
        stored = store.get(cls, "a")
        write(stored)
        remove(store.get(cls, "b"))

    def enqueue(entity: statekeep.Entity) -> None:
        store.enqueue(entity)
        assert store.flush(10)

    def enqueue_delete(entity: statekeep.Entity) -> None:
        store.enqueue_delete(entity)
        assert store.flush(10)

    sequence(store.save, store.delete, Todo)
    sequence(enqueue, enqueue_delete, Note)

    expected = [
        ("created", "a", 1),
        ("created", "b", 1),
        ("updated", "a", 2),
        ("deleted", "b", 1),
    ]
    assert [(e.kind, e.entity_id, e.version) for e in direct.events] == expected
    assert [(e.kind, e.entity_id, e.version) for e in queued.events] == expected
    assert [type(e).__name__ for e in queued.events] == [
        "NoteCreated",
        "NoteCreated",
        "NoteUpdated",
        "NoteDeleted",
    ]
    created = queued.events[0]
    assert isinstance(created, Note.Created) and created.entity == Note(id="a", text="a", version=1)
    assert cast(statekeep.Updated, queued.events[2]).entity.version == 2


def test_write_behind_delivers_after_its_batch_commits(store: statekeep.Store) -> None:
    visible: list[int | None] = []
    recorder = Recorder(lambda e: visible.append(read_elsewhere(store, Todo, e.entity_id)))
    store.on(Todo.Created, recorder)
    for n in range(20):
        store.enqueue(Todo(id=f"t{n:02}", title="x"))
    assert store.flush(10)
    wait_for(lambda: len(recorder) == 20, what="20 events")
    assert sorted(e.entity_id for e in recorder.events) == [f"t{n:02}" for n in range(20)]
    assert visible == [1] * 20


def test_write_behind_events_go_to_the_outbox(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    store.enqueue(Todo(id="a", title="x"))
    store.enqueue(Note(id="n", text="x"))
    assert store.flush(10)
    store.enqueue_delete(Todo, "a")
    assert store.flush(10)
    assert sorted(names(outbox_events(store))[:2]) == [
        ("note.created", "n", 1),
        ("todo.created", "a", 1),
    ]
    assert names(outbox_events(store))[2:] == [("todo.deleted", "a", 1)]


def test_concurrent_writers_each_deliver_in_their_own_thread(store: statekeep.Store) -> None:
    """In-process handlers run in the committing thread (docs/events.md): a slow
    handler of one writer holds up that writer only, so another thread's later
    version can reach the other handlers first. Both are delivered; one global
    order is what durable subscriptions give."""
    store.save(Todo(id="a", title="v1"))
    slow_gate, in_slow = threading.Event(), threading.Event()
    versions: list[int] = []

    def slow(event: statekeep.Event) -> None:  # e.g. a handler that calls a web service
        if event.version == 2:
            in_slow.set()
            slow_gate.wait(10)

    store.on(Todo.Updated, slow, priority=10)
    store.on(Todo.Updated, lambda e: versions.append(e.version))

    def first_writer() -> None:
        todo = store.get(Todo, "a")
        todo.title = "v2"
        store.save(todo)

    writer = threading.Thread(target=first_writer)
    writer.start()
    try:
        assert in_slow.wait(10)  # v2 is committed; its handlers are running
        todo = store.get(Todo, "a")
        todo.title = "v3"
        store.save(todo)  # v3 committed and delivered from this thread
        assert versions == [3]  # not held up by the other writer's slow handler
    finally:
        slow_gate.set()
        writer.join()
    assert versions == [3, 2]


def test_regression_events_share_mutable_fields_with_the_entity(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(Counter, recorder)
    counter = Counter(id="c", winners=["ada"])
    with store.transaction():
        store.save(counter)
        counter.winners.append("grace")  # in place: no assignment
        store.save(counter)
    assert [
        cast(statekeep.Created | statekeep.Updated, e).entity.winners for e in recorder.events
    ] == [["ada"], ["ada", "grace"]]
