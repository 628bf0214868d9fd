"""The Backend protocol: what every storage engine implements.

A backend moves rows. It knows nothing of pydantic, events or queues; meaning
(validation, versions, coalescing) lives above it, once. A row is a flat tuple

    (id, version, body, *indexed values in the order of spec.indexes)

where body is the entity as JSON text and the indexed values are JSON-mode
scalars (None, bool, int, float, str). Flat tuples go straight into a driver's
executemany without repacking, which is why a row is not a dataclass.

Writes are checked, not blind: `put` stores a row only where the stored version
is exactly `version - 1` (an absent row counts as version 0) and raises
ConflictError otherwise. Every write runs between `begin` and `commit` (or
`rollback`) of the calling thread's transaction; `savepoint`, `release` and
`rollback_to` nest inside it. Transactions are per thread.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from ._claims import Claim

Scalar = None | bool | int | float | str
Row = tuple[Any, ...]
IndexKind = Literal["text", "integer", "real", "time", "any"]

# Columns every collection has; indexed fields get a column of their own name.
BASE_COLUMNS = ("id", "version", "body")

# Rows per save_many chunk, unless a backend does better with another size.
CHUNK_ROWS = 1000


@dataclass(frozen=True, slots=True)
class Index:
    """A field materialised as a column with an index.

    kind "time" holds time keys (see time_key); `default` is the value of rows
    whose body lacks the field (written before the field existed)."""

    name: str
    kind: IndexKind
    default: Scalar = None


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    name: str
    indexes: tuple[Index, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return BASE_COLUMNS + tuple(index.name for index in self.indexes)


@dataclass(frozen=True, slots=True)
class Field:
    """A field as a query sees it.

    column: the field is a column (id, version or an indexed field); otherwise
    the backend reads it from the JSON body. time: it holds datetimes, compared
    by their time keys. default: its value where a body lacks it."""

    name: str
    column: bool
    time: bool = False
    default: Scalar = None


class Op(enum.Enum):
    EQ = "=="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    IN = "in"
    NOT_IN = "not in"
    PREFIX = "startswith"


@dataclass(frozen=True, slots=True)
class Filter:
    """One condition on a field.

    EQ and NE are null-safe (None equals None); the other comparisons never
    match None. IN and NOT_IN take a tuple of scalars. Values of time fields
    are time keys.
    """

    field: Field
    op: Op
    value: Any


@dataclass(frozen=True, slots=True)
class Order:
    field: Field
    descending: bool


@dataclass(frozen=True, slots=True)
class Query:
    """Filters are ANDed. Results are ordered by `order`, then by id."""

    filters: tuple[Filter, ...] = ()
    order: tuple[Order, ...] = ()
    limit: int | None = None
    offset: int = 0


def time_key_of(moment: datetime) -> str:
    """A datetime as text whose order is time order: ISO 8601 with
    microseconds, aware ones in UTC with a Z, naive ones as they are."""
    if moment.tzinfo is None:
        return moment.isoformat(timespec="microseconds")
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def time_key(value: Any) -> Any:
    """The time key of a datetime's JSON text; anything else as it is."""
    if not isinstance(value, str):
        return value
    try:
        return time_key_of(datetime.fromisoformat(value))
    except (ValueError, OverflowError):  # not a time; or one whose UTC is beyond year 9999 or 1
        return value


def prefix_range(prefix: str) -> tuple[str, str | None]:
    """The text range [lower, upper) that holds exactly the texts starting
    with prefix (upper None: no bound), so that an index can serve it."""
    stem = prefix.rstrip("\U0010ffff")
    if not stem:  # every text starts with it
        return prefix, None
    following = ord(stem[-1]) + 1
    if 0xD800 <= following <= 0xDFFF:  # no text holds a lone surrogate
        following = 0xE000
    return prefix, stem[:-1] + chr(following)


class WouldWait(Exception):  # noqa: N818 - a signal between layers, never a user's error
    """get_now() cannot answer without waiting (for a lock, the disk, the network)."""


