"""Issue 11, a write's life around the store's (defects 5, 7, 8 and 9):
enqueue inside a transaction joins its fate; waiting on the engine from its
own thread raises DeadlockError at once; receipts left pending by close()
complete; domain events recorded on an enqueued entity travel with it."""

from __future__ import annotations

import threading

import pytest

from statekeep import (
    Priority,
    TransactionError,
)

from ._exact import Lap, LapFinished, Mark
from .conftest import OpenStore


class BoomError(Exception):
    pass


def test_an_enqueue_in_a_transaction_that_rolls_back_is_dropped(open_store: OpenStore) -> None:
    """Defect 5: the write is dropped with the transaction, its receipt fails
    with TransactionError ("rolled back"). Today it is stored anyway."""
    store = open_store(window=0.01)
    with pytest.raises(BoomError), store.transaction():
        store.save(Mark(id="saved", title="in the block"))
        receipt = store.enqueue(Mark(id="queued", title="in the block"), Priority.CRITICAL)
        raise BoomError
    assert store.flush(timeout=10)
    assert sorted(store.get_many(Mark, ["saved", "queued"])) == [], (
        "a write enqueued in a transaction that rolled back was stored"
    )
    with pytest.raises(TransactionError, match="rolled back"):
        receipt.wait_stored(timeout=5)
    assert isinstance(receipt.error, TransactionError)


def test_an_enqueue_in_a_savepoint_that_rolls_back_is_dropped(open_store: OpenStore) -> None:
    """Defect 5: queued when the outermost block commits; what a rolled-back
    savepoint enqueued is dropped. Today both are stored."""
    store = open_store(window=0.01)
    with store.transaction():
        outer = store.enqueue(Mark(id="outer", title="outer block"))
        with pytest.raises(BoomError), store.transaction():
            inner = store.enqueue(Mark(id="inner", title="savepoint"))
            raise BoomError
    assert outer.wait_stored(timeout=10)
    assert store.flush(timeout=10)
    assert sorted(store.get_many(Mark, ["outer", "inner"])) == ["outer"], (
        "a write enqueued in a savepoint that rolled back was stored"
    )
    with pytest.raises(TransactionError, match="rolled back"):
        inner.wait_stored(timeout=5)


def test_domain_events_recorded_on_an_enqueued_entity_travel_with_the_write(
    open_store: OpenStore,
) -> None:
    """Defect 9: delivered after the write's commit (another thread reads it
    stored), and taken off the entity: enqueued again, it is not delivered
    twice. Today they stay on the entity for its next save()."""
    store = open_store(window=0.01)
    seen: list[tuple[str, int, int | None]] = []

    def read_elsewhere(id: str) -> int | None:
        found: list[int | None] = []
        reader = threading.Thread(
            target=lambda: found.append(
                next((lap.version for lap in store.get_many(Lap, [id]).values()), None)
            )
        )
        reader.start()
        reader.join(5)
        return found[0] if found else None

    def finished(event: LapFinished) -> None:
        seen.append((event.entity_id, event.version, read_elsewhere(event.entity_id)))

    store.on(LapFinished, finished)
    lap = Lap(id="l1", seconds=61)
    lap.record(LapFinished(seconds=61))
    assert store.enqueue(lap).wait_stored(timeout=10)
    assert store.flush(timeout=10)
    assert seen == [("l1", 1, 1)], f"the recorded event was not delivered with the write: {seen}"
    lap.seconds = 62
    assert store.enqueue(lap).wait_stored(timeout=10)  # a later write of this store
    assert store.flush(timeout=10)
    assert len(seen) == 1, f"delivered again with a later write: {seen}"
