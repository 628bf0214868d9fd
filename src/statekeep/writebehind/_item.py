"""One entity's pending write, as the engine keeps it."""

from __future__ import annotations

from ..backends.base import CollectionSpec, Row
from ._journal import JournalId
from ._options import Priority
from ._receipt import Receipt

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
