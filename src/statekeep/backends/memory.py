"""The memory backend: SQLite's semantics without a file.

Committed rows live in dictionaries. A transaction keeps its changes in an
overlay of its own (other threads see only committed rows), with a journal so
savepoints can be rolled back; commit applies the overlay under a lock. One
write transaction runs at a time, as in SQLite.
"""

from __future__ import annotations

import bisect
import heapq
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from typing import Any

from ..errors import ConflictError, NotFoundError, ValidationError
from . import _matching
from ._claims import Claim, LocalClaims
from ._layout import LAYOUT_VERSION, internal
from ._locks import take
from ._overlay import Overlay, OverlayTransactions
from ._owner import current_task
from .base import (
    CHUNK_ROWS,
    CollectionInfo,
    CollectionSpec,
    Filter,
    Query,
    Row,
    atomic,
    conflict_detail,
)

_Key = tuple[str, str]
_ABSENT = None


@dataclass
class _Transaction(Overlay[Row | None]):
    events: list[str] = field(default_factory=list)


class MemoryBackend(OverlayTransactions[_Transaction]):
    chunk_rows = CHUNK_ROWS  # rows per save_many chunk: the default

    def __init__(self, *, timeout: float = 5.0) -> None:
        self._rows: dict[str, dict[str, Row]] = {}
        self._specs: dict[str, CollectionSpec] = {}
        self._write_lock = threading.Lock()
        self._closing = threading.Event()
        self._data_lock = threading.Lock()
        self._local = threading.local()
        self._timeout = timeout
        self.location: str | None = None
        self.embedded = False
        self._events: list[tuple[int, str]] = []  # the outbox, in commit order
        self._last_event = 0
        self._new_events = threading.Condition(self._data_lock)
        self._claims = LocalClaims()

    # -- collections ---------------------------------------------------------
    def ensure_collection(self, spec: CollectionSpec, *, create: bool = True) -> None:
        known = self._specs.get(spec.name)
        if known is spec:
            return
        with self._data_lock:
            rows = self._rows.setdefault(spec.name, {})
            if known is not None and known.indexes != spec.indexes:
                for id, row in rows.items():
                    rows[id] = _reindex(row, spec)
            self._specs[spec.name] = spec

    # -- transactions --------------------------------------------------------
    def begin(self) -> None:
        self._check_none_open()
        take(self._write_lock, self._timeout, self._closing)
        self._local.txn = _Transaction(task=current_task())

    def commit(self) -> None:
        txn = self._txn()
        with self._data_lock:
            for (collection, id), row in txn.changes.items():
                rows = self._rows.setdefault(collection, {})
                if row is None:
                    rows.pop(id, None)
                else:
                    rows[id] = row
            if txn.events:
                first = self._last_event + 1
                self._events.extend(enumerate(txn.events, first))
                self._last_event += len(txn.events)
                self._new_events.notify_all()
        self._end()

    def rollback(self) -> None:
        if self._mine() is not None:
            self._end()

    def _end(self) -> None:
        self._local.txn = None
        self._write_lock.release()

    # -- rows ----------------------------------------------------------------
    def _current(self, txn: _Transaction | None, key: _Key) -> Row | None:
        if txn is not None and key in txn.changes:
            return txn.changes[key]
        return self._rows.get(key[0], {}).get(key[1])

    def put(self, spec: CollectionSpec, rows: Sequence[Row]) -> None:
        txn = self._txn()
        for row in rows:
            key = (spec.name, row[0])
            current = self._current(txn, key)
            stored = 0 if current is None else current[1]
            if stored != row[1] - 1:
                raise ConflictError(spec.name, row[0], conflict_detail(stored, row[1] - 1))
            txn.change(key, tuple(row))

    def delete(self, collection: str, id: str, version: int | None) -> None:
        txn = self._txn()
        key = (collection, id)
        current = self._current(txn, key)
        if current is None:
            raise NotFoundError(collection, id)
        if version is not None and current[1] != version:
            raise ConflictError(collection, id, conflict_detail(current[1], version))
        txn.change(key, _ABSENT)

    def versions(self, collection: str, ids: Sequence[str]) -> dict[str, int]:
        txn = self._mine()
        found = {id: self._current(txn, (collection, id)) for id in ids}
        return {id: row[1] for id, row in found.items() if row is not None}

    def get(self, collection: str, id: str) -> str | None:
        row = self._current(self._mine(), (collection, id))
        return None if row is None else str(row[2])

    def get_now(self, spec: CollectionSpec, id: str) -> str | None:
        """get() on an event loop's thread (base.ReadsNow): no I/O, and the
        data lock is held only for moments."""
        row = self._current(None, (spec.name, id))
        return None if row is None else str(row[2])

    def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, str]:
        txn = self._mine()
        with self._data_lock:
            found = {id: self._current(txn, (collection, id)) for id in ids}
        return {id: str(row[2]) for id, row in found.items() if row is not None}

    def _visible(self, spec: CollectionSpec) -> list[Row]:
        txn = self._mine()
        with self._data_lock:
            merged = dict(self._rows.get(spec.name, {}))
        if txn is not None:
            for (collection, id), row in txn.changes.items():
                if collection != spec.name:
                    continue
                if row is None:
                    merged.pop(id, None)
                else:
                    merged[id] = row
        return list(merged.values())

    def select(self, spec: CollectionSpec, query: Query) -> Iterator[str]:
        yield from _matching.select(spec, self._visible(spec), query)

    def count(self, spec: CollectionSpec, filters: tuple[Filter, ...]) -> int:
        return _matching.count(spec, self._visible(spec), filters)

    def count_by(
        self, spec: CollectionSpec, column: str, filters: tuple[Filter, ...]
    ) -> dict[Any, int]:
        return _matching.count_by(spec, self._visible(spec), column, filters)

    def explain(self, spec: CollectionSpec, query: Query) -> list[str]:
        return _matching.explain(spec, query)

    def after_fork(self) -> None:
        """In a forked child: the data is the child's own copy from now on;
        a transaction open at the fork stays the parent's; fresh locks."""
        self._write_lock = threading.Lock()
        self._closing = threading.Event()
        self._data_lock = threading.Lock()
        self._new_events = threading.Condition(self._data_lock)
        self._local = threading.local()

    def closing(self) -> None:
        self._closing.set()

    def close(self) -> None:
        with self._data_lock:
            self._rows = {}
            self._events = []

    # -- the outbox ----------------------------------------------------------
    def append_events(self, bodies: Sequence[str]) -> None:
        self._txn().events.extend(bodies)

    def read_events(self, after: int, limit: int) -> list[tuple[int, str]]:
        with self._data_lock:
            start = bisect.bisect_right(self._events, after, key=itemgetter(0))
            return self._events[start : start + limit]

    def unsettled_events(self, after: int) -> bool:
        return False  # read_events returns every committed event

    def wait_events(self, after: int, timeout: float) -> None:
        with self._new_events:
            if self._last_event <= after:
                self._new_events.wait(timeout)

    def prune_events(self, upto: int, keep: int = 0) -> int:
        with self._data_lock:
            cut = max(0, bisect.bisect_right(self._events, upto, key=itemgetter(0)) - keep)
            del self._events[:cut]
            return cut

    def claim(self, name: str) -> Claim | None:
        return self._claims.claim(name)

    # -- the catalog (base.Catalog) --------------------------------------------
    def describe(self) -> dict[str, Any]:
        return {
            "backend": "memory",
            "server": None,
            "location": None,
            "bytes": None,
            "layout": LAYOUT_VERSION,
        }

    def collections(self) -> list[CollectionInfo]:
        """The collections that hold committed rows (ensure_collection is no
        part of a transaction here: an empty collection may be a read's, or a
        transaction's still open); the indexes are those of the spec the rows'
        values were last computed for (ensure_collection)."""
        with self._data_lock:
            counts = {
                name: len(rows) for name, rows in self._rows.items() if rows and not internal(name)
            }
            specs = dict(self._specs)
        return [
            CollectionInfo(specs.get(name, CollectionSpec(name)), rows, None)
            for name, rows in sorted(counts.items())
        ]

    def scan(self, collection: str, after: str | None, limit: int) -> list[tuple[str, int, str]]:
        """The smallest ids after `after` (Python's order of str: code points)."""
        written: dict[str, Row] = {}  # by the calling thread's transaction
        deleted: set[str] = set()
        txn = self._mine()
        if txn is not None:
            for (name, id), row in txn.changes.items():
                if name != collection:
                    continue
                if row is None:
                    deleted.add(id)
                else:
                    written[id] = row
        with self._data_lock:
            committed = self._rows.get(collection, {})
            ids: Iterable[str] = chain(
                (id for id in committed if id not in written and id not in deleted), written
            )
            if after is not None:
                ids = (id for id in ids if id > after)
            page = heapq.nsmallest(max(limit, 0), ids)
            rows = [written[id] if id in written else committed[id] for id in page]
        return [(row[0], row[1], row[2]) for row in rows]

    def load(
        self, spec: CollectionSpec, rows: Sequence[tuple[str, int, str]], *, replace: bool = True
    ) -> None:
        """Outside a transaction: in one of its own. The indexed values are
        those of the collection's spec, as ensure_collection computes them."""
        txn = self._mine()
        if txn is None:
            with atomic(self):
                self.load(spec, rows)
            return
        maintained = self._specs.get(spec.name, spec)
        made = []
        for id, version, body in rows:
            try:
                values = _matching.indexed_values(maintained, body) if maintained.indexes else ()
            except ValueError as exc:
                raise ValidationError(f"{spec.name} {id!r}: the body is not JSON ({exc})") from exc
            made.append(((spec.name, id), (id, version, body, *values)))
        for key, row in made:
            txn.change(key, row)


def _reindex(row: Row, spec: CollectionSpec) -> Row:
    """The row with its indexed values read anew from the body."""
    return tuple(row[:3]) + _matching.indexed_values(spec, row[2])
