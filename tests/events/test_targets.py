"""What a subscription listens to (event classes, entity classes, patterns,
domain events, everything), in which order handlers run, unsubscribing, and
domain events recorded on entities."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pytest

import statekeep
from statekeep import ConflictError

from ._support import Recorder, names, outbox_events
from .models import Note, Session, SessionAbandoned, SessionCompleted, Todo


def write_everything(store: statekeep.Store) -> None:
    """One event of every kind on two collections, and two domain events."""
    todo = store.save(Todo(id="t", title="x"))
    todo.done = True
    store.save(todo)
    store.delete(todo)
    note = store.save(Note(id="n", text="x"))
    note.text = "y"
    store.save(note)
    store.delete(note)
    session = Session(id="s")
    session.record(SessionCompleted(minutes=25))
    session.record(SessionAbandoned(reason="phone"))
    store.save(session)


ALL = [
    ("todo.created", "t", 1),
    ("todo.updated", "t", 2),
    ("todo.deleted", "t", 2),
    ("note.created", "n", 1),
    ("note.updated", "n", 2),
    ("note.deleted", "n", 2),
    ("session.created", "s", 1),
    ("session.session_completed", "s", 1),
    ("session.session_abandoned", "s", 1),
]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        pytest.param(lambda: Todo.Created, [ALL[0]], id="Todo.Created"),
        pytest.param(lambda: Todo.Updated, [ALL[1]], id="Todo.Updated"),
        pytest.param(lambda: Todo.Deleted, [ALL[2]], id="Todo.Deleted"),
        pytest.param(lambda: Todo, ALL[0:3], id="Todo"),
        pytest.param(lambda: Session, ALL[6:9], id="Session"),
        pytest.param(lambda: "todo.*", ALL[0:3], id="todo.*"),
        pytest.param(lambda: "*.deleted", [ALL[2], ALL[5]], id="*.deleted"),
        pytest.param(lambda: "note.up*", [ALL[4]], id="note.up*"),
        pytest.param(lambda: "session.session_completed", [ALL[7]], id="exact name"),
        pytest.param(lambda: statekeep.Created, [ALL[0], ALL[3], ALL[6]], id="Created"),
        pytest.param(lambda: statekeep.Deleted, [ALL[2], ALL[5]], id="Deleted"),
        pytest.param(lambda: statekeep.Lifecycle, ALL[0:7], id="Lifecycle"),
        pytest.param(lambda: SessionCompleted, [ALL[7]], id="domain class"),
        pytest.param(lambda: statekeep.Event, ALL, id="Event"),
    ],
)
def test_a_target_gets_exactly_its_events(
    store: statekeep.Store, target: object, expected: list[tuple[str, str, int]]
) -> None:
    recorder = Recorder()
    store.on(target(), recorder)  # type: ignore[operator]
    write_everything(store)
    assert recorder.seen == expected


def test_the_decorator_subscribes_and_returns_the_function(store: statekeep.Store) -> None:
    seen: list[str] = []

    @store.on(Todo.Created)
    def created(event: statekeep.Event) -> None:
        seen.append(event.entity_id)

    assert callable(created) and created.__name__ == "created"
    store.save(Todo(id="a", title="x"))
    assert seen == ["a"]
    assert store.off(created) == 1
    store.save(Todo(id="b", title="x"))
    assert seen == ["a"]


def test_domain_events_are_typed_and_stamped(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(SessionCompleted, recorder)
    session = Session(id="s")
    session.record(SessionCompleted(minutes=25))
    assert len(recorder) == 0  # recording alone delivers nothing
    store.save(session)

    (event,) = recorder.events
    assert type(event) is SessionCompleted
    assert (event.collection, event.entity_id, event.version) == ("session", "s", 1)
    assert event.minutes == 25 and event.name == "session.session_completed"

    session.minutes = 30
    store.save(session)  # nothing recorded since: no domain event
    assert len(recorder) == 1
    session.record(SessionCompleted(minutes=30))
    store.save(session)
    assert [(e.version, cast(SessionCompleted, e).minutes) for e in recorder.events] == [
        (1, 25),
        (3, 30),
    ]


def test_domain_events_are_delivered_after_the_save_commits(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(statekeep.Event, recorder)
    session = Session(id="s")
    with store.transaction():
        session.record(SessionCompleted(minutes=1))
        store.save(session)
        assert len(recorder) == 0
    assert recorder.seen == [("session.created", "s", 1), ("session.session_completed", "s", 1)]


def test_a_conflicting_save_keeps_the_recorded_event_for_the_next_save(
    store: statekeep.Store,
) -> None:
    recorder = Recorder()
    store.on(SessionCompleted, recorder)
    store.save(Session(id="s"))
    mine, theirs = store.get(Session, "s"), store.get(Session, "s")
    store.save(theirs)

    mine.record(SessionCompleted(minutes=5))
    with pytest.raises(ConflictError):
        store.save(mine)
    assert len(recorder) == 0

    fresh = store.get(Session, "s")  # the usual retry: reload, and save the reloaded one...
    store.save(fresh)
    assert len(recorder) == 0  # ...which recorded nothing
    mine.version = fresh.version  # or bring the conflicting one up to date
    store.save(mine)
    assert recorder.seen == [("session.session_completed", "s", 4)]
    assert cast(SessionCompleted, recorder.events[0]).minutes == 5


def test_a_failed_save_in_a_transaction_keeps_the_recorded_event(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(SessionCompleted, recorder)
    store.save(Session(id="s"))
    stale = Session(id="s")  # version 0: a conflict
    stale.record(SessionCompleted(minutes=7))
    with pytest.raises(ConflictError), store.transaction():
        store.save(stale)
    stale.version = 1
    store.save(stale)
    assert recorder.seen == [("session.session_completed", "s", 2)]


def test_regression_a_rolled_back_transaction_loses_recorded_events(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(SessionCompleted, recorder)
    session = Session(id="s")
    session.record(SessionCompleted(minutes=9))
    with pytest.raises(RuntimeError), store.transaction():
        store.save(session)
        raise RuntimeError("something else failed")
    assert session.version == 0  # restored, so that it can be saved again
    store.save(session)
    assert recorder.seen == [("session.session_completed", "s", 1)]


def test_regression_save_many_chunk_failure_records_lifecycle_events(
    outbox_store: statekeep.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = outbox_store
    recorder = Recorder()
    store.on(statekeep.Event, recorder)
    a, b = Session(id="a"), Session(id="b")
    b.record(SessionCompleted(minutes=1))
    real = store.backend.append_events

    def append_once_failing(bodies: list[str]) -> None:
        monkeypatch.setattr(store.backend, "append_events", real)
        raise statekeep.BackendError("the database went away at commit")

    monkeypatch.setattr(store.backend, "append_events", append_once_failing)
    with pytest.raises(statekeep.BackendError):
        store.save_many([a, b], atomic=False)
    assert (a.version, b.version) == (0, 0)
    assert len(recorder) == 0

    store.save_many([a, b], atomic=False)
    assert recorder.seen == [
        ("session.created", "a", 1),
        ("session.created", "b", 1),
        ("session.session_completed", "b", 1),
    ]


def test_regression_save_many_without_listeners_keeps_recorded_events(
    store: statekeep.Store,
) -> None:
    one, many = Session(id="one"), Session(id="many")
    one.record(SessionCompleted(minutes=1))
    many.record(SessionCompleted(minutes=1))
    store.save(one)
    store.save_many([many])  # nobody listens: both are dropped, as the docstring says
    recorder = Recorder()
    store.on(SessionCompleted, recorder)
    store.save(one)
    store.save(many)
    assert recorder.seen == []


def test_recorded_events_go_to_the_outbox_with_the_save(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    session = Session(id="s")
    session.record(SessionCompleted(minutes=3))
    store.save(session)
    stored = outbox_events(store)
    assert names(stored) == [("session.created", "s", 1), ("session.session_completed", "s", 1)]
    assert type(stored[1]) is SessionCompleted and stored[1].minutes == 3


def test_handlers_run_in_priority_order_then_subscription_order(store: statekeep.Store) -> None:
    calls: list[str] = []

    def handler(label: str) -> Callable[[statekeep.Event], object]:
        return lambda event: calls.append(label)

    store.on(statekeep.Event, handler("low"), priority=-5)
    store.on(Todo.Created, handler("default-1"))
    store.on("todo.*", handler("high"), priority=10)
    store.on(Todo, handler("default-2"))
    store.on(statekeep.Created, handler("higher"), priority=20)
    store.on(Note, handler("not mine"), priority=100)

    store.save(Todo(id="a", title="x"))
    assert calls == ["higher", "high", "default-1", "default-2", "low"]


def test_each_event_goes_to_every_handler_before_the_next(store: statekeep.Store) -> None:
    calls: list[tuple[str, str]] = []
    store.on(Todo, lambda e: calls.append(("first", e.entity_id)), priority=1)
    store.on(Todo, lambda e: calls.append(("second", e.entity_id)))
    store.save_many([Todo(id="a", title="x"), Todo(id="b", title="x")])
    assert calls == [("first", "a"), ("second", "a"), ("first", "b"), ("second", "b")]


def test_off_and_cancel(store: statekeep.Store) -> None:
    recorder, other = Recorder(), Recorder()
    store.on(Todo.Created, recorder)
    store.on("todo.*", recorder)
    cancelled = store.on(Todo, other)
    kept = store.on(Note, other)
    assert isinstance(cancelled, statekeep.Subscription)

    store.save(Todo(id="a", title="x"))
    assert len(recorder) == 2 and len(other) == 1

    assert store.off(recorder) == 2  # every subscription of that handler
    assert store.off(recorder) == 0
    cancelled.cancel()
    store.save(Todo(id="b", title="x"))
    assert len(recorder) == 2 and len(other) == 1

    store.save(Note(id="n", text="x"))
    assert other.seen[-1] == ("note.created", "n", 1)
    assert store.off(kept) == 1
    store.save(Note(id="m", text="x"))
    assert len(other) == 2


def test_a_handler_may_unsubscribe_itself_while_running(store: statekeep.Store) -> None:
    seen: list[str] = []

    def once(event: statekeep.Event) -> None:
        seen.append(event.entity_id)
        store.off(once)

    store.on(Todo, once)
    store.save_many([Todo(id="a", title="x"), Todo(id="b", title="x")])
    store.save(Todo(id="c", title="x"))
    assert seen[0] == "a" and "c" not in seen


def test_a_handler_may_write_to_the_store(store: statekeep.Store) -> None:
    """A handler runs after the commit, outside the transaction: its own
    writes are changes of their own, with events of their own."""
    recorder = Recorder()
    store.on(Note, recorder)

    @store.on(Todo.Created)
    def audit(event: statekeep.Event) -> None:
        store.save(Note(id=f"audit-{event.entity_id}", text=event.event_id))

    with store.transaction():
        store.save(Todo(id="a", title="x"))
        store.save(Todo(id="b", title="x"))
    assert recorder.seen == [("note.created", "audit-a", 1), ("note.created", "audit-b", 1)]
    assert store.count(Note) == 2


def test_enqueue_carries_recorded_domain_events_with_the_write(store: statekeep.Store) -> None:
    """Documented (docs/events.md): domain events recorded on an entity travel
    with its enqueued write, after its lifecycle event, and leave the entity,
    so its next save does not send them again (issue 11, defect 9)."""
    recorder = Recorder()
    store.on(Session, recorder)
    session = Session(id="s")
    session.record(SessionCompleted(minutes=4))
    store.enqueue(session)
    assert store.flush(10)
    assert recorder.seen == [("session.created", "s", 1), ("session.session_completed", "s", 1)]
    session = store.get(Session, "s")
    store.save(session)
    assert recorder.seen[2:] == [("session.updated", "s", 2)]


def test_a_handler_of_other_events_makes_no_save_build_a_lifecycle_event(
    store: statekeep.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an outbox, a lifecycle event is made only when a handler wants
    its kind: a handler of a domain event (or of transitions, as the web
    dashboard's) must not make every save and delete build one."""
    from statekeep._emit import Emitter

    made: list[str] = []
    lifecycle = Emitter._lifecycle

    def counted(self: Emitter, owner: object, kind: str, *args: object) -> object:
        made.append(kind)
        return lifecycle(self, owner, kind, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(Emitter, "_lifecycle", counted)
    got: list[statekeep.Event] = []
    store.on(SessionCompleted, got.append)
    todo = store.save(Todo(id="t", title="x"))
    todo.done = True
    store.save(todo)
    store.save_many([Note(id="n", text="x")])
    store.delete(todo)
    session = Session(id="s")
    session.record(SessionCompleted(minutes=5))
    store.save(session)
    assert made == []
    assert [e.name for e in got] == ["session.session_completed"]  # domain events still go
    store.on(Todo.Updated, got.append)
    todo = store.save(Todo(id="t2", title="y"))
    todo.done = True
    store.save(todo)
    store.delete(todo)
    assert made == ["updated"]
