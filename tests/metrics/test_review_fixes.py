"""What a review of the metering found, each pinned: a forked child never
reads its parent's write-behind engine; an unsubscribed subscription's
gauges clear; per-key flow children are not series of their own; a find
that fails while it is read counts as a failure; a failing batch report
does not stop write-behind."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

import statekeep
from statekeep.flow import Debounce, Throttle
from statekeep.metrics import default
from statekeep.metrics import names as n


class Card(statekeep.Entity, collection="review_cards"):
    title: str = ""


def test_a_forked_child_reads_no_write_behind_of_its_parent(tmp_path: Path) -> None:
    options = {"window": 60.0, "durability": "journal", "max_pending": 100}
    with statekeep.open(f"sqlite:///{tmp_path / 'f.db'}", writebehind=options) as store:
        for i in range(10):
            store.enqueue(Card(title=str(i)))
        assert store.metrics().value(n.PENDING_RATIO) == 0.1
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: its store has no engine of its own yet
            try:
                ratio = store.metrics().value(n.PENDING_RATIO)
                pending = store.metrics().value(n.PENDING)
                os.write(write, f"{ratio} {pending}".encode())
            finally:
                os._exit(0)
        os.close(write)
        answer = os.read(read, 100).decode()
        os.waitpid(pid, 0)
        assert [float(x) for x in answer.split()] == [0.0, 0.0]
        assert store.metrics().value(n.PENDING_RATIO) == 0.1  # the parent's own, unchanged
        assert store.flush(10)


def test_an_unsubscribed_subscription_reads_nothing_waiting(tmp_path: Path) -> None:
    with statekeep.open(f"sqlite:///{tmp_path / 'u.db'}", outbox=True) as store:
        store.subscribe("slow", lambda event: None).stop()
        store.save_many([Card() for _ in range(5)])
        assert store.metrics().value(n.OUTBOX_LAG, subscription="slow") == 5
        store.unsubscribe("slow")
        assert store.metrics().value(n.OUTBOX_LAG, subscription="slow") == 0


def test_per_key_flow_children_are_counted_by_their_root_only() -> None:
    calls: list[int] = []
    debounce = Debounce(lambda v: calls.append(v), wait=0.0, name="review-debounce")
    for key in range(3):
        debounce.for_key(key)
    throttle = Throttle(1000, burst=1000, name="review-throttle")
    for key in range(3):
        throttle.for_key(key).call(lambda: None)
    snapshot = default().snapshot()
    names = {s.labels["name"] for s in snapshot.select(n.FLOW_EVENTS)}
    assert "review-debounce" in names and "review-throttle" in names
    assert not any(name.startswith(("review-debounce[", "review-throttle[")) for name in names)


def test_a_find_that_fails_while_read_is_a_failure_not_a_timing(tmp_path: Path) -> None:
    store = statekeep.open(f"sqlite:///{tmp_path / 'r.db'}")
    store.save_many([Card() for _ in range(3)])
    results = store.find(Card)
    next(results)
    store.close()
    with pytest.raises(statekeep.StoreClosedError):
        next(results)
    snapshot = store.metrics()
    assert snapshot.value(n.FAILURES, operation="find", error="StoreClosedError") == 1
    assert snapshot.value(n.FIND, collection="review_cards", index="all") == 0


def test_a_failing_batch_report_leaves_write_behind_storing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with statekeep.open(f"sqlite:///{tmp_path / 'b.db'}") as store:
        store.registry.counter(n.BATCH_ROWS)  # a user's metric under write-behind's name
        with caplog.at_level(logging.ERROR, logger="statekeep.writebehind"):
            receipt = store.enqueue(Card(title="kept"))
            assert receipt.wait_stored(10)
            assert store.flush(10)
            deadline = time.monotonic() + 10  # reported after the batch settled
            while not failed_reports(caplog) and time.monotonic() < deadline:
                time.sleep(0.01)
        assert store.count(Card) == 1 and failed_reports(caplog) == 1


def failed_reports(caplog: pytest.LogCaptureFixture) -> int:
    return sum(
        getattr(r, "statekeep", {}).get("event") == "writebehind.on_batch_failed"
        for r in caplog.records
    )
