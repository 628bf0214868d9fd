"""A database outage: the backend fails with a transient error for a while,
then recovers. Nothing is lost, retries back off, receipts complete."""

from __future__ import annotations

import itertools
import time

import pytest

from statekeep import Priority

from ._support import Recorder, eventually
from .conftest import OpenFaulty, OpenStore
from .models import Doc

OUTAGE = 0.4  # seconds
PROBE = 0.25  # seconds between the flusher's probes of the database (docs/writebehind.md)


@pytest.mark.parametrize("fail_in", ["begin", "put"])
def test_nothing_is_lost_in_an_outage_and_retries_back_off(
    open_store: OpenStore, open_faulty: OpenFaulty, fail_in: str
) -> None:
    events = Recorder()
    store, backend = open_faulty(window=0.01, retry_base=0.01, retry_cap=30.0, on_event=events)
    backend.outage(OUTAGE, fail_in)
    down_until = backend.down_until

    receipts = {}
    for n in range(40):
        priority = (Priority.LOW, Priority.NORMAL, Priority.CRITICAL)[n % 3]
        receipts[f"d{n}"] = store.enqueue(Doc(id=f"d{n}", title=f"first {n}", n=n), priority)
    time.sleep(OUTAGE / 2)  # mid-outage: more writes, some of the same entities
    for n in range(20, 60):
        receipts[f"d{n}"] = store.enqueue(Doc(id=f"d{n}", title=f"last {n}", n=n))
    assert not any(r.stored for r in receipts.values()), "stored during the outage"

    for id, receipt in receipts.items():
        assert receipt.wait_stored(timeout=30), id
    assert time.monotonic() >= down_until
    assert all(r.error is None and r.version == 1 for r in receipts.values())
    expected = {f"d{n}": (f"first {n}" if n < 20 else f"last {n}") for n in range(60)}
    assert {d.id: d.title for d in store.find(Doc)} == expected

    retries = events.of("retry")
    assert len(retries) >= 3, retries
    delays = [r["delay"] for r in retries]
    # exponential backoff with jitter: never shorter than the one before, and growing
    assert all(b >= a for a, b in itertools.pairwise(delays)), delays
    assert delays[-1] > 2 * delays[0], delays
    assert [r["attempt"] for r in retries] == list(range(1, len(retries) + 1))
    assert all("injected outage" in r["error"] for r in retries)
    # no attempt came sooner than the delay announced before it
    attempts = backend.attempts
    failures = len(backend.failures)
    assert failures == len(retries)
    gaps = [b - a for a, b in itertools.pairwise(attempts)][: len(delays)]
    # (or sooner, once a probe of the database, every 0.25 s while backing off,
    # found it back: the batch is tried at once)
    early = [
        (i, gap, delay)
        for i, (gap, delay) in enumerate(zip(gaps, delays, strict=False))
        if gap < delay * 0.99 and not (attempts[i + 1] >= down_until and gap >= PROBE * 0.99)
    ]
    assert not early, (early, gaps, delays)
    stats = store.writebehind.stats()
    assert stats.retried == len(retries)
    assert stats.stored == 60 and stats.total_pending == 0 and stats.in_flight == 0
    assert stats.dead_lettered == 0 and "injected outage" in (stats.last_error or "")


def test_retry_delays_stop_growing_at_the_cap(
    open_store: OpenStore, open_faulty: OpenFaulty
) -> None:
    events = Recorder()
    store, backend = open_faulty(window=0.01, retry_base=0.01, retry_cap=0.04, on_event=events)
    backend.outage(0.25)
    receipt = store.enqueue(Doc(id="a", title="x"), Priority.CRITICAL)
    assert receipt.wait_stored(timeout=30)
    delays = [r["delay"] for r in events.of("retry")]
    assert len(delays) >= 5, delays
    assert max(delays) <= 0.04
    assert store.get(Doc, "a").title == "x"


@pytest.mark.requires("persistent")
def test_durable_during_an_outage_and_stored_after_it(
    open_store: OpenStore, open_faulty: OpenFaulty
) -> None:
    """With a journal, a write is durable while the database is down."""
    store, backend = open_faulty(window=0.01, retry_base=0.02)
    backend.outage(3600)
    receipt = store.enqueue(Doc(id="a", title="x"), Priority.CRITICAL)
    assert receipt.wait_durable(timeout=10)
    eventually(lambda: len(backend.failures) >= 2, what="retries during the outage")
    assert not receipt.stored
    backend.recover()
    assert receipt.wait_stored(timeout=30)
    assert store.get(Doc, "a").title == "x"


def test_await_receipt_after_an_outage(open_store: OpenStore, open_faulty: OpenFaulty) -> None:
    import asyncio

    store, backend = open_faulty(window=0.01, retry_base=0.02)
    backend.outage(0.15)

    async def main() -> int | None:
        receipt = store.enqueue(Doc(id="a", title="awaited"))
        done = await asyncio.wait_for(receipt, timeout=30)
        return done.version

    assert asyncio.run(main()) == 1
    assert store.get(Doc, "a").title == "awaited"


def test_the_database_breaker_opens_in_an_outage_and_closes_after_it(
    open_store: OpenStore, open_faulty: OpenFaulty
) -> None:
    """The flusher's statekeep.flow CircuitBreaker: open once a batch failed
    (stats().database), probing every PROBE s, closed once the database is
    back and the batch it held back is stored."""
    store, backend = open_faulty(window=0.01, retry_base=5.0, retry_cap=5.0)
    assert store.writebehind.stats().database == "closed"
    backend.outage(OUTAGE, "begin")
    receipt = store.enqueue(Doc(id="held", title="during", n=1))
    eventually(lambda: store.writebehind.stats().database in ("open", "half_open"))
    # the backoff is 5 s, but a probe finds the database back within a PROBE
    assert receipt.wait_stored(timeout=OUTAGE + 4 * PROBE + 2)
    eventually(lambda: store.writebehind.stats().database == "closed")
    assert store.get(Doc, "held").title == "during"
