"""The PostgreSQL backend's Catalog (see base.Catalog): what a schema holds,
and its rows moved as they are, for statekeep's operating commands.

A collection is a table of the store's schema with the columns id, version
and body, whose name is not one of statekeep's own (_layout.internal: the
outbox, the column registry, subscription checkpoints, write-behind notes). Its
indexed columns are the ones the registry maintains (see _layout), whatever
the models of the day declare. Listing reads the catalogs, the registry and
count(*) of each table (in one snapshot outside a transaction): it creates
nothing and takes no lock but ACCESS SHARE, which no writer of rows waits for
(only a change of a table's columns waits, for as long as its count runs).

`scan` pages by the primary key: `WHERE id > %s ORDER BY id LIMIT %s` in the
id column's own collation (the index's, so the index serves it and each row
comes exactly once). `load` writes rows verbatim, replacing rows of the same
id, and fills every registered column from the bodies with the very
expressions the fill trigger uses (_postgres_sql.filled), stamping the rows
with the registry's stamp; a column registered meanwhile by another process
finds the stamp stale and its trigger fills the row (see _layout).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import psycopg

from ..errors import ConflictError, ValidationError
from . import _layout as layout
from . import _postgres_sql as pgsql
from ._postgres_columns import Columns
from .base import CollectionInfo, CollectionSpec, Index

_MAX_NAME = 63  # bytes: no table has a longer name

# Tables of a schema that are collections (name, total size with indexes and TOAST).
_TABLES = (
    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relkind = 'r' "
    "AND (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 "
    "AND NOT a.attisdropped AND a.attname IN ('id', 'version', 'body')) = 3"
)
_SCHEMA_BYTES = (
    "SELECT current_setting('server_version'), (SELECT sum(pg_total_relation_size(c.oid)) "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = %s AND c.relkind IN ('r', 'm'))"
)
# The rows of one load, sent by binary COPY before they go into the table.
_STAGE = "pg_temp.statekeep_load"
_MAKE_STAGE = (
    'CREATE TEMP TABLE statekeep_load (id text COLLATE "C", version bigint, body jsonb) '
    "ON COMMIT DROP"
)
_COPY_STAGE = f"COPY {_STAGE} (id, version, body) FROM STDIN (FORMAT BINARY)"
_STAGE_TYPES = ["text", "int8", "jsonb"]

Connection = psycopg.Connection[Any]


class PostgresCatalog:
    """Catalog for PostgresBackend, which inherits it (it uses the backend's
    connections, transactions and column work)."""

    schema: str
    _columns: Columns
    _local: threading.local

    if TYPE_CHECKING:  # what the backend class gives the mixin

        def _read(self, doing: str, work: Callable[[Connection], Any]) -> Any: ...
        def _connection(self, doing: str) -> AbstractContextManager[Connection]: ...
        def _txn(self) -> Connection | None: ...
        def _writer(self) -> None: ...
        def _known(self, collection: str) -> bool: ...

    def _table(self, collection: str) -> str:
        return f"{pgsql.quote(self.schema)}.{pgsql.quote(collection)}"

    def describe(self) -> dict[str, Any]:
        def work(conn: Connection) -> dict[str, Any]:
            server, size = conn.execute(_SCHEMA_BYTES, (self.schema,)).fetchone() or (None, None)
            info = conn.info
            return {
                "backend": "postgresql",
                "server": server,
                "location": f"{info.host}:{info.port}/{info.dbname} schema={self.schema}",
                "bytes": None if size is None else int(size),
                "layout": layout.LAYOUT_VERSION,
            }

        result: dict[str, Any] = self._read("describing the database", work)
        return result

    def collections(self) -> list[CollectionInfo]:
        def work(conn: Connection) -> list[CollectionInfo]:
            if self._txn() is not None:  # the caller's transaction: as it sees them
                return self._collections(conn)
            with conn.transaction():  # one snapshot: the list and the counts agree
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return self._collections(conn)

        result: list[CollectionInfo] = self._read("listing collections", work)
        return result

    def _collections(self, conn: Connection) -> list[CollectionInfo]:
        tables = [
            row for row in conn.execute(_TABLES, (self.schema,)) if not layout.internal(row[0])
        ]
        registry = conn.execute(
            f"SELECT collection, name, kind, dflt, ready "
            f"FROM {pgsql.quote(self.schema)}.{layout.REGISTRY}"
        ).fetchall()
        found = []
        for name, size in sorted(tables):
            rows = layout.registered(row[1:] for row in registry if row[0] == name)
            spec = CollectionSpec(name, tuple(sorted((i for i, _ in rows.values()), key=_name)))
            count = conn.execute(f"SELECT count(*) FROM {self._table(name)}").fetchone()
            ready = not spec.indexes or not self._columns.state(conn, spec)[1]
            found.append(CollectionInfo(spec, int(count[0]) if count else 0, size, ready))
        return found

    def scan(self, collection: str, after: str | None, limit: int) -> list[tuple[str, int, str]]:
        if limit <= 0 or len(collection.encode()) > _MAX_NAME:
            return []
        table = self._table(collection)
        sql = scan_sql(table, after is not None)
        params = (limit,) if after is None else (after, limit)

        def work(conn: Connection) -> list[tuple[str, int, str]]:
            if not self._known(collection):
                row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
                if not row or not row[0]:
                    return []
            return [(id, int(version), body) for id, version, body in conn.execute(sql, params)]

        result: list[tuple[str, int, str]] = self._read(f"reading {collection}", work)
        return result

    def load(
        self, spec: CollectionSpec, rows: Sequence[tuple[str, int, str]], *, replace: bool = True
    ) -> None:
        """Binary COPY into a temporary table, then one INSERT ... SELECT ...
        ON CONFLICT (id) DO UPDATE that computes the registered columns (set
        based, not the fill trigger row by row), rows locked in id order.

        Measured (40k rows of ~350 B, random ids, 3 indexed columns: text,
        integer and time;
        PostgreSQL 15 on the same busy 2-CPU host; best and median of 5-7
        interleaved runs), against psql's \\copy of the same rows into the
        empty table (1.00x, 8-18k rows/s): this 0.82-0.86x at 2,000 rows per
        transaction (statekeep import's chunk), 0.89-0.92x at 10,000, 0.68-0.71x
        replacing every row; a binary COPY straight into the table (the trigger
        filling the columns) 0.90-1.14x, but it cannot replace a row, and
        choosing it needs a look-up of the ids first and fails the transaction
        on an id a concurrent writer stores in between; one INSERT ... FROM
        unnest(arrays) 0.60-0.66x. One path, then: it always replaces, and is
        within 10-20% of the fastest."""
        self._writer()
        if not rows:
            return
        if len({row[0] for row in rows}) < len(rows):  # an id twice: the last one stands
            rows = list({row[0]: row for row in rows}.values())
        txn = self._txn()
        if txn is not None:
            written: dict[str, int] = self._local.written
            written[spec.name] = written.get(spec.name, 0) + len(rows)  # see _postgres_analyze
        with self._connection(f"loading {spec.name}") as conn:
            if txn is not None:
                self._load(conn, spec, rows, replace)
                return
            with conn.transaction():
                self._load(conn, spec, rows, replace)

    def _load(
        self,
        conn: Connection,
        spec: CollectionSpec,
        rows: Sequence[tuple[str, int, str]],
        replace: bool,
    ) -> None:
        registry = conn.execute(
            f"SELECT name, kind, dflt, ready FROM {pgsql.quote(self.schema)}.{layout.REGISTRY} "
            "WHERE collection = %s",
            (spec.name,),
        ).fetchall()
        columns = sorted((index for index, _ in layout.registered(registry).values()), key=_name)
        conn.execute(_MAKE_STAGE)
        try:
            with conn.cursor() as cursor, cursor.copy(_COPY_STAGE) as copy:
                copy.set_types(_STAGE_TYPES)
                write_row = copy.write_row
                for row in rows:
                    write_row(row)
        except OverflowError as exc:  # the COPY failed, and with it the transaction
            raise ValidationError(f"{spec.name}: a version does not fit 64 bits") from exc
        try:  # prepare=False: literals escape %
            conn.execute(_merge(self.schema, spec.name, columns, replace), (), prepare=False)
        except psycopg.errors.UniqueViolation as exc:  # replace=False, and a row is there
            raise ConflictError(
                spec.name, _key(exc), "stored already, by another writer since the caller looked"
            ) from exc
        conn.execute(f"DROP TABLE {_STAGE}")


def scan_sql(table: str, after: bool) -> str:
    """A page of rows by id, after the id %s (if after), at most %s of them:
    the primary key's index serves it, in its own collation (an id column
    made by hand in another collation is paged in that one, as consistently)."""
    where = "WHERE id > %s " if after else ""
    return f"SELECT id, version, body FROM {table} {where}ORDER BY id LIMIT %s"


def _name(index: Index) -> str:
    return index.name


def _key(exc: psycopg.errors.UniqueViolation) -> str:
    """The id a unique violation names, if its detail says (Key (id)=(x) ...)."""
    detail = exc.diag.message_detail or ""
    return detail.partition("=(")[2].rpartition(") ")[0] or "?"


def _merge(schema: str, collection: str, columns: Sequence[Index], replace: bool = True) -> str:
    """The staged rows into the table, each registered column filled from its
    body, in id order (two loads over the same rows wait instead of deadlocking)."""
    names = ["id", "version", "body", *(i.name for i in columns), layout.STAMP]
    values = ["id", "version", "body", *(pgsql.filled(schema, i) for i in columns)]
    values.append(str(layout.stamp(columns)))
    quoted = [pgsql.quote(name) for name in names]
    settings = ", ".join(f"{name} = excluded.{name}" for name in quoted[1:])
    return (
        f"INSERT INTO {pgsql.quote(schema)}.{pgsql.quote(collection)} ({', '.join(quoted)}) "
        f"SELECT {', '.join(values)} FROM {_STAGE} ORDER BY id"
        + (f" ON CONFLICT (id) DO UPDATE SET {settings}" if replace else "")
    )
