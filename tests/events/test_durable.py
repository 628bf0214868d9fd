"""Durable subscriptions (outbox=True): every event, in commit order, resuming
from a checkpoint; a failing handler gets the same event again, and nothing
after it meanwhile; `events=` filters."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable

import pytest

import statekeep
from statekeep.events._checkpoints import CHECKPOINTS

from ._support import Recorder, has_outbox, names, outbox, outbox_events, wait_for
from .models import Note, Session, SessionCompleted, Todo

OpenStore = Callable[..., statekeep.Store]


def thread_deaths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Collects the errors that end threads during the test (else pytest
    reports them as warnings, errors under -W error, at teardown)."""
    died: list[str] = []
    monkeypatch.setattr(
        threading, "excepthook", lambda args: died.append(f"{args.thread}: {args.exc_value!r}")
    )
    return died


def idle(subscription: statekeep.DurableSubscription) -> None:
    assert subscription.wait_idle(20), f"{subscription.name} did not catch up"


def checkpoint(store: statekeep.Store, name: str) -> int | None:
    body = store.backend.get(CHECKPOINTS.name, name)
    return None if body is None else int(json.loads(body)["position"])


def write_todos(store: statekeep.Store, ids: range, prefix: str = "t") -> None:
    for n in ids:
        store.save(Todo(id=f"{prefix}{n:03}", title=str(n)))


def test_every_event_in_commit_order(outbox_store: statekeep.Store) -> None:
    """Four writer threads race (single saves, transactions, save_many and
    updates of shared entities); the subscription gets the outbox's order,
    which keeps transactions whole and each entity's versions in order."""
    store = outbox_store
    early = Recorder()
    subscription = store.subscribe("early", early)
    store.save_many([Todo(id=f"shared{n}", title="x") for n in range(4)])
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for n in range(40):
                if n % 4 == 0:
                    with store.transaction():
                        for k in range(3):
                            store.save(Note(id=f"w{w}-{n}-{k}", text="x"))
                elif n % 4 == 1:
                    store.save_many([Todo(id=f"w{w}-{n}-{k}", title="x") for k in range(5)])
                else:
                    store.save(Todo(id=f"w{w}-{n}", title="x"))
                while True:  # shared entities: optimistic retries
                    shared = store.get(Todo, f"shared{n % 4}")
                    shared.notes += f"{w}"
                    try:
                        store.save(shared)
                        break
                    except statekeep.ConflictError:
                        continue
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    idle(subscription)
    late = Recorder()  # starts after the writes: reads everything from the start
    idle(store.subscribe("late", late))

    committed = outbox_events(store)
    assert len(committed) == 4 + 4 * (10 * 3 + 10 * 5 + 20 + 40)
    expected = [e.event_id for e in committed]
    assert [e.event_id for e in early.events] == expected
    assert [e.event_id for e in late.events] == expected

    versions: dict[str, list[int]] = defaultdict(list)
    for event in early.events:
        versions[event.entity_id].append(event.version)
    assert versions["shared0"] == list(range(1, 42))
    assert all(v == list(range(1, len(v) + 1)) for v in versions.values())
    for w in range(4):  # each transaction's events are contiguous
        ids = [e.entity_id for e in early.events]
        for n in range(0, 40, 4):
            start = ids.index(f"w{w}-{n}-0")
            assert ids[start : start + 3] == [f"w{w}-{n}-{k}" for k in range(3)]


