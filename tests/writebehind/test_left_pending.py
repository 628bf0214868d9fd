"""Receipts of writes close() did not store complete at once (issue 11,
defect 8): left in the journal for the next open, or lost without one."""

from __future__ import annotations

import asyncio
import time

import pytest

import statekeep
from statekeep import Priority, StoreClosedError

from ._exact import Mark, attempt
from .conftest import Backend, OpenFaulty


def test_receipts_left_pending_at_close_complete_at_once(
    open_faulty: OpenFaulty, backend: Backend, store_url: str
) -> None:
    """Defect 8: close() stops draining (the database is down) with a write
    pending: its receipt completes at once, left_pending; with a journal it
    is durable and stored at the next open, without one its error is
    StoreClosedError; `await receipt` raises StoreClosedError."""
    persistent = "persistent" in backend.capabilities
    store, db = open_faulty(window=0.01, retry_base=0.01, retry_cap=0.05, drain_timeout=0.2)
    db.outage(3600)
    receipt = store.enqueue(Mark(id="left", title="left pending"), Priority.CRITICAL)
    if persistent:
        assert receipt.wait_durable(timeout=10)
    store.close()

    started = time.monotonic()
    outcome = attempt(lambda: receipt.wait_stored(timeout=2))
    waited = time.monotonic() - started
    assert waited < 1, f"wait_stored() after close: {outcome}"
    if persistent:
        assert outcome.startswith("returned False"), outcome
        assert receipt.wait_durable(timeout=0)
        assert receipt.error is None
    else:
        assert outcome.startswith(("returned False", "raised StoreClosedError")), outcome
        assert isinstance(receipt.error, StoreClosedError), receipt.error
    assert getattr(receipt, "left_pending", None) is True

    async def awaited() -> None:
        await asyncio.wait_for(receipt, timeout=3)

    with pytest.raises(StoreClosedError) as closed:
        asyncio.run(awaited())
    if persistent:
        assert "journal" in str(closed.value), str(closed.value)
        db.recover()
        with statekeep.open(store_url) as again:
            assert again.flush(timeout=30)
            assert again.get(Mark, "left").title == "left pending"
