"""The SQLite backend's Catalog (see base.Catalog): what a database file
holds, and its rows moved as they are, for statekeep's operating commands.

A collection is a table with the columns id, version and body whose name is
not one of statekeep's own or SQLite's (`statekeep_`: the outbox, the column
registry, subscription checkpoints, write-behind notes; `sqlite_`). Its
indexed columns are the ones the registry maintains (see _layout), whatever
the models of the day declare; it is `ready` once each of them is filled
(the registry says so), present and indexed. Listing reads sqlite_master,
the registry, count(*) of each table and, where SQLite has the dbstat
virtual table, the pages of each table and its indexes, all in one read
transaction on a connection of its own: in WAL mode it neither waits for a
writer nor holds one up, sees only what is committed, and creates nothing.

`scan` pages by the primary key (`WHERE id > ? ORDER BY id LIMIT ?`, which
the key's index serves), in SQLite's BINARY collation: by UTF-8 bytes, which
is code point order, Python's order of str. It reads as get() does (the
calling thread's transaction, or what is committed).

`load` runs INSERT OR REPLACE statements of many rows whose values compute
every registered column from the body with the very expressions
ensure_collection fills columns with (_sqlite_sql.filled), stamped with the
registry's stamp: a row is written once, and the fill trigger has nothing to
do. The registry is read in the caller's transaction, which holds the write
lock: no column can be registered in between.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, ValidationError
from ._layout import LAYOUT_VERSION, REGISTRY, STAMP, internal, registered, stamp
from ._sqlite_errors import DRIVER, OR_EMPTY, missing_table, translate
from ._sqlite_sql import filled, index_name, quote
from .base import BASE_COLUMNS, CollectionInfo, CollectionSpec, Index

_TABLES = "SELECT name FROM sqlite_master WHERE type = 'table'"
_REGISTRY = f"SELECT collection, name, kind, dflt, ready FROM {REGISTRY}"
_REGISTERED = f"SELECT name, kind, dflt, ready FROM {REGISTRY} WHERE collection = ?"
_CHUNK = 500  # names per dbstat lookup


class SQLiteCatalog:
    """Catalog for SQLiteBackend, which inherits it (it uses the backend's
    connections and transactions)."""

    location: str | None
    _path: str

    if TYPE_CHECKING:  # what the backend class gives the mixin

        def _read_conn(self) -> sqlite3.Connection: ...
        def _write_conn(self) -> sqlite3.Connection: ...
        def _reader(self) -> tuple[sqlite3.Connection, list[sqlite3.Connection]]: ...
        def _in_transaction(self) -> bool: ...
        def begin(self) -> None: ...
        def commit(self) -> None: ...
        def rollback(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "sqlite",
            "server": sqlite3.sqlite_version,
            "location": self.location,
            "bytes": _file_bytes(self._file()),
            "layout": LAYOUT_VERSION,
        }

    def _file(self) -> str | None:
        """The database's file: its location, or the private file of a
        sqlite://:memory: store (None for a database in memory)."""
        if self.location is not None:
            return self.location
        path = self._path
        if path in ("", ":memory:") or path.startswith("file:"):
            return None
        return path

    def collections(self) -> list[CollectionInfo]:
        conn, idle = self._reader()
        try:
            with DRIVER:
                conn.execute("BEGIN")  # one snapshot: the list and the counts agree
                try:
                    return _collections(conn)
                finally:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
        finally:
            idle.append(conn)

    def scan(self, collection: str, after: str | None, limit: int) -> list[tuple[str, int, str]]:
        if limit <= 0:
            return []
        where, params = ("", [limit]) if after is None else ("WHERE id > ? ", [after, limit])
        sql = f"SELECT id, version, body FROM {quote(collection)} {where}ORDER BY id LIMIT ?"
        with OR_EMPTY:
            found: list[tuple[str, int, str]] = self._read_conn().execute(sql, params).fetchall()
            return found
        return []

    def pages(self, collection: str, size: int) -> Iterator[list[tuple[str, int, str]]]:
        """Every row (id, version, body), `size` at a time, in the table's own
        order: one statement, so one snapshot, reading the table's pages in
        turn. By id (scan), random ids cost a lookup a row: 100k rows of
        uuid4 ids read 4.7x slower that way than in rowid order."""
        conn = self._read_conn()
        with OR_EMPTY:
            cursor = conn.execute(f"SELECT id, version, body FROM {quote(collection)}")
            try:
                while rows := cursor.fetchmany(size):
                    yield rows
            finally:
                cursor.close()

    def load(
        self, spec: CollectionSpec, rows: Sequence[tuple[str, int, str]], *, replace: bool = True
    ) -> None:
        """Outside a transaction: in one of its own."""
        if not self._in_transaction():
            self.begin()
            try:
                self.load(spec, rows, replace=replace)
            except BaseException:
                self.rollback()
                raise
            self.commit()
            return
        conn = self._write_conn()
        try:
            try:
                maintained = registered(conn.execute(_REGISTERED, (spec.name,)).fetchall())
            except sqlite3.OperationalError as exc:
                if not missing_table(exc):
                    raise
                maintained = {}  # no registry yet: no indexed columns
            columns = tuple(sorted((index for index, _ in maintained.values()), key=_name))
            whole = len(rows) - len(rows) % ROWS_PER_INSERT
            if whole:
                sql = _load_sql(spec.name, columns, ROWS_PER_INSERT)
                for start in range(0, whole, ROWS_PER_INSERT):
                    conn.execute(
                        sql, list(chain.from_iterable(rows[start : start + ROWS_PER_INSERT]))
                    )
            if whole < len(rows):
                conn.executemany(_load_sql(spec.name, columns, 1), rows[whole:])
        except sqlite3.Error as exc:
            raise translate(exc) from exc
        except OverflowError as exc:
            raise ValidationError(f"{spec.name}: a version does not fit SQLite's 64 bits") from exc


