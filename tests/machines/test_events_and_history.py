"""What a stored transition leaves behind, on every backend: its Transitioned
event, delivered after the commit only (never for a rollback), carrying the
move and the saved version, to in-process handlers, to durable subscriptions
(outbox=True) and from write-behind; its history record (a machine declared
history=True), written in the transaction that stores the move. Then
store.send against a concurrent writer (ConflictError, or retry=True) and
transition_many: chunked, with conditions, reporting what it skipped."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

import statekeep
import statekeep.aio
from statekeep import (
    ConfigurationError,
    ConflictError,
    Entity,
    Machine,
    NotFoundError,
    State,
    TransitionError,
    TransitionRecord,
)
from statekeep.entity import recorded_count

from ._models import (
    TABLE,
    Recorder,
    RecordingSession,
    SessionFlow,
    TrackedFlow,
    TrackedSession,
    snapshot,
)
from .conftest import OpenStore, RunAsync

E = TypeVar("E", bound=Entity)


class BoomError(Exception):
    pass


def read_elsewhere(store: statekeep.Store, cls: type[E], id: str) -> E | None:
    """The entity as another thread reads it: committed data only."""
    found: list[E | None] = []

    def read() -> None:
        try:
            found.append(store.get(cls, id))
        except NotFoundError:
            found.append(None)

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "another thread could not read the store"
    return found[0]


def history_elsewhere(store: statekeep.Store, entity: Entity) -> list[Any]:
    found: list[list[Any]] = []
    reader = threading.Thread(target=lambda: found.append(store.history(entity)))
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "another thread could not read the history"
    return found[0]


def active_session(id: str, **fields: Any) -> TrackedSession:
    return TrackedSession(id=id, state=TrackedFlow.active, devices=1, **fields)


def history_of(store: statekeep.Store, entity: Entity) -> list[tuple[str, int, str, str, str]]:
    return [
        (record.entity_id, record.entity_version, record.event, record.source, record.target)
        for record in store.history(entity)
    ]


# -- after the commit, never before, never for a rollback ----------------------------------------


def test_transitioned_is_delivered_after_the_commit(store: statekeep.Store) -> None:
    seen_stored: list[tuple[str, str | None]] = []

    def check(event: statekeep.Event) -> None:
        assert isinstance(event, statekeep.Transitioned)
        stored = read_elsewhere(store, RecordingSession, event.entity_id)
        seen_stored.append((event.target, None if stored is None else str(stored.state)))

    recorder = Recorder()
    store.on(RecordingSession.Transitioned, recorder)
    store.on(RecordingSession.Transitioned, check)
    session = store.save(RecordingSession(id="s", devices=1))
    with store.transaction():
        store.send(session, "start")
        store.send(session, "validated")
        assert len(recorder) == 0  # nothing while the block is open
        assert session.version == 3
    assert recorder.moves() == [
        ("s", "start", "idle", "validating", 2),
        ("s", "validated", "validating", "checking_permissions", 3),
    ]
    # when a handler runs, what the event says is there for everyone
    assert seen_stored == [
        ("validating", "checking_permissions"),
        ("checking_permissions", "checking_permissions"),
    ]
    store.send(session, "permitted")
    assert recorder.moves()[-1] == ("s", "permitted", "checking_permissions", "starting", 4)
    assert seen_stored[-1] == ("starting", "starting")


def test_a_rolled_back_transaction_stores_no_move_and_emits_nothing(
    store: statekeep.Store,
) -> None:
    first = store.save(active_session("a"))
    second = store.save(active_session("b"))
    recorder = Recorder()
    store.on(statekeep.Event, recorder)
    with pytest.raises(BoomError), store.transaction():
        store.send(first, "pause")
        store.send(second, "end")
        with store.transaction():  # a savepoint inside: rolled back with the rest
            store.send(first, "paused_ok")
        raise BoomError
    assert len(recorder) == 0
    for id in ("a", "b"):
        stored = store.get(TrackedSession, id)
        assert (stored.state, stored.version) == (TrackedFlow.active, 1)
        assert store.history(TrackedSession, id) == []
    # the stored entity moves on as if nothing had happened
    fresh = store.get(TrackedSession, "a")
    store.send(fresh, "pause")
    assert recorder.moves() == [("a", "pause", "active", "pausing", 2)]
    assert history_of(store, fresh) == [("a", 2, "pause", "active", "pausing")]


def test_an_exception_in_a_handler_block_after_a_send_rolls_the_send_back(
    store: statekeep.Store,
) -> None:
    session = store.save(RecordingSession(id="s", state=SessionFlow.active))
    recorder = Recorder()
    store.on(RecordingSession.Transitioned, recorder)
    with pytest.raises(BoomError), store.transaction():
        store.send(session, "pause")
        assert store.get(RecordingSession, "s").state is SessionFlow.pausing  # own writes
        raise BoomError
    assert store.get(RecordingSession, "s").state is SessionFlow.active
    assert len(recorder) == 0


def test_moves_saved_in_a_rolled_back_block_go_out_with_the_next_commit(
    store: statekeep.Store,
) -> None:
    recorder = Recorder()
    store.on(RecordingSession.Transitioned, recorder)
    session = store.save(RecordingSession(id="s"))
    session.send("start").send("validated")  # in memory: announced with the next save
    with pytest.raises(BoomError), store.transaction():
        store.save(session)
        raise BoomError
    assert len(recorder) == 0 and session.version == 1
    assert store.get(RecordingSession, "s").state is SessionFlow.idle
    store.save(session)
    assert recorder.moves() == [
        ("s", "start", "idle", "validating", 2),
        ("s", "validated", "validating", "checking_permissions", 2),
    ]


# -- what the events carry -----------------------------------------------------------------------


def test_events_carry_the_move_and_the_version_of_the_saved_entity(
    store: statekeep.Store,
) -> None:
    everything, sessions, transitions, tracked = Recorder(), Recorder(), Recorder(), Recorder()
    store.on(statekeep.Event, everything)
    store.on(RecordingSession.Transitioned, sessions)
    store.on(statekeep.Transitioned, transitions)
    store.on(TrackedSession.Transitioned, tracked)
    started = datetime.now(UTC)
    session = RecordingSession(id="s", devices=1)
    for event in ["start", "validated", "permitted"]:
        session.send(event)
    store.save(session)  # three moves, one save: each event has that save's version
    assert (
        everything.names()
        == ["mc_recording_session.created"] + ["mc_recording_session.transitioned"] * 3
    )
    assert sessions.moves() == [
        ("s", "start", "idle", "validating", 1),
        ("s", "validated", "validating", "checking_permissions", 1),
        ("s", "permitted", "checking_permissions", "starting", 1),
    ]
    store.send(session, "started")
    assert sessions.moves()[-1] == ("s", "started", "starting", "active", 2)
    assert recorded_count(session) == 0
    for delivered in sessions.events:
        assert isinstance(delivered, RecordingSession.Transitioned)
        assert isinstance(delivered, statekeep.Transitioned)
        assert (delivered.collection, delivered.machine, delivered.field) == (
            "mc_recording_session",
            "SessionFlow",
            "state",
        )
        assert delivered.name == "mc_recording_session.transitioned"
        assert delivered.at.tzinfo is not None
        assert started - timedelta(seconds=1) <= delivered.at <= datetime.now(UTC)
    assert len({delivered.event_id for delivered in sessions.events}) == 4
    assert transitions.moves() == sessions.moves()
    # a class's Transitioned is that class's only
    store.send(active_session("t"), "pause")
    assert tracked.moves() == [("t", "pause", "active", "pausing", 1)]
    assert len(sessions.moves()) == 4 and len(transitions.moves()) == 5


def test_a_durable_subscription_receives_the_transitions(open_store: OpenStore) -> None:
    store = open_store(outbox=True)
    if not callable(getattr(store.backend, "read_events", None)):
        pytest.skip("this backend has no outbox")
    moves, everything = Recorder(), Recorder()
    only_moves = store.subscribe("moves", moves, events=[RecordingSession.Transitioned])
    all_events = store.subscribe("all", everything)
    session = store.save(RecordingSession(id="s", devices=1))
    for event in ["start", "validated", "permitted"]:
        store.send(session, event)
    session.send("started").send("pause")
    store.save(session)
    store.send(active_session("other"), "end")  # another class: not in the filtered one
    assert only_moves.wait_idle(20) and all_events.wait_idle(20)
    assert moves.moves() == [
        ("s", "start", "idle", "validating", 2),
        ("s", "validated", "validating", "checking_permissions", 3),
        ("s", "permitted", "checking_permissions", "starting", 4),
        ("s", "started", "starting", "active", 5),
        ("s", "pause", "active", "pausing", 5),
    ]
    for delivered in moves.events:
        assert isinstance(delivered, statekeep.Transitioned)
        assert (delivered.machine, delivered.field, delivered.collection) == (
            "SessionFlow",
            "state",
            "mc_recording_session",
        )
    assert everything.names() == [
        "mc_recording_session.created",
        *["mc_recording_session.updated", "mc_recording_session.transitioned"] * 3,
        "mc_recording_session.updated",
        "mc_recording_session.transitioned",
        "mc_recording_session.transitioned",
        "mc_tracked_session.created",
        "mc_tracked_session.transitioned",
        "mc_tracked_session_transitions.created",  # its history record, an entity too
    ]
    only_moves.stop()
    all_events.stop()


def test_transitions_from_the_outbox_and_write_behind_are_their_classes(
    open_store: OpenStore,
) -> None:
    store = open_store(outbox=True)
    if not callable(getattr(store.backend, "read_events", None)):
        pytest.skip("this backend has no outbox")
    durable, queued = Recorder(), Recorder()
    subscription = store.subscribe("moves", durable, events=[RecordingSession.Transitioned])
    store.send(RecordingSession(id="s"), "start")
    assert subscription.wait_idle(20)
    subscription.stop()
    store.on(RecordingSession.Transitioned, queued)
    assert store.enqueue(RecordingSession(id="q").send("start")).wait_stored(10)
    assert store.flush(10)
    assert [type(e) for e in durable.events] == [RecordingSession.Transitioned]
    assert [type(e) for e in queued.events] == [RecordingSession.Transitioned]


def test_enqueue_of_a_moved_entity_delivers_its_transitions(store: statekeep.Store) -> None:
    recorder = Recorder()
    store.on(RecordingSession.Transitioned, recorder)
    session = RecordingSession(id="q", devices=1)
    receipts = []
    for event in ["start", "validated", "permitted"]:  # enqueued again after each move
        session.send(event)
        receipts.append(store.enqueue(session))
    for receipt in receipts:
        assert receipt.wait_stored(10)
    assert store.flush(10)
    stored = store.get(RecordingSession, "q")
    assert stored.state is SessionFlow.starting
    moves = recorder.moves()
    assert [(id, event, source, target) for id, event, source, target, _ in moves] == [
        ("q", "start", "idle", "validating"),
        ("q", "validated", "validating", "checking_permissions"),
        ("q", "permitted", "checking_permissions", "starting"),
    ]
    # each is stamped with the version of the write that stored it (coalesced or not)
    assert all(1 <= version <= stored.version for *_, version in moves)
    assert [version for *_, version in moves] == sorted(version for *_, version in moves)
    # and the next enqueue of the stored entity goes on from there
    stored.send("started")
    assert store.enqueue(stored).wait_stored(10)
    assert store.flush(10)
    assert recorder.moves()[-1][:4] == ("q", "started", "starting", "active")
    assert store.get(RecordingSession, "q").state is SessionFlow.active


# -- history ---------------------------------------------------------------------------------------


def test_store_send_writes_a_history_record_per_move(store: statekeep.Store) -> None:
    assert TrackedFlow.history is True
    session = store.save(TrackedSession(id="h", devices=1))
    path = ["start", "validated", "permitted", "started", "pause", "paused_ok", "end"]
    before = datetime.now(UTC) - timedelta(seconds=1)
    for event in path:
        store.send(session, event)
    records = store.history(session)
    expected, state = [], "idle"
    for version, event in enumerate(path, start=2):
        target = TABLE[state, event]
        expected.append(("h", version, event, state, target))
        state = target
    assert history_of(store, session) == expected
    assert store.history(TrackedSession, "h") == records
    for record in records:
        assert isinstance(record, TransitionRecord)
        assert (record.machine, record.field) == ("TrackedFlow", "state")
        assert before <= record.at <= datetime.now(UTC)
    assert [r.at for r in records] == sorted(r.at for r in records)
    assert type(records[0]).__statekeep__.spec.name == "mc_tracked_session_transitions"
    # a refused send writes none
    with pytest.raises(TransitionError):
        store.send(session, "start")
    assert len(store.history(session)) == len(path)
    assert store.history(TrackedSession, "nobody") == []


def test_history_is_written_in_the_transaction_of_the_move(store: statekeep.Store) -> None:
    seen: list[list[Any]] = []
    session = store.save(active_session("h"))
    store.on(TrackedSession.Transitioned, lambda e: seen.append(history_elsewhere(store, session)))
    store.send(session, "pause")
    # when the event is delivered, the history record is there for everyone
    assert [[(r.event, r.entity_version) for r in records] for records in seen] == [[("pause", 2)]]
    with pytest.raises(BoomError), store.transaction():
        store.send(session, "paused_ok")
        raise BoomError
    assert history_of(store, session) == [("h", 2, "pause", "active", "pausing")]


def test_history_needs_a_machine_that_keeps_it(store: statekeep.Store) -> None:
    session = store.save(RecordingSession(id="s"))
    store.send(session, "start")
    with pytest.raises(ConfigurationError, match="history"):
        store.history(session)
    with pytest.raises(ConfigurationError):
        store.history(RecordingSession, "s")
    with pytest.raises(ConfigurationError):
        store.history(TrackedSession)  # a class needs an id


# -- a concurrent writer: ConflictError, or retry=True -------------------------------------------


def test_a_stale_send_raises_conflict_and_leaves_the_entity_as_it_was(
    store: statekeep.Store,
) -> None:
    store.save(active_session("c"))
    stale = store.get(TrackedSession, "c")
    other = store.get(TrackedSession, "c")
    store.send(other, "pause")
    recorder = Recorder()
    store.on(statekeep.Event, recorder)
    before = snapshot(stale)
    with pytest.raises(ConflictError):
        store.send(stale, "end")
    assert snapshot(stale) == before  # its state, version, and nothing recorded for later
    assert stale.state is TrackedFlow.active and stale.version == 1
    stored = store.get(TrackedSession, "c")
    assert (stored.state, stored.version) == (TrackedFlow.pausing, 2)
    assert history_of(store, stored) == [("c", 2, "pause", "active", "pausing")]
    assert len(recorder) == 0


def test_retry_reads_the_entity_again_and_sends_again(store: statekeep.Store) -> None:
    store.save(active_session("c"))
    stale = store.get(TrackedSession, "c")
    other = store.get(TrackedSession, "c")
    other.team = "b"  # a change that leaves the event allowed
    store.save(other)
    recorder = Recorder()
    store.on(TrackedSession.Transitioned, recorder)
    returned = store.send(stale, "pause", retry=True)
    assert returned is stale
    assert (stale.state, stale.version, stale.team) == (TrackedFlow.pausing, 3, "b")
    stored = store.get(TrackedSession, "c")
    assert stored.model_dump() == stale.model_dump()
    assert recorder.moves() == [("c", "pause", "active", "pausing", 3)]
    assert history_of(store, stored) == [("c", 3, "pause", "active", "pausing")]


def test_retry_raises_transition_error_when_the_event_is_no_longer_allowed(
    store: statekeep.Store,
) -> None:
    store.save(active_session("c"))
    stale = store.get(TrackedSession, "c")
    other = store.get(TrackedSession, "c")
    store.send(other, "pause")
    before_stale = stale.model_dump()
    recorder = Recorder()
    store.on(statekeep.Event, recorder)
    with pytest.raises(TransitionError) as caught:
        store.send(stale, "pause", retry=True)  # from pausing, pause is not declared
    assert (caught.value.state, caught.value.event, caught.value.entity_id) == (
        "pausing",
        "pause",
        "c",
    )
    stored = store.get(TrackedSession, "c")
    assert (stored.state, stored.version) == (TrackedFlow.pausing, 2)
    # the caller's entity is what it was, or what is stored: never a state nobody stored
    assert stale.model_dump() in (before_stale, stored.model_dump())
    assert recorded_count(stale) == 0
    assert len(recorder) == 0
    assert len(store.history(stored)) == 1


def test_retry_raises_transition_error_when_a_guard_no_longer_holds(
    store: statekeep.Store,
) -> None:
    store.save(TrackedSession(id="g", state=TrackedFlow.checking_permissions, devices=1))
    stale = store.get(TrackedSession, "g")
    other = store.get(TrackedSession, "g")
    other.devices = 0
    store.save(other)
    with pytest.raises(TransitionError) as caught:
        store.send(stale, "permitted", retry=True)
    assert "has_devices" in caught.value.reason
    stored = store.get(TrackedSession, "g")
    assert (stored.state, stored.version, stored.devices) == (
        TrackedFlow.checking_permissions,
        2,
        0,
    )
    assert store.history(stored) == []


def test_retry_takes_a_flag(store: statekeep.Store) -> None:
    session = store.save(active_session("f"))
    with pytest.raises(ConfigurationError, match="retry"):
        store.send(session, "pause", retry="yes")  # type: ignore[arg-type]
    assert store.get(TrackedSession, "f").state is TrackedFlow.active


def test_async_store_send_retries_too(run_async: RunAsync) -> None:
    async def body(store: statekeep.aio.AsyncStore) -> None:
        await store.save(active_session("c"))
        stale = await store.get(TrackedSession, "c")
        other = await store.get(TrackedSession, "c")
        other.team = "b"
        await store.save(other)
        before = snapshot(stale)
        with pytest.raises(ConflictError):
            await store.send(stale, "pause")
        assert snapshot(stale) == before
        await store.send(stale, "pause", retry=True)
        assert (stale.state, stale.version, stale.team) == (TrackedFlow.pausing, 3, "b")
        records = await store.history(stale)
        assert [(r.event, r.entity_version) for r in records] == [("pause", 3)]
        mover = await store.get(TrackedSession, "c")
        await store.send(mover, "paused_ok")
        with pytest.raises(TransitionError):
            await store.send(stale, "paused_ok", retry=True)  # already there
        report = await store.transition_many(TrackedSession, "end", chunk_size=1)
        assert (report.moved, report.skipped) == (1, {})

    run_async(body)


# -- transition_many -------------------------------------------------------------------------------

MIXED = {  # id -> state
    "m00": "idle",
    "m01": "active",
    "m02": "paused",
    "m03": "pausing",
    "m04": "active",
    "m05": "completed",
    "m06": "paused",
    "m07": "ending",
    "m08": "active",
    "m09": "checking_permissions",
    "m10": "active",
}


def _save_mixed(store: statekeep.Store, **fields: Any) -> None:
    store.save_many(
        TrackedSession(id=id, state=TrackedFlow(state), devices=1, **fields)
        for id, state in MIXED.items()
    )


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 500])
def test_transition_many_moves_the_allowed_and_reports_the_rest(
    store: statekeep.Store, chunk_size: int
) -> None:
    _save_mixed(store)
    recorder = Recorder()
    store.on(TrackedSession.Transitioned, recorder)
    report = store.transition_many(TrackedSession, "end", chunk_size=chunk_size)
    movable = {id for id, state in MIXED.items() if (state, "end") in TABLE}
    assert report.event == "end"
    assert report.moved == len(movable) == 6
    assert set(report.skipped) == set(MIXED) - movable
    assert report.matched == len(MIXED)
    for id, reason in report.skipped.items():
        assert MIXED[id] in reason, (id, reason)
    assert report.retried_chunks == 0
    assert "6 moved" in str(report) and "5 skipped" in str(report)
    for session in store.find(TrackedSession):
        if session.id in movable:
            assert (session.state, session.version) == (TrackedFlow.ending, 2)
            assert history_of(store, session) == [
                (session.id, 2, "end", MIXED[session.id], "ending")
            ]
        else:
            assert (session.state, session.version) == (TrackedFlow(MIXED[session.id]), 1)
            assert store.history(session) == []
    assert sorted(recorder.moves()) == sorted((id, "end", MIXED[id], "ending", 2) for id in movable)


def test_transition_many_with_conditions(store: statekeep.Store) -> None:
    store.save_many(
        TrackedSession(
            id=f"w{n:02d}",
            state=TrackedFlow.active if n % 3 else TrackedFlow.idle,
            team="a" if n % 2 else "b",
            devices=n,
        )
        for n in range(20)
    )
    report = store.transition_many(
        TrackedSession, "pause", TrackedSession.f.devices >= 5, chunk_size=3, team="a"
    )
    matching = {f"w{n:02d}" for n in range(20) if n >= 5 and n % 2}
    moved = {id for id in matching if int(id[1:]) % 3}
    assert report.moved == len(moved)
    assert set(report.skipped) == matching - moved
    assert all("idle" in reason for reason in report.skipped.values())
    for session in store.find(TrackedSession):
        expected = (
            TrackedFlow.pausing
            if session.id in moved
            else TrackedFlow.active
            if int(session.id[1:]) % 3
            else TrackedFlow.idle
        )
        assert session.state is expected, session.id
    # by state: those that move leave the condition as they go, chunk by chunk
    again = store.transition_many(TrackedSession, "paused_ok", chunk_size=2, state="pausing")
    assert (again.moved, again.skipped) == (len(moved), {})
    assert store.count(TrackedSession, state=TrackedFlow.paused) == len(moved)
    none = store.transition_many(TrackedSession, "end", team="nobody")
    assert (none.moved, none.skipped, none.matched) == (0, {}, 0)


def test_transition_many_reports_guards_that_held_back(store: statekeep.Store) -> None:
    store.save_many(
        TrackedSession(id=f"p{n}", state=TrackedFlow.checking_permissions, devices=n % 2)
        for n in range(6)
    )
    report = store.transition_many(TrackedSession, "permitted", chunk_size=4)
    assert report.moved == 3
    assert set(report.skipped) == {"p0", "p2", "p4"}
    assert all("has_devices" in reason for reason in report.skipped.values())
    assert store.count_by(TrackedSession, "state") == {
        TrackedFlow.starting: 3,
        TrackedFlow.checking_permissions: 3,
    }


class Sized(Machine):
    small = State(initial=True)
    large = State(final=True)
    grow = small.to(large, cond="fits")


class Parcel(Entity, collection="mc_parcel"):
    state: Sized = Sized.small
    weight: int = 0

    def fits(self, limit: int) -> bool:
        return self.weight <= limit


def test_transition_many_passes_data_to_guards(store: statekeep.Store) -> None:
    store.save_many(Parcel(id=f"w{n}", weight=n) for n in range(6))
    report = store.transition_many(Parcel, "grow", chunk_size=2, data={"limit": 2})
    assert report.moved == 3 and set(report.skipped) == {"w3", "w4", "w5"}
    with pytest.raises(ConfigurationError):
        store.transition_many(Parcel, "grow", data=[1])  # type: ignore[arg-type]


def test_transition_many_refuses_bad_input_and_moves_nothing(store: statekeep.Store) -> None:
    _save_mixed(store)
    with pytest.raises(TransitionError) as caught:
        store.transition_many(TrackedSession, "no_such_event")
    assert caught.value.event == "no_such_event" and "no such event" in caught.value.reason
    with pytest.raises(ConfigurationError):
        store.transition_many(TrackedSession, "end", chunk_size=0)
    with pytest.raises(ConfigurationError):
        store.transition_many(TrackedSession, "end", field="nope")
    with pytest.raises(ConfigurationError):
        store.transition_many(Parcel.__statekeep__, "grow")  # type: ignore[arg-type]
    assert all(session.version == 1 for session in store.find(TrackedSession))


# a write made while transition_many reads a chunk (when it loads the entity
# of that id, before the chunk's transaction): a concurrent writer
_writer: dict[str, Any] = {}


class Contested(Machine):
    open_ = State(initial=True)
    closed = State(final=True)
    close = open_.to(closed)


class Ticket(Entity, collection="mc_ticket"):
    state: Contested = Contested.open_
    team: str = "a"
    note: str = ""

    def model_post_init(self, context: Any, /) -> None:  # made or loaded, not assigned to
        action = _writer.pop(self.id, None)
        if action is not None:
            action()


@pytest.fixture
def meddler() -> Iterator[dict[str, Any]]:
    _writer.clear()
    yield _writer
    _writer.clear()


def test_transition_many_reads_a_chunk_again_after_a_concurrent_write(
    store: statekeep.Store, meddler: dict[str, Any]
) -> None:
    store.save_many(Ticket(id=f"t{n}") for n in range(5))

    def note_t2() -> None:
        other = store.get(Ticket, "t2")
        other.note = "written meanwhile"
        store.save(other)

    meddler["t0"] = note_t2
    report = store.transition_many(Ticket, "close", chunk_size=5)
    assert (report.moved, report.skipped) == (5, {})
    assert report.retried_chunks == 1
    t2 = store.get(Ticket, "t2")
    assert (t2.state, t2.note, t2.version) == (Contested.closed, "written meanwhile", 3)
    assert store.count(Ticket, state=Contested.closed) == 5


def test_transition_many_moves_a_chunk_that_keeps_conflicting_one_entity_at_a_time(
    store: statekeep.Store, meddler: dict[str, Any]
) -> None:
    """Another writer changes t2 every time the chunk is tried: after three
    tries the chunk's entities go one at a time, and all of them move."""
    store.save_many(Ticket(id=f"t{n}") for n in range(5))
    tries = []

    def note_t2() -> None:
        tries.append(1)
        other = store.get(Ticket, "t2")
        other.note = f"written meanwhile {len(tries)}"
        store.save(other)
        if len(tries) < 3:  # each try of the chunk meets another write
            meddler["t0"] = note_t2

    meddler["t0"] = note_t2
    report = store.transition_many(Ticket, "close", chunk_size=5)
    assert (report.moved, report.skipped, report.retried_chunks) == (5, {}, 3)
    t2 = store.get(Ticket, "t2")
    assert (t2.state, t2.note, t2.version) == (Contested.closed, "written meanwhile 3", 5)
    assert store.count(Ticket, state=Contested.closed) == 5


def test_transition_many_skips_what_was_deleted_meanwhile(
    store: statekeep.Store, meddler: dict[str, Any]
) -> None:
    store.save_many(Ticket(id=f"t{n}") for n in range(4))
    meddler["t0"] = lambda: store.delete(Ticket, "t3")
    report = store.transition_many(Ticket, "close", chunk_size=4)
    assert report.moved == 3
    assert report.skipped == {"t3": "changed or deleted meanwhile: it no longer matches"}
    assert store.count(Ticket) == 3


def test_transition_many_does_not_move_what_no_longer_matches(
    store: statekeep.Store, meddler: dict[str, Any]
) -> None:
    store.save_many(Ticket(id=f"t{n}") for n in range(4))

    def move_t2_to_team_b() -> None:
        other = store.get(Ticket, "t2")
        other.team = "b"
        store.save(other)

    meddler["t0"] = move_t2_to_team_b
    report = store.transition_many(Ticket, "close", chunk_size=4, team="a")
    t2 = store.get(Ticket, "t2")
    assert (t2.team, t2.state) == ("b", Contested.open_)  # not in team a when it was moved
    assert report.moved == 3
