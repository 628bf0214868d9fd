"""`statekeep inspect`: what a database holds and what waits on it, read only.

Collections (rows, indexed columns and whether they are ready, size on
disk), the write-behind journals beside the database (pending writes by
priority, the oldest one's age, dead letters; read without taking them over),
the outbox (events kept) and each durable subscription's position and lag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backends import redacted
from ..backends.base import CollectionInfo
from ..events import SubscriptionInfo
from ..store import Store
from ..writebehind import JournalSurvey, WriteBehindOptions, journal_dir, survey
from ._stores import catalog, plain

# Outbox events are counted up to this many (a page at a time): beyond it, "at least".
COUNT_CAP = 1_000_000
_PAGE = 10_000


@dataclass(frozen=True, slots=True)
class Lagging:
    """A durable subscription and the outbox events after its position (lag)."""

    info: SubscriptionInfo
    lag: int


@dataclass(frozen=True, slots=True)
class Inspection:
    url: str  # without its password
    database: dict[str, Any]
    collections: list[CollectionInfo]
    journals: list[JournalSurvey]
    outbox_events: int  # COUNT_CAP or more: at least that many
    subscriptions: list[Lagging]

    @property
    def outbox_capped(self) -> bool:
        """Counted up to COUNT_CAP: there are at least outbox_events."""
        return self.outbox_events >= COUNT_CAP

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for --json."""
        return {
            "url": self.url,
            "database": self.database,
            "collections": [
                {
                    "name": info.spec.name,
                    "rows": info.rows,
                    "bytes": info.bytes,
                    "ready": info.ready,
                    "indexes": [
                        {"name": i.name, "kind": i.kind, "default": i.default}
                        for i in info.spec.indexes
                    ],
                }
                for info in self.collections
            ],
            "journals": [
                {
                    "directory": str(journal.directory),
                    "held": journal.held,
                    "pending": journal.pending,
                    "oldest_pending_age": journal.oldest_age,
                    "bytes": journal.bytes,
                    "dead_letters": len(journal.dead_letters),
                }
                for journal in self.journals
            ],
            "outbox": {"events": self.outbox_events, "capped": self.outbox_capped},
            "subscriptions": [
                {
                    "name": s.info.name,
                    "position": s.info.position,
                    "lag": s.lag,
                    "active": s.info.active,
                    "behind": s.info.behind,
                    "stalled": s.info.stalled,
                    "advanced_at": None
                    if s.info.advanced_at is None
                    else s.info.advanced_at.isoformat(),
                }
                for s in self.subscriptions
            ],
        }


def inspect(store: Store) -> Inspection:
    """Reads what store's database holds (store: opened with ops' open_existing,
    so that opening it took nothing over; or an AsyncStore on one)."""
    store = plain(store)
    cat = catalog(store)
    backend = store.backend
    directory = journal_dir(WriteBehindOptions(), backend.location)
    lagging = [Lagging(info, _count_events(store, info.position)) for info in store.subscriptions()]
    return Inspection(
        url=redacted(store.url),
        database=cat.describe(),
        collections=cat.collections(),
        journals=[] if directory is None else survey(directory),
        outbox_events=_count_events(store, 0),
        subscriptions=lagging,
    )


def _count_events(store: Store, after: int) -> int:
    counted = 0
    while counted < COUNT_CAP:
        events = store.backend.read_events(after, min(_PAGE, COUNT_CAP - counted))
        if not events:
            break
        counted += len(events)
        after = events[-1][0]
    return counted
