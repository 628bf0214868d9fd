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


def test_a_stale_enqueue_does_not_overwrite_an_entity_deleted_and_made_again(
    store_url: str,
) -> None:
    """Promise: an enqueued write based on a version that another writer
    changed fails with ConflictError and is dead-lettered; the write is
    stored over a newer version only when every change since was this
    engine's own.

    Observed: mine is saved (v1) and enqueued (the engine stores v2).
    Another writer then deletes the entity, creates it again (v1) and
    updates it (v2). store.save(mine) now raises ConflictError, but
    store.enqueue(mine) is stored over the other writer's v2 (receipt
    stored, version 3, no dead letter): their data is lost silently.
    Cause: Chains.allowed accepts base 1 because this engine's chain for
    the key is (1, 2) and the stored version is 2 again - the chain is not
    invalidated by another writer's delete, which restarts versions."""
    with statekeep.open(store_url, writebehind=WriteBehindOptions(window=0.01)) as store:
        mine = store.save(BrkItem(id="a", title="mine"))
        assert store.enqueue(mine).wait_stored(timeout=5)
        store.delete(BrkItem, "a")  # another writer, from here on
        store.save(BrkItem(id="a", title="theirs"))
        theirs = store.get(BrkItem, "a")
        theirs.title = "theirs, updated"
        store.save(theirs)
        mine.title = "mine again"
        receipt = store.enqueue(mine)
        assert store.flush(timeout=5)
        assert store.get(BrkItem, "a").title == "theirs, updated", receipt
        assert isinstance(receipt.error, statekeep.ConflictError)
