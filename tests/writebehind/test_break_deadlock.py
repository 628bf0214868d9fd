"""Breaking the write-behind engine v2: waits that can never end must raise
DeadlockError at once, not hang (real SQLite file, files, memory)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

import statekeep
from statekeep import Entity, WriteBehindOptions


class BrkThing(Entity, collection="brk_thing", last_write_wins=True):
    n: int = 0


WAIT = 4.0


@pytest.mark.parametrize("wait", ["flush", "wait_stored"])
def test_waiting_for_the_queue_inside_a_transaction_does_not_deadlock(
    store_url: str, wait: str
) -> None:
    """Promise: a wait on the pipeline that could never end raises
    statekeep.DeadlockError at once (docs/writebehind.md: flush() and
    wait_stored() on the engine's thread); flush() waits until everything
    enqueued is stored.

    Observed: with a write pending, store.flush() (or receipt.wait_stored())
    called inside `with store.transaction():` on SQLite, files and memory
    waits out its whole timeout and returns False - the flusher needs the
    write lock the caller's open transaction holds, so with no timeout it
    hangs for ever. On PostgreSQL too, here, because the block created the
    collection: the flusher waits for the block's lock (a pending write of
    a row the block saved would wait for its row lock alike). Cause:
    WriteBehind.flush / Receipt.wait_* check only
    for the engine's own threads (check_not_own), not for a transaction of
    the caller's holding the database's write lock."""
    with statekeep.open(store_url, writebehind=WriteBehindOptions(window=0.01)) as store:
        receipt = store.enqueue(BrkThing(id="pending", n=1))
        started = time.monotonic()
        outcome: object
        with store.transaction():
            store.save(BrkThing(id="in-the-block"))
            try:
                if wait == "flush":
                    outcome = store.flush(timeout=WAIT)
                else:
                    outcome = receipt.wait_stored(timeout=WAIT)
            except statekeep.DeadlockError:
                return  # refused at once: fine
        took = time.monotonic() - started
        assert outcome is True, (
            f"{wait}() inside a transaction waited {took:.1f} s and gave {outcome!r} "
            f"(the write: {receipt!r}): with no timeout it never returns"
        )


def test_a_blocking_wait_in_a_task_while_another_task_holds_a_transaction(
    tmp_path: Path,
) -> None:
    """A task that started inside another task's open transaction and calls
    receipt.wait_stored() blocks the event loop's thread, so the block
    (and the batch waiting for its lock) could never finish: DeadlockError
    at once, not a TransactionError about the other task's block."""
    path = tmp_path / "tasks.db"
    with statekeep.open(f"sqlite:///{path}", writebehind=WriteBehindOptions(window=0.01)) as store:
        receipt = store.enqueue(BrkThing(id="pending", n=1))

        async def waiter() -> None:
            with pytest.raises(statekeep.DeadlockError):
                receipt.wait_stored(timeout=WAIT)

        async def holder() -> None:
            with store.transaction():
                store.save(BrkThing(id="in-the-block"))
                await asyncio.create_task(waiter())

        asyncio.run(holder())
        assert receipt.wait_stored(timeout=WAIT)
