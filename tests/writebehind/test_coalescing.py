"""Coalescing: repeated enqueues of one entity before it is written become one
write of the last content, and every receipt completes."""

from __future__ import annotations

import asyncio
import threading
from itertools import count

import pytest

import statekeep
from statekeep import NotFoundError, Priority

from ._support import eventually
from .conftest import OpenFaulty, OpenStore
from .models import Doc

LONG = 10.0


def test_repeated_enqueues_become_one_write_of_the_last_content(
    open_store: OpenStore, open_faulty: OpenFaulty
) -> None:
    store, backend = open_faulty(window=LONG, low_max_age=3600)
    receipts = [
        store.enqueue(
            Doc(id="x", title=f"content {k}", n=k), (Priority.LOW, Priority.NORMAL)[k % 2]
        )
        for k in range(100)
    ]
    stats = store.writebehind.stats()
    assert stats.total_pending == 1 and stats.pending["NORMAL"] == 1  # the most urgent wins
    assert store.flush(timeout=30)
    assert all(r.stored and r.error is None and r.version == 1 for r in receipts)
    assert store.writebehind.stats().stored == 1
    assert backend.committed == [["x"]]
    stored = store.get(Doc, "x")
    assert (stored.title, stored.n, stored.version) == ("content 99", 99, 1)


def test_a_write_in_flight_is_followed_by_one_write_of_the_newest(
    open_store: OpenStore, open_faulty: OpenFaulty
) -> None:
    store, backend = open_faulty(window=0.01, low_max_age=3600)
    backend.gate.clear()
    first = store.enqueue(Doc(id="x", title="first"), Priority.CRITICAL)
    eventually(backend.waiting.is_set, what="the first write in flight")
    later = [store.enqueue(Doc(id="x", title=f"later {k}")) for k in range(5)]
    backend.gate.set()
    assert store.flush(timeout=30)
    assert first.version == 1
    assert [r.version for r in later] == [2] * 5
    assert backend.committed == [["x"], ["x"]]
    assert store.writebehind.stats().stored == 2
    assert (store.get(Doc, "x").title, store.get(Doc, "x").version) == ("later 4", 2)


def test_enqueue_leaves_the_entity_object_alone(open_store: OpenStore) -> None:
    store = open_store(window=0.01)
    doc = Doc(id="x", title="a")
    receipt = store.enqueue(doc)
    assert receipt.wait_stored(timeout=30)
    assert doc.version == 0 and receipt.version == 1
    receipt = store.enqueue(doc)  # last write wins, whatever the object's version
    assert receipt.wait_stored(timeout=30) and receipt.version == 2


def test_deletes_coalesce_with_writes_in_order(open_store: OpenStore) -> None:
    store = open_store(window=LONG, low_max_age=3600)
    store.save(Doc(id="gone", title="stored"))
    store.save(Doc(id="back", title="stored"))
    receipts = [
        store.enqueue(Doc(id="new-then-gone", title="a")),
        store.enqueue_delete(Doc, "new-then-gone"),
        store.enqueue(Doc(id="gone", title="changed")),
        store.enqueue_delete(store.get(Doc, "gone")),
        store.enqueue_delete(Doc, "back"),
        store.enqueue(Doc(id="back", title="again")),
        store.enqueue_delete(Doc, "never-stored"),
    ]
    assert store.writebehind.stats().total_pending == 4
    assert store.flush(timeout=30)
    assert all(r.stored and r.error is None for r in receipts)
    assert {d.id: d.title for d in store.find(Doc)} == {"back": "again"}
    with pytest.raises(NotFoundError):
        store.get(Doc, "gone")


def test_every_coalesced_receipt_can_be_awaited(open_store: OpenStore) -> None:
    store = open_store(window=0.05)

    async def main() -> list[int | None]:
        receipts = [store.enqueue(Doc(id="x", title=f"t{k}")) for k in range(10)]
        done = await asyncio.wait_for(asyncio.gather(*(wait(r) for r in receipts)), 30)
        return [r.version for r in done]

    async def wait(receipt: statekeep.Receipt) -> statekeep.Receipt:
        return await receipt

    assert asyncio.run(main()) == [1] * 10
    assert store.get(Doc, "x").title == "t9"


def test_enqueue_from_many_threads_keeps_the_last_content(open_store: OpenStore) -> None:
    """Four threads write their own entities and one shared entity (in a known
    order, under a lock): every receipt completes, the newest content wins."""
    store = open_store(window=0.002, low_max_age=0.01)
    order = threading.Lock()
    shared = count(1)
    receipts: list[statekeep.Receipt] = []

    def writer(t: int) -> None:
        mine = []
        for k in range(300):
            mine.append(store.enqueue(Doc(id=f"t{t}-{k % 20}", title=f"{k}", n=k)))
            with order:
                n = next(shared)
                mine.append(store.enqueue(Doc(id="shared", title=f"{n}", n=n), Priority(k % 3)))
        receipts.extend(mine)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.flush(timeout=30)
    assert len(receipts) == 2400 and all(r.stored and r.error is None for r in receipts)
    stored = {d.id: d.n for d in store.find(Doc)}
    assert stored.pop("shared") == 1200
    assert stored == {f"t{t}-{k}": 280 + k for t in range(4) for k in range(20)}
