"""Priorities: CRITICAL at once, NORMAL within the window, LOW when nothing
else waits or once low_max_age old; a deadline moves a write forward.

Windows here are long (seconds) so that "not yet stored" is certain; the
waits for what must be stored early are generous but well inside them."""

from __future__ import annotations

import time

from statekeep import Priority

from ._support import eventually
from .conftest import OpenFaulty, OpenStore
from .models import Doc
from .test_backpressure import plugged

LONG = 10.0  # a window no test waits out
EARLY = 3.0  # generous, and well before LONG


def test_critical_is_stored_well_before_the_normal_window_closes(
    open_store: OpenStore, open_faulty: OpenFaulty
) -> None:
    store, backend = open_faulty(window=LONG, low_max_age=3600)
    normal = store.enqueue(Doc(id="n", title="normal"))
    critical = store.enqueue(Doc(id="c", title="critical"), Priority.CRITICAL)
    assert critical.wait_stored(timeout=EARLY)
    assert not normal.stored
    assert store.get(Doc, "c").title == "critical"
    assert store.count(Doc) == 1
    assert store.writebehind.stats().pending == {"LOW": 0, "NORMAL": 1, "CRITICAL": 0}
    assert store.flush(timeout=30) and normal.stored
    assert "n" not in backend.committed[backend.batch_of("c")]


def test_a_critical_write_of_a_pending_entity_takes_it_along_at_once(
    open_store: OpenStore,
) -> None:
    store = open_store(window=LONG, low_max_age=3600)
    first = store.enqueue(Doc(id="x", title="normal"))
    second = store.enqueue(Doc(id="x", title="critical"), Priority.CRITICAL)
    assert second.wait_stored(timeout=EARLY) and first.stored
    assert first.version == second.version == 1
    assert store.get(Doc, "x").title == "critical"


def test_low_waits_while_normal_work_is_pending(
    open_store: OpenStore, open_faulty: OpenFaulty
) -> None:
    """While NORMAL writes wait, LOW is not written (its age limit is far);
    it is written once they are done."""
    store, backend = open_faulty(window=0.01, max_batch=5, low_max_age=3600)
    plugged(store, backend)
    low = store.enqueue(Doc(id="low", title="low"), Priority.LOW)
    normal = [store.enqueue(Doc(id=f"n{k}", title="normal")) for k in range(20)]
    backend.gate.set()
    assert low.wait_stored(timeout=30)
    assert all(r.stored for r in normal)
    last_normal = max(backend.batch_of(f"n{k}") for k in range(20))
    assert backend.batch_of("low") > last_normal, backend.committed
    assert all(len(batch) <= 5 for batch in backend.committed)


def test_low_is_written_when_idle(open_store: OpenStore) -> None:
    store = open_store(window=0.05, low_max_age=3600)
    low = store.enqueue(Doc(id="low", title="low"), Priority.LOW)
    assert low.wait_stored(timeout=EARLY)
    assert store.get(Doc, "low").title == "low"


def test_low_is_written_once_its_age_limit_passes_while_normal_waits(
    open_store: OpenStore,
) -> None:
    store = open_store(window=LONG, low_max_age=0.2)
    normal = store.enqueue(Doc(id="n", title="normal"))
    time.sleep(0.1)  # the flusher now waits for the NORMAL write's window
    low = store.enqueue(Doc(id="low", title="low"), Priority.LOW)
    assert low.wait_stored(timeout=EARLY), "LOW waited past its age limit"
    assert not normal.stored


def test_a_deadline_moves_a_write_forward(open_store: OpenStore) -> None:
    store = open_store(window=LONG, low_max_age=3600)
    normal = store.enqueue(Doc(id="n", title="normal"))
    due = store.enqueue(Doc(id="due", title="normal, due"), deadline=0.3)
    low_due = store.enqueue(Doc(id="low", title="low, due"), Priority.LOW, deadline=0.3)
    assert due.wait_stored(timeout=EARLY) and low_due.wait_stored(timeout=EARLY)
    assert not normal.stored
    # a deadline given to a write that already waits moves it forward too
    later = store.enqueue(Doc(id="n", title="normal, now due"), deadline=0.2)
    assert later.wait_stored(timeout=EARLY) and normal.stored
    assert store.get(Doc, "n").title == "normal, now due"


def test_normal_is_written_within_its_window_without_a_flush(open_store: OpenStore) -> None:
    store = open_store(window=0.05, low_max_age=3600)
    receipts = [store.enqueue(Doc(id=f"n{k}", title="normal")) for k in range(10)]
    eventually(lambda: all(r.stored for r in receipts), what="NORMAL writes stored")
    assert store.count(Doc) == 10
