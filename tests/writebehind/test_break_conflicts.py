"""Breaking the write-behind engine v2's conflict rule: no update is lost
silently (a real SQLite file, real PostgreSQL)."""

from __future__ import annotations

import statekeep
from statekeep import Entity, WriteBehindOptions


class BrkItem(Entity, collection="brk_item"):
    title: str = ""


def test_enqueue_delete_of_a_stale_entity_does_not_delete_a_newer_save(store_url: str) -> None:
    """Promise: no update is lost silently - an enqueued write based on a
    version that another writer changed fails with ConflictError and goes
    to the dead letters (store.enqueue's docstring; delete(entity) is
    checked the same way as save, guide "Versions and conflicts").

    Observed: mine is read at version 1, another writer saves version 2,
    then store.enqueue_delete(mine) deletes version 2: the receipt reports
    stored, no error, no dead letter (store.delete(mine) raises
    ConflictError; store.enqueue(mine) is dead-lettered). Cause:
    Store.enqueue_delete passes no base (nor the entity's version) to the
    engine, so the deletion is stored over whatever is there."""
    with statekeep.open(store_url, writebehind=WriteBehindOptions(window=0.01)) as store:
        mine = store.save(BrkItem(id="a", title="first"))
        theirs = store.get(BrkItem, "a")
        theirs.title = "newer"
        store.save(theirs)
        receipt = store.enqueue_delete(mine)
        assert store.flush(timeout=5)
        assert isinstance(receipt.error, statekeep.ConflictError), receipt
        assert store.get(BrkItem, "a").title == "newer"
        assert [d.id for d in store.writebehind.dead_letters()] == ["a"]
