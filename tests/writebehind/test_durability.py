"""Durable vs stored: a write is durable once in the journal (SQLite files) or
once stored (in-memory stores have no journal); the journal keeps no copy of
stored writes; pending writes left in it are stored at the next open, and
never an older content over a newer one."""

from __future__ import annotations

import pytest

from statekeep import Priority

from ._support import eventually, journal_bytes, segments
from .conftest import Backend, OpenFaulty, OpenStore
from .models import Doc
from .test_backpressure import plugged


def test_durable_comes_before_stored_only_with_a_journal(
    open_store: OpenStore, open_faulty: OpenFaulty, backend: Backend
) -> None:
    store, db = open_faulty(window=0.01)
    plugged(store, db)  # the database hangs
    receipt = store.enqueue(Doc(id="x", title="x"))
    if "persistent" in backend.capabilities:
        assert receipt.wait_durable(timeout=10)
        assert not receipt.stored
    else:
        assert not receipt.wait_durable(timeout=0.3)  # durable means stored here
        assert not receipt.durable
    db.gate.set()
    assert receipt.wait_durable(timeout=30)
    assert receipt.wait_stored(timeout=30)
    assert receipt.durable and receipt.stored


@pytest.mark.requires("persistent", "sqlite")
def test_the_journal_keeps_no_copy_of_stored_writes(
    open_store: OpenStore, open_faulty: OpenFaulty, store_url: str
) -> None:
    store, db = open_faulty(window=0.01)
    plugged(store, db)
    receipts = [store.enqueue(Doc(id=f"d{k}", title="x")) for k in range(20)]
    assert all(r.wait_durable(timeout=10) for r in receipts)
    assert journal_bytes(store_url) > 0  # the journal has them while the database hangs
    db.gate.set()
    assert store.flush(timeout=30)
    eventually(
        lambda: journal_bytes(store_url) == 0,
        timeout=5,
        what=f"stored writes leave the journal (segments: {segments(store_url)})",
    )
    store.close()
    assert segments(store_url) == []


def test_flush_times_out_while_the_database_hangs(
    open_store: OpenStore, open_faulty: OpenFaulty
) -> None:
    store, db = open_faulty(window=0.01)
    plugged(store, db)
    receipt = store.enqueue(Doc(id="x", title="x"))
    assert store.flush(timeout=0.2) is False
    assert not receipt.stored
    db.gate.set()
    assert store.flush(timeout=30) is True and receipt.stored


def test_close_drains_what_is_pending(open_store: OpenStore) -> None:
    store = open_store(window=3600, low_max_age=3600)
    receipts = [
        store.enqueue(Doc(id=f"d{k}", title="x"), (Priority.LOW, Priority.NORMAL)[k % 2])
        for k in range(50)
    ]
    assert not any(r.stored for r in receipts)
    store.close()
    assert all(r.stored for r in receipts)


@pytest.mark.requires("persistent", "sqlite")
def test_writes_left_pending_at_close_are_stored_at_the_next_open(
    open_store: OpenStore, store_url: str
) -> None:
    store = open_store(window=3600, low_max_age=3600)
    receipts = [store.enqueue(Doc(id=f"d{k}", title=f"t{k}", n=k)) for k in range(50)]
    store.enqueue(Doc(id="d7", title="t7, newer", n=7))
    assert all(r.wait_durable(timeout=10) for r in receipts)
    store.close(timeout=0)  # no time to drain: it all stays in the journal
    assert not any(r.stored for r in receipts)
    assert segments(store_url) != []

    reopened = open_store()  # no enqueue, no flush: opening stores them
    eventually(lambda: reopened.count(Doc) == 50, timeout=30, what="recovered writes stored")
    titles = {d.id: d.title for d in reopened.find(Doc)}
    assert titles == {f"d{k}": f"t{k}" for k in range(50)} | {"d7": "t7, newer"}
    assert all(d.version == 1 for d in reopened.find(Doc))
    reopened.close()
    assert segments(store_url) == []


@pytest.mark.requires("persistent")
def test_a_restart_never_brings_back_an_older_content(open_store: OpenStore) -> None:
    """Three runs. A NORMAL write waits for an hour-long window while CRITICAL
    writes of another entity are stored; each run ends with close(timeout=0)
    (what is pending stays in the journal). The entity's stored content must
    stay the newest."""
    options = {"window": 3600, "low_max_age": 3600}
    first = open_store(**options)
    first.enqueue(Doc(id="waits", title="pending"))
    assert first.enqueue(Doc(id="e", title="e1"), Priority.CRITICAL).wait_stored(timeout=30)
    first.close(timeout=0)

    second = open_store(**options)  # recovery stores "e" again and keeps "waits" pending
    eventually(lambda: second.writebehind.stats().pending["CRITICAL"] == 0, timeout=30)
    assert second.enqueue(Doc(id="e", title="e2"), Priority.CRITICAL).wait_stored(timeout=30)
    assert second.get(Doc, "e").title == "e2"
    second.close(timeout=0)

    third = open_store(**options)
    assert third.flush(timeout=30)
    assert third.get(Doc, "e").title == "e2"
    assert third.get(Doc, "waits").title == "pending"
