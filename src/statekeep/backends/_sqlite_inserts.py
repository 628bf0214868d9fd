"""How the SQLite backend inserts a batch of new rows: in the shape that
measures fastest for its ids, all or nothing (benchmarks/save_many.py).

- Ids that ascend from beyond the greatest stored one (statekeep's own,
  made in time order) append to the right edge of the id index: multi-row
  INSERTs of up to 250 rows step once for all of them, some 20% faster than
  executemany.
- Ids scattered over the index (random UUIDs) go in one executemany, some
  35% faster there than multi-row INSERTs: a statement of many rows keeps a
  statement journal of every page it touches, and scattered rows touch a
  page each.

A batch is all or nothing, as one statement would be: a failure part way
deletes the rows it did insert (those with rowids above the greatest one
before it; the write lock is this transaction's, so no one else's are
there). A savepoint would do the same at the statement journal's cost. When
the batch could reach SQLite's last rowid, new rowids may be drawn at random
and the batch goes in a savepoint instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from itertools import chain, islice
from operator import lt

from ..errors import ConflictError
from ._sqlite_rows import by_id
from ._sqlite_sql import Statements
from .base import CollectionSpec, Row

_LAST_ROWID = 2**63 - 1


def insert(
    conn: sqlite3.Connection, spec: CollectionSpec, statements: Statements, rows: Sequence[Row]
) -> None:
    """Inserts rows (new ones, version 1); ConflictError, inserting none of
    them, if an id is stored already or comes twice."""
    if len(rows) == 1:
        try:
            conn.execute(statements.insert, rows[0])
        except sqlite3.IntegrityError as exc:
            conflict = _conflict(conn, spec, rows)
            if conflict is None:
                raise  # put's boundary translates it
            raise conflict from exc
        return
    before = conn.execute(statements.greatest_rowid).fetchone()[0] or 0
    # near SQLite's last rowid, new rowids may be drawn at random, not above before
    guarded = before > _LAST_ROWID - len(rows)
    if guarded:
        conn.execute("SAVEPOINT statekeep_insert")
    try:
        if _at_right_edge(conn, statements, rows):
            _multi_row(conn, statements, rows)
        else:
            conn.executemany(statements.insert, rows)
    except BaseException as exc:
        if conn.in_transaction:  # else SQLite rolled it all back itself (disk full, I/O)
            _undo(conn, statements, before, guarded)
        if isinstance(exc, sqlite3.IntegrityError):
            conflict = _conflict(conn, spec, rows)
            if conflict is not None:
                raise conflict from exc
        raise  # put's boundary translates it
    if guarded:
        conn.execute("RELEASE statekeep_insert")


def _undo(conn: sqlite3.Connection, statements: Statements, before: int, guarded: bool) -> None:
    """Takes a failed batch's rows out again. If that fails too, the
    transaction is rolled back whole: it must not commit half a batch."""
    try:
        if guarded:
            conn.execute("ROLLBACK TO statekeep_insert")
            conn.execute("RELEASE statekeep_insert")
        else:
            conn.execute(statements.delete_above, (before,))
    except sqlite3.Error:
        conn.execute("ROLLBACK")
        raise


def _multi_row(conn: sqlite3.Connection, statements: Statements, rows: Sequence[Row]) -> None:
    step = statements.rows_per_insert
    for start in range(0, len(rows), step):
        part = rows[start : start + step]
        if len(part) == 1:
            conn.execute(statements.insert, part[0])
        else:
            conn.execute(statements.insert_many(len(part)), list(chain(*part)))


def _at_right_edge(conn: sqlite3.Connection, statements: Statements, rows: Sequence[Row]) -> bool:
    """Do the rows' ids ascend, from beyond the greatest stored id?"""
    ids = [row[0] for row in rows]
    if not all(map(lt, ids, islice(ids, 1, None))):
        return False
    greatest = conn.execute(statements.greatest_id).fetchone()[0]
    return greatest is None or ids[0] > greatest


def _conflict(
    conn: sqlite3.Connection, spec: CollectionSpec, rows: Sequence[Row]
) -> ConflictError | None:
    """The ConflictError for the first row that cannot be inserted (with the
    batch's own rows gone again): stored already, or twice in the batch."""
    stored = by_id(conn, "version", spec.name, [row[0] for row in rows])
    seen: set[str] = set()
    for row in rows:
        if row[0] in stored:
            return ConflictError(spec.name, row[0], f"already stored at version {stored[row[0]]}")
        if row[0] in seen:
            return ConflictError(spec.name, row[0], "already stored at version 1")
        seen.add(row[0])
    return None
