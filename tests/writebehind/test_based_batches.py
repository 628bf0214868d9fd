"""A batch whose writes are all new entities or updates of the version they
were based on is put without reading stored versions first (the put checks
them); if one is not what its row says, the batch is written again reading
them, and the conflict rule decides as ever."""

from __future__ import annotations

from statekeep import ConflictError

from ._exact import Mark
from .conftest import OpenFaulty

N = 50


def test_updates_of_the_versions_they_were_based_on_read_no_versions(
    open_faulty: OpenFaulty,
) -> None:
    store, backend = open_faulty(window=0.01)
    store.save_many([Mark(id=f"d{i}", title="first") for i in range(N)])
    docs = list(store.get_many(Mark, [f"d{i}" for i in range(N)]).values())
    for doc in docs:
        doc.title = "second"
    receipts = [store.enqueue(doc) for doc in docs]
    assert store.flush(10)
    assert [r.version for r in receipts] == [2] * N
    assert backend.reads == 0
    assert {d.title for d in store.find(Mark)} == {"second"}

    # the same stale objects again: this engine stored version 2 of each, so
    # the chains say the write may go over it; the batch reads versions
    for doc in docs:
        doc.title = "third"
    receipts = [store.enqueue(doc) for doc in docs]
    assert store.flush(10)
    assert [r.version for r in receipts] == [3] * N
    assert backend.reads > 0
    assert {(d.title, d.version) for d in store.find(Mark)} == {("third", 3)}


def test_a_version_another_writer_changed_is_a_conflict_the_rest_are_stored(
    open_faulty: OpenFaulty,
) -> None:
    store, backend = open_faulty(window=0.05)
    store.save_many([Mark(id=f"d{i}", title="first") for i in range(N)])
    docs = store.get_many(Mark, [f"d{i}" for i in range(N)])
    backend.gate.clear()  # the flusher waits in begin(): the other writer goes first
    receipts = {}
    for id, doc in docs.items():
        doc.title = "enqueued"
        receipts[id] = store.enqueue(doc)
    other = store.get(Mark, "d7")
    other.title = "saved by another writer"
    store.save(other)  # version 2, not the enqueued write's
    backend.gate.set()
    assert store.flush(10)
    assert isinstance(receipts["d7"].error, ConflictError)
    assert all(r.version == 2 for id, r in receipts.items() if id != "d7")
    assert store.get(Mark, "d7").title == "saved by another writer"
    assert backend.reads > 0  # the put failed whole, and the batch read the versions
    stored = {d.id: d.title for d in store.find(Mark)}
    assert stored == {id: ("saved by another writer" if id == "d7" else "enqueued") for id in docs}