# Rows per INSERT statement of a load (the rest of a load, fewer, go one per
# statement by executemany). Measured (CPU time, 30k rows of ~200-byte bodies
# in loads of 2000, one transaction, SQLite 3.40; raw: sqlite3's executemany
# of a plain INSERT of the same rows into a table of the three columns): no
# indexed column 1.3x raw in statements of 250 rows, 1.0x one row a
# statement; one text column 0.5x raw either way (0.67x of the driver inserting
# the same rows, their values computed beforehand, under the same index);
# five columns, one a time, 0.17x raw (0.56x of the driver with the same
# indexes) in statements of 250 rows, 0.07x one row a statement: each
# statement run pays for the table's fill trigger although its WHEN is false
# (the rows carry the registry's stamp). The indexes' upkeep is most of what
# is left; computing the values in Python was slower than json_extract.
ROWS_PER_INSERT = 250


@functools.lru_cache(maxsize=64)
def _load_sql(collection: str, columns: tuple[Index, ...], count: int) -> str:
    """The INSERT OR REPLACE of `count` rows (id, version, body): numbered
    parameters, three a row, each registered column computed from its body."""
    names = ", ".join(quote(name) for name in (*BASE_COLUMNS, *(i.name for i in columns), STAMP))
    layout = str(stamp(columns))
    values = []
    for row in range(count):
        body = f"?{3 * row + 3}"
        computed = (filled(index, body) for index in columns)
        values.append(f"(?{3 * row + 1}, ?{3 * row + 2}, {body}, {', '.join((*computed, layout))})")
    return f"INSERT OR REPLACE INTO {quote(collection)} ({names}) VALUES {', '.join(values)}"


def _name(index: Index) -> str:
    return index.name


def _collections(conn: sqlite3.Connection) -> list[CollectionInfo]:
    tables = sorted(name for (name,) in conn.execute(_TABLES) if not internal(name))
    try:
        registry = conn.execute(_REGISTRY).fetchall()
    except sqlite3.OperationalError as exc:
        if not missing_table(exc):
            raise
        registry = []
    found = []
    sizes: bool = True  # whether dbstat answers
    for table in tables:
        quoted = quote(table)
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({quoted})")}
        if not set(BASE_COLUMNS) <= columns:
            continue  # a table of someone else's
        indexes = {row[1] for row in conn.execute(f"PRAGMA index_list({quoted})")}
        maintained = registered(row[1:] for row in registry if row[0] == table)
        spec = CollectionSpec(
            table, tuple(sorted((index for index, _ in maintained.values()), key=_name))
        )
        ready = all(
            filled_in and index.name in columns and index_name(spec, index) in indexes
            for index, filled_in in maintained.values()
        ) and (not maintained or STAMP in columns)
        count = int(conn.execute(f"SELECT count(*) FROM {quoted}").fetchone()[0])
        size = _bytes(conn, [table, *sorted(indexes)]) if sizes else None
        sizes = size is not None
        found.append(CollectionInfo(spec, count, size, ready))
    return found


def _bytes(conn: sqlite3.Connection, names: list[str]) -> int | None:
    """The pages of these tables and indexes, in bytes; None without dbstat
    (a build of SQLite without SQLITE_ENABLE_DBSTAT_VTAB)."""
    total = 0
    for start in range(0, len(names), _CHUNK):
        chunk = names[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        sql = f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({marks}) AND aggregate = TRUE"
        try:
            row = conn.execute(sql, chunk).fetchone()
        except sqlite3.OperationalError as exc:
            if missing_table(exc) or "no such module" in str(exc):
                return None
            raise
        total += int(row[0] or 0)
    return total


def _file_bytes(path: str | None) -> int | None:
    """The size of a database file with its WAL; None where there is no file."""
    if path is None:
        return None
    try:
        size = os.path.getsize(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BackendError(f"cannot read the size of {path}: {exc}") from exc
    with contextlib.suppress(OSError):  # no WAL (checkpointed and removed), or not readable
        size += os.path.getsize(f"{path}-wal")
    return size
