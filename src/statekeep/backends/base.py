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
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Scalar = None | bool | int | float | str
Row = tuple[Any, ...]
IndexKind = Literal["text", "integer", "real"]

# Columns every collection has; indexed fields get a column of their own name.
BASE_COLUMNS = ("id", "version", "body")


@dataclass(frozen=True, slots=True)
class Index:
    """A field materialised as a column with an index."""

    name: str
    kind: IndexKind


@dataclass(frozen=True, slots=True)
class CollectionSpec:
    name: str
    indexes: tuple[Index, ...] = ()

    @property
    def columns(self) -> tuple[str, ...]:
        return BASE_COLUMNS + tuple(index.name for index in self.indexes)


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

    `column` is true when the field is a column (id, version or an indexed
    field); otherwise the backend reads it from the JSON body. EQ and NE are
    null-safe (None equals None); the other comparisons never match None.
    IN and NOT_IN take a tuple of scalars.
    """

    field: str
    op: Op
    value: Any
    column: bool


@dataclass(frozen=True, slots=True)
class Order:
    field: str
    descending: bool
    column: bool


@dataclass(frozen=True, slots=True)
class Query:
    """Filters are ANDed. Results are ordered by `order`, then by id."""

    filters: tuple[Filter, ...] = ()
    order: tuple[Order, ...] = ()
    limit: int | None = None
    offset: int = 0


class Backend(Protocol):
    def ensure_collection(self, spec: CollectionSpec) -> None:
        """Create the collection, or add the columns of new indexed fields."""

    def begin(self) -> None: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def savepoint(self, name: str) -> None: ...
    def release(self, name: str) -> None: ...
    def rollback_to(self, name: str) -> None: ...

    def put(self, spec: CollectionSpec, rows: Sequence[Row]) -> None:
        """Store rows whose stored version is version - 1; else ConflictError."""

    def delete(self, collection: str, id: str, version: int | None) -> None:
        """Remove a row (NotFoundError if absent; ConflictError if version differs)."""

    def get(self, collection: str, id: str) -> str | None:
        """The body of one row, or None."""

    def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, str]: ...

    def select(self, spec: CollectionSpec, query: Query) -> Iterator[str]:
        """The bodies of the matching rows, lazily, in order."""

    def count(self, spec: CollectionSpec, filters: tuple[Filter, ...]) -> int: ...

    def close(self) -> None: ...


def conflict_detail(stored: int, expected: int) -> str:
    """Why a write expecting `expected` met `stored` (0: no row)."""
    if stored == 0:
        return f"expected stored version {expected}, but nothing is stored (deleted?)"
    if expected == 0:
        return f"already stored at version {stored}"
    return f"stale version {expected}, stored version is {stored}"