def test_events_are_decoded_as_their_classes(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    recorder = Recorder()
    subscription = store.subscribe("typed", recorder)
    todo = store.save(Todo(id="a", title="x", priority=2))
    session = Session(id="s")
    session.record(SessionCompleted(minutes=12))
    store.save(session)
    store.delete(todo)
    idle(subscription)

    created, session_created, completed, deleted = recorder.events
    assert type(created) is Todo.Created and created.entity == todo.model_copy(
        update={"version": 1}
    )
    assert type(session_created) is Session.Created
    assert type(completed) is SessionCompleted and completed.minutes == 12
    assert (completed.collection, completed.entity_id, completed.version) == ("session", "s", 1)
    assert type(deleted) is Todo.Deleted and deleted.version == 1
    assert subscription.stats.delivered == 4 and subscription.stats.failures == 0


def test_a_durable_handler_sees_the_committed_data(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    stored: list[int] = []
    subscription = store.subscribe(
        "reader", lambda e: stored.append(store.get(Todo, e.entity_id).version)
    )
    with store.transaction():
        write_todos(store, range(5))
    idle(subscription)
    assert stored == [1] * 5


def test_resume_after_stop_without_redelivery_or_loss(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    first = Recorder()
    subscription = store.subscribe("projector", first)
    write_todos(store, range(10))
    idle(subscription)
    subscription.stop()
    assert not subscription.running
    assert checkpoint(store, "projector") == outbox(store)[-1][0]

    write_todos(store, range(10, 20))  # while nobody listens
    second = Recorder()
    subscription = store.subscribe("projector", second)
    write_todos(store, range(20, 25))
    idle(subscription)
    assert [e.entity_id for e in first.events] == [f"t{n:03}" for n in range(10)]
    assert [e.entity_id for e in second.events] == [f"t{n:03}" for n in range(10, 25)]


def test_stop_in_mid_stream_resumes_exactly_where_it_stopped(
    outbox_store: statekeep.Store,
) -> None:
    store = outbox_store
    store.save_many([Todo(id=f"t{n:03}", title="x") for n in range(300)])
    handled: list[str] = []
    gate = threading.Event()

    def slow(event: statekeep.Event) -> None:
        handled.append(event.entity_id)
        if len(handled) == 100:
            gate.set()
        time.sleep(0.001)  # slow enough to be stopped in mid-stream

    subscription = store.subscribe("projector", slow)
    assert gate.wait(10)
    subscription.stop()
    assert 100 <= len(handled) < 300
    assert subscription.position == checkpoint(store, "projector")

    rest = Recorder()
    idle(store.subscribe("projector", rest))
    together = handled + [e.entity_id for e in rest.events]
    assert together == [f"t{n:03}" for n in range(300)]  # each once, in order


@pytest.mark.requires("persistent")
def test_resume_after_close_and_reopen(
    open_store: OpenStore, outbox_store: statekeep.Store
) -> None:
    store = outbox_store
    first = Recorder()
    idle(store.subscribe("projector", first))
    write_todos(store, range(10))
    idle(store._durable._running["projector"])
    store.close()

    writer = open_store(outbox=True)
    write_todos(writer, range(10, 20))
    writer.close()

    reopened = open_store(outbox=True)
    second = Recorder()
    subscription = reopened.subscribe("projector", second)
    write_todos(reopened, range(20, 25))
    idle(subscription)
    assert [e.entity_id for e in first.events] == [f"t{n:03}" for n in range(10)]
    assert [e.entity_id for e in second.events] == [f"t{n:03}" for n in range(10, 25)]


def test_a_failing_handler_gets_the_same_event_again_and_nothing_after_it(
    outbox_store: statekeep.Store, caplog: pytest.LogCaptureFixture
) -> None:
    store = outbox_store
    calls: list[tuple[str, str]] = []  # (entity id, event id) of every call
    failures_left = {"t002": 2}

    def flaky(event: statekeep.Event) -> None:
        calls.append((event.entity_id, event.event_id))
        if failures_left.get(event.entity_id, 0) > 0:
            failures_left[event.entity_id] -= 1
            raise ConnectionError("the projection's database is away")

    with caplog.at_level(logging.ERROR, logger="statekeep.events"):
        subscription = store.subscribe("projector", flaky)
        write_todos(store, range(5))
        wait_for(lambda: len(calls) == 7, what="7 calls")
        idle(subscription)

    assert [id for id, _ in calls] == ["t000", "t001", "t002", "t002", "t002", "t003", "t004"]
    assert calls[2][1] == calls[3][1] == calls[4][1]  # the same event, by its id
    assert len({event_id for _, event_id in calls}) == 5
    assert subscription.stats.failures == 2 and subscription.stats.delivered == 5
    assert subscription.stats.last_error is not None
    assert "ConnectionError" in subscription.stats.last_error
    failed = [r for r in caplog.records if r.name == "statekeep.events"]
    assert len(failed) == 2 and all("todo.created" in r.getMessage() for r in failed)


def test_stop_while_a_handler_keeps_failing_resumes_at_that_event(
    outbox_store: statekeep.Store,
) -> None:
    store = outbox_store
    write_todos(store, range(3))
    attempts: list[str] = []

    def broken(event: statekeep.Event) -> None:
        attempts.append(event.entity_id)
        if event.entity_id == "t001":
            raise RuntimeError("broken handler")

    subscription = store.subscribe("projector", broken)
    wait_for(lambda: attempts.count("t001") >= 2, what="a retry")
    subscription.stop()
    assert not subscription.running
    fixed = Recorder()
    idle(store.subscribe("projector", fixed))
    assert [e.entity_id for e in fixed.events] == ["t001", "t002"]


def test_events_filter(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    created = Recorder()
    created_sub = store.subscribe("created", created, events=[Todo.Created])
    single = Recorder()
    # a single target, not in a list: accepted, though the signature says Sequence
    single_sub = store.subscribe("single", single, events=Todo.Created)  # type: ignore[arg-type]
    mixed = Recorder()
    mixed_sub = store.subscribe("mixed", mixed, events=["*.deleted", SessionCompleted, Note])

    todo = store.save(Todo(id="a", title="x"))
    store.save(todo)
    note = store.save(Note(id="n", text="x"))
    session = Session(id="s")
    session.record(SessionCompleted(minutes=1))
    store.save(session)
    store.delete(todo)
    store.save(Todo(id="b", title="x"))
    store.delete(note)
    for subscription in (created_sub, single_sub, mixed_sub):
        idle(subscription)

    assert created.seen == single.seen == [("todo.created", "a", 1), ("todo.created", "b", 1)]
    assert created_sub.stats.delivered == 2 and created_sub.stats.skipped == 6
    assert mixed.seen == [
        ("note.created", "n", 1),
        ("session.session_completed", "s", 1),
        ("todo.deleted", "a", 2),
        ("note.deleted", "n", 1),
    ]
    # the position moves past the skipped events too, so they are not read again
    assert created_sub.position == outbox(store)[-1][0]


def test_subscriptions_keep_their_own_checkpoints(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    fast, slow = Recorder(), Recorder()
    fast_sub = store.subscribe("fast", fast)
    write_todos(store, range(5))
    idle(fast_sub)
    slow_sub = store.subscribe("slow", slow)
    idle(slow_sub)
    fast_sub.stop()
    write_todos(store, range(5, 8))
    idle(slow_sub)
    assert len(slow) == 8 and len(fast) == 5
    assert checkpoint(store, "fast") == outbox(store)[4][0]
    slow_sub.stop()
    assert checkpoint(store, "slow") == outbox(store)[-1][0]


def test_prune_keeps_what_a_subscription_has_not_passed(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    write_todos(store, range(3))
    assert store.prune_events() == 0  # no subscription yet: the first starts at the beginning
    ahead, behind = Recorder(), Recorder()
    ahead_sub = store.subscribe("ahead", ahead)
    behind_sub = store.subscribe("behind", behind)
    write_todos(store, range(3, 5))
    idle(ahead_sub)
    idle(behind_sub)
    behind_sub.stop()
    write_todos(store, range(5, 10))
    idle(ahead_sub)

    assert store.prune_events(keep=2) == 3  # what both have passed, but the last 2 of it
    assert store.prune_events() == 2
    assert store.prune_events() == 0
    assert len(outbox(store)) == 5
    rest = Recorder()
    idle(store.subscribe("behind", rest))
    assert [e.entity_id for e in rest.events] == [f"t{n:03}" for n in range(5, 10)]


def test_subscriptions_prune_as_they_go(open_store: OpenStore, backend: object) -> None:
    store = open_store(outbox=True, outbox_retention=3)
    if not has_outbox(store):
        pytest.skip("no outbox on this backend yet")
    recorder = Recorder()
    subscription = store.subscribe("projector", recorder)
    subscription._prune_every = 0  # not every few seconds: at every checkpoint
    write_todos(store, range(10))
    idle(subscription)
    assert len(recorder) == 10
    wait_for(lambda: len(outbox(store)) == 3, what="the outbox pruned to 3 events")
    assert [e.entity_id for e in outbox_events(store)] == ["t007", "t008", "t009"]


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_bad_retention(store_url: str, outbox_store: statekeep.Store, bad: object) -> None:
    with pytest.raises(statekeep.ConfigurationError):
        statekeep.open(store_url, outbox=True, outbox_retention=bad)
    with pytest.raises(statekeep.ConfigurationError):
        outbox_store.prune_events(keep=bad)  # type: ignore[arg-type]


def test_an_async_handler_subscribed_in_a_loop_runs_on_it_in_order(
    outbox_store: statekeep.Store,
) -> None:
    store = outbox_store

    async def main() -> None:
        loop = asyncio.get_running_loop()
        got: list[tuple[str, bool]] = []

        async def handler(event: statekeep.Event) -> None:
            await asyncio.sleep(0.001)
            got.append((event.entity_id, asyncio.get_running_loop() is loop))

        subscription = store.subscribe("async", handler)
        await asyncio.to_thread(write_todos, store, range(5))
        assert await asyncio.to_thread(subscription.wait_idle, 20)
        assert got == [(f"t{n:03}", True) for n in range(5)]
        await asyncio.to_thread(subscription.stop)

    asyncio.run(main())


def test_an_async_handler_subscribed_outside_a_loop(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    got: list[str] = []

    async def handler(event: statekeep.Event) -> None:
        await asyncio.sleep(0)
        got.append(event.entity_id)

    subscription = store.subscribe("async", handler)
    write_todos(store, range(3))
    idle(subscription)
    assert got == ["t000", "t001", "t002"]


def test_close_stops_every_subscription(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    subscriptions = [store.subscribe(f"s{n}", Recorder()) for n in range(3)]
    store.close()
    assert not any(s.running for s in subscriptions)


def test_rolled_back_events_never_reach_a_durable_subscription(
    outbox_store: statekeep.Store,
) -> None:
    store = outbox_store
    recorder = Recorder()
    subscription = store.subscribe("projector", recorder)
    with pytest.raises(ZeroDivisionError), store.transaction():
        store.save(Todo(id="lost", title="x"))
        _ = 1 / 0
    with store.transaction():
        store.save(Todo(id="kept", title="x"))
        with pytest.raises(ZeroDivisionError), store.transaction():
            store.save(Todo(id="lost-too", title="x"))
            _ = 1 / 0
    idle(subscription)
    assert names(recorder.events) == [("todo.created", "kept", 1)]


def test_regression_an_undecodable_outbox_entry_kills_the_subscription(
    outbox_store: statekeep.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = outbox_store
    died = thread_deaths(monkeypatch)
    recorder = Recorder()
    subscription = store.subscribe("projector", recorder)
    backend = store.backend
    backend.begin()
    backend.append_events(["this is not an event"])  # e.g. written by a newer version
    backend.commit()
    store.save(Todo(id="after", title="x"))
    subscription.wait_idle(2)
    assert died == []
    assert subscription.running
    assert ("todo.created", "after", 1) in recorder.seen


def test_regression_a_domain_event_may_take_a_lifecycle_kind(
    outbox_store: statekeep.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = outbox_store
    died = thread_deaths(monkeypatch)
    lifecycle = Recorder()
    store.on("*.deleted", lifecycle)
    durable = Recorder()
    subscription = store.subscribe("projector", durable)
    try:

        class Deleted(statekeep.Event):  # an application's own "deleted" (e.g. soft delete)
            reason: str

    except statekeep.ConfigurationError:
        return  # refused at definition: the proposed fix
    session = Session(id="s")
    session.record(Deleted(reason="user asked"))
    store.save(session)
    subscription.wait_idle(2)
    assert lifecycle.seen == []
    assert died == []
    assert subscription.running
    assert [type(e).__name__ for e in durable.events] == ["SessionCreated", "Deleted"]


def test_regression_a_durable_async_handler_whose_loop_closed(
    outbox_store: statekeep.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = outbox_store
    got: list[str] = []
    # no log records: they would keep the failed attempts' coroutines alive (through
    # their tracebacks) past this test, to warn "never awaited" in a later one
    monkeypatch.setattr(logging.getLogger("statekeep.events"), "disabled", True)

    async def handler(event: statekeep.Event) -> None:
        got.append(event.entity_id)

    async def subscribe() -> statekeep.DurableSubscription:
        return store.subscribe("projector", handler)

    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        subscription = asyncio.run(subscribe())  # that loop is closed now
        try:
            store.save(Todo(id="a", title="x"))
            subscription.wait_idle(1)
        finally:
            subscription.stop()
            for _ in range(3):  # a warning keeps its coroutine, which holds the handler's
                gc.collect()
                messages += [str(w.message) for w in caught]
                caught.clear()
    never_awaited = [m for m in messages if "never awaited" in m]
    assert (got, subscription.stats.failures, never_awaited) == (["a"], 0, [])


def test_wait_idle_async_lets_an_async_handler_run_on_the_same_loop(
    outbox_store: statekeep.Store,
) -> None:
    store = outbox_store

    async def main() -> None:
        got: list[str] = []

        async def handler(event: statekeep.Event) -> None:
            await asyncio.sleep(0)
            got.append(event.entity_id)

        subscription = store.subscribe("async", handler)
        write_todos(store, range(5))
        assert await subscription.wait_idle_async(20)
        assert got == [f"t{n:03}" for n in range(5)]
        with pytest.raises(statekeep.ConfigurationError, match="wait_idle_async"):
            subscription.wait_idle(1)  # would block the loop the handler needs
        await asyncio.to_thread(subscription.stop)
        assert not await subscription.wait_idle_async(1)  # stopped: never idle again

    asyncio.run(main())


@pytest.mark.parametrize("ending", ["stop", "close"])
def test_stop_or_close_on_the_loop_of_a_running_async_handler_does_not_hang(
    outbox_store: statekeep.Store, open_store: OpenStore, ending: str
) -> None:
    """The handler runs on the loop that calls stop() (or close(), in a
    coroutine): waiting for it would wait for that very loop. It is cancelled,
    and its event delivered again next time."""
    store = outbox_store if ending == "stop" else open_store(outbox=True, outbox_retention=None)
    failures: list[str] = []

    async def main() -> None:
        started = asyncio.Event()

        async def handler(event: statekeep.Event) -> None:
            started.set()
            await asyncio.sleep(30)

        subscription = store.subscribe("slow", handler)
        write_todos(store, range(1))
        await asyncio.wait_for(started.wait(), 20)
        begun = time.monotonic()
        if ending == "stop":
            subscription.stop()
        else:
            store.close()
        assert time.monotonic() - begun < 2
        assert not subscription.running
        failures.append(subscription.stats.last_error or "")

    asyncio.run(main())
    assert failures == [""]  # nothing failed (no checkpoint into a closed store)
    if ending == "stop":
        again = Recorder()
        subscription = store.subscribe("slow", again)
        idle(subscription)
        subscription.stop()
        assert [event.entity_id for event in again.events] == ["t000"]


def test_wait_idle_async_times_out(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    release = threading.Event()
    subscription = store.subscribe("slow", lambda event: release.wait(20))
    write_todos(store, range(1))

    async def main() -> bool:
        return await subscription.wait_idle_async(0.2)

    try:
        assert asyncio.run(main()) is False
    finally:
        release.set()
    idle(subscription)