class ReadsNow(Protocol):
    """What a backend may offer beyond Backend, for statekeep.aio: a point
    read that waits for nothing, so that it may run on an event loop's
    thread. It raises WouldWait where get() would wait (a lock; a collection
    not yet checked with ensure_collection), and answers as get() does
    outside any transaction (only what is committed)."""

    def get_now(self, spec: CollectionSpec, id: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class CollectionInfo:
    """A collection as the database holds it (Catalog.collections).

    spec: its name and the indexed columns the database maintains for it
    (registered, whatever the models of the day declare); rows: how many;
    bytes: its size on disk with its indexes (None where the backend cannot
    tell); ready: whether every indexed column is made, filled and indexed
    (False while a new column is still being filled)."""

    spec: CollectionSpec
    rows: int
    bytes: int | None
    ready: bool = True


class Catalog(Protocol):
    """What a backend offers to operate it (statekeep.ops: inspect, export,
    import, copy), beside Backend: it lists what the database holds and moves
    rows with their versions as they are, without any entity class.

    Rows here are (id, version, body). `scan` pages through a collection by
    id (keyset: bounded memory, any size), in the backend's own id order,
    which is stable but need not be the same on two backends. `load` writes
    rows verbatim, versions included: no version check and no events, in the
    calling thread's transaction (the caller begins and commits it, after
    ensure_collection); each indexed column is computed from the body as the
    backend fills columns for rows other writers stored."""

    def describe(self) -> dict[str, Any]:
        """What the database is: {"backend": "sqlite" | "postgresql" | "files" |
        "memory", "server": its engine's version or None, "location": a path or
        host/db without credentials or None, "bytes": size on disk or None,
        "layout": the format version of statekeep's own tables}."""

    def collections(self) -> list[CollectionInfo]:
        """Every collection the database holds, by name (not statekeep's own
        tables: outbox, column registry, checkpoints), read as committed."""

    def scan(self, collection: str, after: str | None, limit: int) -> list[tuple[str, int, str]]:
        """Up to `limit` rows (id, version, body) whose id comes after `after`
        (None: from the first), in id order; [] past the last or for a
        collection that does not exist."""

    # Optional: pages(collection, size) -> Iterator[list[(id, version, body)]]:
    # every row in the backend's own order, from one snapshot, where that reads
    # faster than scan's pages by id (SQLite: rowid order). ops.export uses it.

    def load(
        self, spec: CollectionSpec, rows: Sequence[tuple[str, int, str]], *, replace: bool = True
    ) -> None:
        """Stores rows as they are (inserting, or replacing the row of the same
        id), in the calling thread's transaction. replace=False: a row whose id
        is stored is a ConflictError instead, even one another process stored
        since the caller looked (a backend whose writers all queue for one
        lock, as SQLite's, memory's and files', has none such to meet)."""


class Backend(Protocol):
    # A file-system path that auxiliary files (the write-behind journal) may
    # live beside, or None for a database that does not outlive its process.
    location: str | None

    # An embedded database in a file on this host (SQLite): a commit is on
    # this host's disk, so write-behind's durability "auto" means "commit".
    embedded: bool

    # Rows per save_many chunk that this backend does best with: the default
    # chunk_size of Store.save_many (CHUNK_ROWS unless the backend knows better).
    chunk_rows: int

    def ensure_collection(self, spec: CollectionSpec, *, create: bool = True) -> None:
        """Create the collection, or add the columns of new indexed fields.

        Reads call it with create=False: a missing collection may stay missing
        (reads find it empty), so that a read never waits for a writer."""

    def begin(self) -> None:
        """Start the calling thread's transaction (BackendError if it has one)."""

    def commit(self) -> None:
        """Commit, or roll back and raise; either way the transaction is over."""

    def rollback(self) -> None: ...
    def savepoint(self, name: str) -> None: ...
    def release(self, name: str) -> None: ...
    def rollback_to(self, name: str) -> None: ...

    def put(self, spec: CollectionSpec, rows: Sequence[Row]) -> None:
        """Store rows whose stored version is version - 1; else ConflictError.

        After an exception from a put of several rows the transaction may be
        unusable (PostgreSQL aborts it): the caller rolls back, to a savepoint
        or all of it."""

    def delete(self, collection: str, id: str, version: int | None) -> None:
        """Remove a row (NotFoundError if absent; ConflictError if version differs)."""

    def versions(self, collection: str, ids: Sequence[str]) -> dict[str, int]:
        """The stored versions of the rows among ids (as this transaction sees them)."""

    def get(self, collection: str, id: str) -> str | None:
        """The body of one row, or None."""

    def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, str]: ...

    def select(self, spec: CollectionSpec, query: Query) -> Iterator[str]:
        """The bodies of the matching rows, lazily, in order."""

    def count(self, spec: CollectionSpec, filters: tuple[Filter, ...]) -> int: ...

    def count_by(
        self, spec: CollectionSpec, column: str, filters: tuple[Filter, ...]
    ) -> dict[Any, int]:
        """How many matching rows hold each value of an indexed column: one
        grouped query. (Optional: the store counts value by value without it.)"""

    def explain(self, spec: CollectionSpec, query: Query) -> list[str]:
        """How a select of the query would run, a line per step: the database's
        query plan (what an index lookup looks like), or for a backend that
        holds its rows in Python, that it reads and filters every row."""

    def close(self) -> None: ...

    def closing(self) -> None:
        """The store's close() has begun: writers still waiting for the write
        lock give up with StoreClosedError (they had not started)."""

    def after_fork(self) -> None:
        """Called in a forked child: leave the parent's connections, locks and
        transactions to the parent (never use or close them) and start afresh."""

    # -- the outbox: events written with the data, read back in commit order --
    def append_events(self, bodies: Sequence[str]) -> None:
        """Adds event bodies (JSON text) to the outbox, in this thread's transaction."""

    def read_events(self, after: int, limit: int) -> list[tuple[int, str]]:
        """Committed events after position `after`, as (position, body), in commit
        order: an event read here never has a later one committed before it."""

    def unsettled_events(self, after: int) -> bool:
        """Whether events committed after `after` exist that read_events does not
        return yet (PostgreSQL: they wait for transactions still adding events
        to end); False where read_events returns every committed event."""

    def wait_events(self, after: int, timeout: float) -> None:
        """Returns once events after `after` may have been committed, or at timeout."""

    def prune_events(self, upto: int, keep: int = 0) -> int:
        """Deletes the events at positions <= upto but the last `keep` of them;
        returns how many."""

    def claim(self, name: str) -> Claim | None:
        """Claims a durable subscription's name across processes until the claim
        is released or its holder dies; None if another consumer holds it."""


def conflict_detail(stored: int, expected: int) -> str:
    """Why a write expecting `expected` met `stored` (0: no row)."""
    if stored == 0:
        return f"expected stored version {expected}, but nothing is stored (deleted?)"
    if expected == 0:
        return f"already stored at version {stored}"
    return f"stale version {expected}, stored version is {stored}"


@contextmanager
def atomic(backend: Backend) -> Iterator[None]:
    """`with atomic(backend):` — begin; commit when the block ends; roll back
    (and re-raise) when it raises anything, KeyboardInterrupt included.

    The one begin / rollback-on-error / commit of statekeep: the store's
    transactions, write-behind batches and durable checkpoints go through it
    (with their outbox writes inside the block, before the commit)."""
    backend.begin()
    try:
        yield
    except BaseException:
        backend.rollback()
        raise
    backend.commit()
