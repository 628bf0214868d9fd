"""A handler that raises KeyboardInterrupt or SystemExit (Ctrl-C during a
handler, sys.exit() in one) stops the handlers of that commit and propagates
from the write, but only once the entity reflects what was committed: its
version is the stored one, so the next save is no ConflictError."""

from __future__ import annotations

import pytest

import statekeep
from statekeep import NotFoundError

from ._support import Recorder, outbox_events
from .models import Session, SessionCompleted, Todo

STOPS = [KeyboardInterrupt, SystemExit]


def stopping(kind: type[BaseException]) -> Recorder:
    def stop(event: statekeep.Event) -> None:
        raise kind("stop")

    return Recorder(stop)


@pytest.mark.parametrize("kind", STOPS)
def test_save_keeps_the_committed_version(store: statekeep.Store, kind: type) -> None:
    handler = stopping(kind)
    store.on(Todo, handler)
    todo = Todo(id="a", title="first")
    with pytest.raises(kind):
        store.save(todo)
    assert todo.version == store.get(Todo, "a").version == 1
    assert handler.seen == [("todo.created", "a", 1)]

    store.off(handler)
    todo.title = "second"
    store.save(todo)  # no ConflictError: the entity knew its stored version
    assert store.get(Todo, "a").title == "second"


@pytest.mark.parametrize("kind", STOPS)
def test_recorded_events_are_not_put_back(outbox_store: statekeep.Store, kind: type) -> None:
    store = outbox_store
    handler = store.on(SessionCompleted, stopping(kind))
    session = Session(id="s")
    session.record(SessionCompleted(minutes=3))
    with pytest.raises(kind):
        store.save(session)
    store.off(handler)
    session.minutes = 4
    store.save(session)  # would record SessionCompleted again if it had been put back
    kinds = [(e.name, e.version) for e in outbox_events(store)]
    assert kinds == [
        ("session.created", 1),
        ("session.session_completed", 1),
        ("session.updated", 2),
    ]


@pytest.mark.parametrize("kind", STOPS)
def test_delete_keeps_the_entity_deleted(store: statekeep.Store, kind: type) -> None:
    todo = store.save(Todo(id="a", title="first"))
    store.on(Todo.Deleted, stopping(kind))
    with pytest.raises(kind):
        store.delete(todo)
    assert todo.version == 0
    with pytest.raises(NotFoundError):
        store.get(Todo, "a")
    store.save(todo)  # saved anew, as a deleted entity is


@pytest.mark.parametrize("kind", STOPS)
def test_chunked_save_many_keeps_the_committed_chunk(store: statekeep.Store, kind: type) -> None:
    handler = store.on(Todo, stopping(kind))
    todos = [Todo(id=f"t{n}", title=f"t{n}") for n in range(6)]
    with pytest.raises(kind):
        store.save_many(todos, chunk_size=3, atomic=False)
    # the first chunk committed, then its first handler stopped everything
    assert [t.version for t in todos] == [1, 1, 1, 0, 0, 0]
    assert sorted(t.id for t in store.find(Todo)) == ["t0", "t1", "t2"]
    store.off(handler)
    store.save_many(todos, chunk_size=3, atomic=False)
    assert [t.version for t in store.find(Todo)] == [2, 2, 2, 1, 1, 1]


@pytest.mark.parametrize("kind", STOPS)
def test_a_transaction_keeps_the_committed_versions(store: statekeep.Store, kind: type) -> None:
    handler = store.on(Todo, stopping(kind))
    todos = [Todo(id="a", title="a"), Todo(id="b", title="b")]
    with pytest.raises(kind), store.transaction():
        store.save(todos[0])
        store.save_many([todos[1]])
    assert [t.version for t in todos] == [1, 1]
    store.off(handler)
    store.save_many(todos)
    assert [t.version for t in store.find(Todo)] == [2, 2]


@pytest.mark.parametrize("kind", STOPS)
def test_a_write_behind_batch_whose_handler_stops_keeps_the_writer_going(
    store: statekeep.Store, kind: type
) -> None:
    """The handlers of an enqueued write run on the write-behind thread: there
    is no caller for the exception to reach, and that thread must go on
    storing (it died, and no later enqueue was ever stored)."""
    handler = stopping(kind)
    store.on(Todo.Created, handler)
    first = store.enqueue(Todo(id="a", title="first"))
    assert first.wait_stored(10)
    store.off(handler)
    second = store.enqueue(Todo(id="b", title="second"))
    assert second.wait_stored(10)
    assert store.get(Todo, "b").title == "second"
    assert handler.seen == [("todo.created", "a", 1)]


@pytest.mark.parametrize("kind", STOPS)
def test_a_durable_handler_that_stops_is_a_failure_retried_not_the_end_of_it(
    outbox_store: statekeep.Store, kind: type
) -> None:
    """A durable handler runs on its subscription's thread: sys.exit() there
    ended that thread silently (nothing logged, nothing delivered after)."""
    store = outbox_store
    calls: list[str] = []

    def handler(event: statekeep.Event) -> None:
        calls.append(event.entity_id)
        if calls.count("a") == 1:
            raise kind("stop")

    subscription = store.subscribe("stopping", handler)
    store.save(Todo(id="a", title="first"))
    store.save(Todo(id="b", title="second"))
    assert subscription.wait_idle(20)
    assert subscription.running
    assert subscription.stats.failures == 1
    subscription.stop()
    assert calls == ["a", "a", "b"]
