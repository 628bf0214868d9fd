"""Breaking the write-behind engine v2: close() while another thread
flushes (a real SQLite file whose write lock another connection holds)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import statekeep
from statekeep import Entity, WriteBehindOptions


class BrkFlushed(Entity, collection="brk_flushed", last_write_wins=True):
    n: int = 0


def test_a_flush_cut_short_by_close_does_not_report_success(tmp_path: Path) -> None:
    """Promise: store.flush() returns True once everything enqueued so far
    is stored (or failed for good), False if the timeout passed first
    (docs: `assert store.flush(timeout=5)  # everything enqueued so far is
    stored`).

    Observed: the database is locked by another connection, so a write
    cannot be stored; a thread calls store.flush(10), and meanwhile
    store.close() gives up after its drain timeout and leaves the write in
    the journal (receipt.left_pending, not stored, no error). The flush()
    returns True. Cause: _engine._all_done counts `write.left` as done, so
    the flush() waiting on the same condition as close() sees success."""
    path = tmp_path / "close.db"
    store = statekeep.open(
        f"sqlite:///{path}?timeout=0.2",
        writebehind=WriteBehindOptions(window=0.01, drain_timeout=0.5),
    )
    store.save(BrkFlushed(id="warm"))
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the database's write lock, held elsewhere
        receipt = store.enqueue(BrkFlushed(id="x", n=1))
        flushed: list[bool] = []
        flusher = threading.Thread(target=lambda: flushed.append(store.flush(10)))
        flusher.start()
        time.sleep(0.3)
        store.close()
        flusher.join(15)
        assert receipt.left_pending and not receipt.stored
        assert flushed == [False], (
            f"flush() returned {flushed} while the write was left unstored: {receipt!r}"
        )
    finally:
        other.execute("ROLLBACK")
        other.close()
