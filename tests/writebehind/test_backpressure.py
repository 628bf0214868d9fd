"""The pending set is bounded: block, raise or shed_low when it is full, and
health events at 90% and back under 70%.

The queue fills deterministically: a wrapper holds the flusher in begin()
(the database hangs) while it writes a first CRITICAL "plug"; everything
enqueued after that waits in the pending set."""

from __future__ import annotations

import threading
import time

import pytest

import statekeep
from statekeep import Priority, QueueFullError

from ._support import FaultyBackend, Recorder, eventually
from .conftest import OpenFaulty, OpenStore
from .models import Doc


def plugged(store: statekeep.Store, backend: FaultyBackend) -> statekeep.Receipt:
    """Holds the flusher in the database with one write in flight."""
    backend.gate.clear()
    plug = store.enqueue(Doc(id="plug", title="plug"), Priority.CRITICAL)
    eventually(backend.waiting.is_set, what="the flusher to reach the database")
    stats = store.writebehind.stats()
    assert stats.in_flight == 1 and stats.total_pending == 0
    return plug


def fill(
    store: statekeep.Store, ids: range, priority: Priority = Priority.NORMAL
) -> dict[str, statekeep.Receipt]:
    return {f"d{n}": store.enqueue(Doc(id=f"d{n}", title=f"t{n}", n=n), priority) for n in ids}


def stored_ids(store: statekeep.Store) -> set[str]:
    return {d.id for d in store.find(Doc)}


def test_policy_raise_refuses_at_once_and_stores_nothing_of_it(
    open_store: OpenStore, open_faulty: OpenFaulty
) -> None:
    store, backend = open_faulty(max_pending=10, policy="raise", window=0.01)
    plugged(store, backend)
    receipts = fill(store, range(10))
    assert store.writebehind.stats().total_pending == 10
    with pytest.raises(QueueFullError):
        store.enqueue(Doc(id="d10", title="refused"))
    with pytest.raises(QueueFullError):
        store.enqueue(Doc(id="d11", title="refused"), Priority.CRITICAL)
    # a write of an entity already pending takes no room: it coalesces
    receipts["d3"] = store.enqueue(Doc(id="d3", title="again", n=3))
    backend.gate.set()
    assert store.flush(timeout=30)
    assert all(r.stored for r in receipts.values())
    assert stored_ids(store) == {"plug"} | {f"d{n}" for n in range(10)}
    assert store.get(Doc, "d3").title == "again"


def test_policy_block_waits_then_raises_after_block_timeout(
    open_store: OpenStore, open_faulty: OpenFaulty
) -> None:
    store, backend = open_faulty(max_pending=10, policy="block", block_timeout=0.2, window=0.01)
    plugged(store, backend)
    receipts = fill(store, range(10))
    started = time.monotonic()
    with pytest.raises(QueueFullError):
        store.enqueue(Doc(id="d10", title="refused"))
    assert time.monotonic() - started >= 0.19  # it waited for room first (0.2 s)
    backend.gate.set()
    assert store.flush(timeout=30)
    assert all(r.stored for r in receipts.values())
    assert "d10" not in stored_ids(store)


def test_policy_block_lets_the_caller_in_once_there_is_room(
    open_store: OpenStore, open_faulty: OpenFaulty
) -> None:
    store, backend = open_faulty(max_pending=10, policy="block", block_timeout=30, window=0.01)
    plugged(store, backend)
    fill(store, range(10))
    result: list[statekeep.Receipt | BaseException] = []

    def blocked() -> None:
        try:
            result.append(store.enqueue(Doc(id="d10", title="let in")))
        except BaseException as exc:  # noqa: BLE001 - reported below
            result.append(exc)

    thread = threading.Thread(target=blocked)
    thread.start()
    time.sleep(0.2)
    assert thread.is_alive() and not result, "enqueue did not wait for room"
    backend.gate.set()
    thread.join(timeout=30)
    assert len(result) == 1 and isinstance(result[0], statekeep.Receipt), result
    assert result[0].wait_stored(timeout=30)
    assert store.get(Doc, "d10").title == "let in"


def test_policy_shed_low_drops_the_oldest_low_write_never_silently(
    open_store: OpenStore, open_faulty: OpenFaulty
) -> None:
    events = Recorder()
    store, backend = open_faulty(max_pending=10, policy="shed_low", window=0.01, on_event=events)
    plugged(store, backend)
    low = fill(store, range(3), Priority.LOW)  # d0 oldest, then d1, d2
    normal = fill(store, range(3, 10))
    newer = fill(store, range(10, 12))  # sheds d0, then d1
    assert [e["id"] for e in events.of("shed")] == ["d0", "d1"]
    for id in ("d0", "d1"):
        assert isinstance(low[id].error, QueueFullError)
        with pytest.raises(QueueFullError):
            low[id].wait_stored(timeout=1)
    assert low["d2"].error is None
    stats = store.writebehind.stats()
    assert stats.shed == 2 and stats.total_pending == 10 and stats.pending["LOW"] == 1
    fill(store, range(12, 13))  # sheds d2, the last LOW write
    with pytest.raises(QueueFullError):  # nothing LOW left to shed
        store.enqueue(Doc(id="d13", title="refused"))
    backend.gate.set()
    assert store.flush(timeout=30)
    assert all(r.stored for r in (*normal.values(), *newer.values()))
    assert stored_ids(store) == {"plug"} | {f"d{n}" for n in range(3, 13)}
    assert store.writebehind.stats().shed == 3


@pytest.mark.requires("persistent")
def test_a_shed_write_stays_shed_after_a_restart(
    open_store: OpenStore, open_faulty: OpenFaulty
) -> None:
    """Its receipt failed, so it must not come back from the journal later."""
    store, backend = open_faulty(max_pending=3, policy="shed_low", window=0.01)
    plugged(store, backend)
    low = store.enqueue(Doc(id="low", title="shed"), Priority.LOW)
    assert low.wait_durable(timeout=10)
    fill(store, range(3))  # the third sheds "low"
    assert isinstance(low.error, QueueFullError)
    backend.gate.set()
    assert store.flush(timeout=30)
    store.close()
    with open_store() as reopened:
        assert reopened.flush(timeout=30)
        assert stored_ids(reopened) == {"plug", "d0", "d1", "d2"}


def test_health_events_at_90_percent_and_back_under_70(
    open_store: OpenStore, open_faulty: OpenFaulty
) -> None:
    events = Recorder()
    store, backend = open_faulty(
        max_pending=10, policy="raise", window=0.01, max_batch=1, on_event=events
    )
    plugged(store, backend)
    fill(store, range(8))
    assert events.of("health.high") == []
    fill(store, range(8, 9))  # 9 of 10 pending
    assert [e["pending"] for e in events.of("health.high")] == [9]
    fill(store, range(9, 10))
    assert len(events.of("health.high")) == 1  # once per crossing
    backend.gate.set()  # one write per batch: pending falls 10, 9, 8, 7, 6 ...
    assert store.flush(timeout=30)
    assert [e["pending"] for e in events.of("health.ok")] == [6]
    assert [n for n in events.names() if n.startswith("health")] == ["health.high", "health.ok"]

    plugged(store, backend)  # the signal fires again on the next crossing
    fill(store, range(20, 29))
    assert [e["pending"] for e in events.of("health.high")] == [9, 9]
    backend.gate.set()
    assert store.flush(timeout=30)
    assert [n for n in events.names() if n.startswith("health")] == [
        "health.high",
        "health.ok",
    ] * 2
