"""One entity's pending write, as the engine keeps it."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ..backends.base import CollectionSpec, Row
from ._journal import JournalId, JournalRecord
from ._options import Priority
from ._receipt import Receipt
from ._records import spec_of

Key = tuple[str, str]  # (collection, id)


class Item:
    """One entity's pending write (the latest content of every coalesced one)."""

    __slots__ = (
        "body_version",
        "deadline",
        "delete",
        "expect",
        "first_seq",
        "journal_ids",
        "key",
        "merged_into",
        "priority",
        "receipts",
        "resolved",
        "row",
        "seq",
        "since",
        "spec",
    )

    def __init__(self, key: Key, spec: CollectionSpec, seq: int, since: float) -> None:
        self.key = key
        self.spec = spec
        self.seq = self.first_seq = seq
        self.since = since
        self.row: Row = ()
        self.delete = False
        self.body_version = 0
        self.expect: int | None = None
        self.priority = Priority.LOW
        self.deadline: float | None = None
        self.receipts: list[Receipt] = []
        self.journal_ids: list[JournalId] = []  # its journal records not yet marked done
        self.resolved = False
        self.merged_into: Item | None = None


def journal_content(item: Item) -> tuple[Any, ...]:
    """What a journal record of the item holds, as of now."""
    return (item.spec, item.row, item.delete, item.expect, item.priority, item.deadline, item.seq)


def first(queue: dict[Key, None], count: int) -> Iterable[Key]:
    """The first count keys of a queue."""
    for position, key in enumerate(queue):
        if position >= count:
            return
        yield key


def recovered(records: list[tuple[int, JournalRecord]], now: float) -> dict[Key, Item]:
    """The pending writes a crashed run left in the journal, one per entity
    (the last content wins; the most urgent priority and deadline hold);
    their sequence numbers are the engine's to give."""
    wall = time.time()
    items: dict[Key, Item] = {}
    for segment, record in records:
        # written as id, version and body only: the columns of the spec it
        # was enqueued with may have been rebuilt in another kind since (a
        # deploy), and ensuring that spec would build them back; the
        # database fills the columns it keeps from the body (see
        # backends/_layout)
        spec = CollectionSpec(spec_of(record).name)
        row = tuple(record["r"][:3])
        key = (spec.name, row[0])
        item = items.get(key)
        if item is None:
            item = items[key] = Item(key, spec, 0, now)
            item.priority = Priority(record["p"])
        item.spec, item.row, item.delete = spec, row, record["o"] == "delete"
        item.body_version, item.expect = row[1], record["e"]
        item.journal_ids.append((segment, (record["u"], record["s"])))
        item.priority = max(item.priority, Priority(record["p"]))
        if record["d"] is not None:
            item.deadline = now + max(0.0, record["d"] - wall)
    return items
