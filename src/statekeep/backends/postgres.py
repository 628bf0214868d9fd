"""The PostgreSQL backend: a table per collection in a schema, psycopg 3 and a pool.

A table has the columns id (text, primary key), version, body (jsonb) and one
column per indexed field, each with an index of its own. Several processes,
on several machines, may use one database: versions are checked by the
statements themselves (`UPDATE ... WHERE version = ...`, `INSERT ... ON
CONFLICT DO NOTHING`), so PostgreSQL's row locks decide who wins and the
loser gets a ConflictError.

Each thread's transaction holds a connection of the pool from begin to
commit; reads outside a transaction borrow one per call (and a lazy select
for as long as it is iterated, reading a snapshot). Every call has a time
limit: `connect_timeout` to connect, `timeout` to get a connection of the pool
and to wait for a row lock, `statement_timeout` for a statement. A lost
connection, a server that is down or restarting, a lock or pool wait that
times out: each raises TransientBackendError (the write-behind queue retries
those), and the pool reconnects by itself when the server is back.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from operator import itemgetter
from typing import Any

import psycopg
from psycopg_pool import PoolClosed, PoolTimeout

from ..errors import (
    BackendError,
    ConflictError,
    NotFoundError,
    StatekeepError,
    TransactionError,
    TransientBackendError,
)
from ..flow import Retry
from . import _postgres_sql as pgsql
from ._claims import Claim
from ._owner import ANOTHER_TASK, current_task, second_transaction
from ._parse import redacted
from ._postgres_analyze import Analyzer
from ._postgres_catalog import PostgresCatalog
from ._postgres_columns import Columns, deadlock_retry
from ._postgres_copy import OpenCopy
from ._postgres_errors import lost, open_failed, translate
from ._postgres_options import connection_settings, location
from ._postgres_outbox import Outbox
from ._postgres_pool import Connections
from ._postgres_rows import converter
from ._postgres_sessions import Sessions
from ._postgres_writes import put_one, stored_version, taken_id, update_many
from .base import CollectionSpec, Filter, Query, Row, conflict_detail

_FETCH = 2000  # rows per round trip of a lazy select


class _Local(threading.local):
    """A thread's transaction: its connection (None outside one), its open
    COPY, the tables it made. Defaults on the class: reading one this thread
    never set is a lookup, not an AttributeError caught (1 us, a get's worth)."""

    conn: psycopg.Connection[Any] | None = None
    copy: OpenCopy | None = None
    pending: dict[str, CollectionSpec] | None = None


class PostgresBackend(PostgresCatalog):  # describe, collections, scan, load
    # rows per save_many chunk: each chunk is one COPY, whose fixed cost (a
    # round trip, and the server finishing the chunk before the next is
    # serialised) is paid per chunk; measured 48k/s at 1,000 and 66k/s at 10,000
    chunk_rows = 10_000

    def __init__(
        self,
        url: str,
        *,
        schema: str = "public",
        timeout: float = 5.0,
        connect_timeout: float = 5.0,
        statement_timeout: float = 30.0,
        pool_min: int = 1,
        pool_max: int = 10,
        **libpq: str,
    ) -> None:
        self.schema = schema
        self.pool_max = pool_max  # transactions at once (statekeep.aio caps its blocks below it)
        self._timeout = timeout
        self.location: str | None = location(url, schema)
        self.embedded = False
        kwargs = connection_settings(
            schema, timeout, connect_timeout, statement_timeout, pool_min, pool_max, libpq
        )
        self._connections = Connections(
            url.split("?", 1)[0], kwargs, size=(pool_min, pool_max), timeout=timeout
        )
        self._local = _Local()
        self._lock = threading.Lock()
        self._in_use: dict[int, psycopg.Connection[Any]] = {}  # by thread: open transactions
        self._tables: dict[str, CollectionSpec] = {}  # ensured, committed
        # every spec ensured: two classes of one collection whose columns differ
        # (a projection with another default) must not rebuild them by turns
        self._ensured_specs: set[CollectionSpec] = set()
        self._exists: set[str] = set()  # tables known to exist
        self._statements: dict[str, tuple[CollectionSpec, pgsql.Statements]] = {}
        self._columns = Columns(schema)  # indexed columns made, filled and indexed
        self._get_sql: dict[str, str] = {}
        self._analyzer = Analyzer()  # ANALYZE after bulk loads: see _postgres_analyze
        self._closed = False
        self._outbox = Outbox(schema)
        # a read, or a BEGIN, that met a dead connection runs once more on another
        self._read_again = Retry(attempts=2, backoff=None, when=self._dead_outside)
        self._begin_again = Retry(
            attempts=2,
            backoff=None,
            when=lambda exc: isinstance(exc, psycopg.Error) and lost(exc),
            on_retry=lambda exc, attempt: self._connections.lost(),
        )
        self._channel = self._outbox.channel
        self._sessions = Sessions(lambda: self._connections.connect(), schema, self._channel)
        try:  # one connection first: it fails at once, saying why
            conn = self._connections.connect()
        except psycopg.Error as exc:
            raise open_failed(exc, f"cannot connect to PostgreSQL at {redacted(url)}") from exc
        try:
            with conn.transaction():
                self._setup_schema(conn)
        except psycopg.Error as exc:
            raise open_failed(exc, f"cannot set up schema {schema} at {redacted(url)}") from exc
        finally:
            conn.close()
        try:
            self._connections.open(max(timeout, connect_timeout))
        except PoolTimeout as exc:
            self._connections.close()
            doing = f"PostgreSQL at {redacted(url)}: the pool made no connection in time"
            raise open_failed(exc, doing) from exc

    @property
    def _listeners(self) -> list[psycopg.Connection[Any]]:
        """The connections kept outside the pool, open or not (tests count them)."""
        return self._sessions.kept

    def _setup_schema(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"statekeep:{self.schema}",))
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {pgsql.quote(self.schema)}")
        conn.execute(pgsql.TIME_FUNCTION.format(schema=pgsql.quote(self.schema)))
        self._outbox.setup(conn)
        conn.execute(pgsql.REGISTRY_TABLE.format(schema=pgsql.quote(self.schema)))

    # -- connections ---------------------------------------------------------
    def _txn(self) -> psycopg.Connection[Any] | None:
        """The connection of the calling task's transaction (None outside one:
        another asyncio task's transaction on this thread is not this task's)."""
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.task is not current_task():
            return None
        return conn

    def _writer(self) -> None:
        """TransactionError if another asyncio task has a transaction open on this thread."""
        if getattr(self._local, "conn", None) is not None and self._local.task is not (
            current_task()
        ):
            raise TransactionError(ANOTHER_TASK)

    @contextmanager
    def _connection(self, doing: str) -> Iterator[psycopg.Connection[Any]]:
        """The thread's transaction connection, or one borrowed from the pool."""
        conn = self._txn()
        if conn is not None:
            self._finish_copy()  # nothing else can run while a COPY is open
            try:
                yield conn
            except (psycopg.Error, UnicodeError) as exc:
                raise translate(exc, doing) from exc
            return
        with self._connections.borrowed(doing) as conn:
            yield conn

    def _connection_outside(self, doing: str) -> AbstractContextManager[psycopg.Connection[Any]]:
        """A connection of the pool even if this thread has a transaction open."""
        return self._connections.borrowed(doing)

    def _read(self, doing: str, work: Callable[[psycopg.Connection[Any]], Any]) -> Any:
        """Runs a read; outside a transaction, once more on a fresh connection
        if the first one turns out to be dead (a read can safely run twice)."""

        def read() -> Any:
            with self._connection(doing) as conn:
                return work(conn)

        return self._read_again.call(read)

    def _dead_outside(self, exc: BaseException) -> bool:
        """Whether a read failed on a dead connection, outside a transaction."""
        return (
            isinstance(exc, TransientBackendError)
            and self._txn() is None
            and lost(exc.__cause__ or exc)
        )

    def closing(self) -> None:
        """Nothing to do: writers do not queue on a lock here (a row lock is
        waited for in the server, at most `timeout`)."""

    def after_fork(self) -> None:
        """In a forked child: the parent's pool, connections and transactions
        stay the parent's (set aside, never used or closed: a child that
        wrote to them would garble the parent's sessions); the child gets a
        pool of its own, opened at its first use, and fresh locks."""
        sessions = self._sessions.after_fork()
        _INHERITED.append((self._connections, self._in_use, sessions, self._local))
        self._connections = self._connections.fresh()
        self._local = _Local()
        self._lock = threading.Lock()
        self._in_use = {}

    def close(self) -> None:
        self._closed = True
        with self._lock:
            in_use, self._in_use = list(self._in_use.values()), {}
        for conn in in_use:  # their transactions end uncommitted
            conn.close()
        self._sessions.close()
        self._connections.close()

    # -- collections ---------------------------------------------------------
    def _sql(self, spec: CollectionSpec) -> pgsql.Statements:
        cached = self._statements.get(spec.name)
        if cached is not None and cached[0] is spec:
            return cached[1]
        statements = pgsql.Statements(self.schema, spec)
        self._statements[spec.name] = (spec, statements)
        return statements

    def ensure_collection(self, spec: CollectionSpec, *, create: bool = True) -> None:
        if self._tables.get(spec.name) is spec or spec in self._ensured_specs:
            return
        txn = self._txn()
        if txn is not None and self._local.pending.get(spec.name) is spec:
            return
        pgsql.checked_name(spec.name, "a collection name")
        missing, to_do = self._read(
            "looking up a table", lambda conn: self._columns.state(conn, spec)
        )
        if missing and not create:
            return  # reads treat a missing table as empty
        if not missing and txn is None:
            self._exists.add(spec.name)
        if missing or to_do:
            self._writer()  # not behind another task's transaction, which may hold the table
            if txn is not None:  # all in the caller's transaction: others see it at commit
                with self._connection("adding a collection's columns") as conn:
                    if self._columns.build(conn, spec):
                        self._columns.fill(conn, spec, concurrently=False)
            else:
                self._build_and_fill(spec)
        if txn is not None:  # known to others only once committed
            self._local.pending[spec.name] = spec
        else:
            self._tables[spec.name] = spec
            self._ensured_specs.add(spec)
            self._exists.add(spec.name)

    def _build_and_fill(self, spec: CollectionSpec) -> None:
        """_build, then (a large table) _fill, each in transactions of their own.
        Once more after a deadlock: a concurrent index build waits for every
        older transaction, and one of another version adding its own column
        waits for the index build's lock on the table; PostgreSQL ends one of
        them, and nothing is left half done that a second attempt does not
        finish (an index cut short is built again)."""

        def build_and_fill() -> None:
            with self._connection("adding a collection's columns") as conn:
                with conn.transaction():
                    large = self._columns.build(conn, spec)
                if large:
                    self._columns.fill(conn, spec, concurrently=True)

        deadlock_retry(spec.name).call(build_and_fill)

    def _known(self, collection: str) -> bool:
        """Does the table exist (as this thread sees it)? Reads of a missing one find nothing."""
        if collection in self._exists:
            return True
        if self._txn() is None:
            return False
        pending: dict[str, CollectionSpec] | None = getattr(self._local, "pending", None)
        return pending is not None and collection in pending

    # -- transactions --------------------------------------------------------
    def begin(self) -> None:
        if getattr(self._local, "conn", None) is not None:
            raise second_transaction(self._local.task)
        try:  # nothing ran on a connection found dead: a fresh one may work
            conn, pooled = self._begin_again.call(self._begin_on_a_connection)
        except psycopg.Error as exc:
            raise translate(exc, "starting a transaction") from exc
        self._local.conn = conn
        self._local.task = current_task()
        self._local.pooled = pooled
        self._local.pending = {}
        self._local.written = {}  # rows put, by table
        with self._lock:
            self._in_use[threading.get_ident()] = conn

    def _begin_on_a_connection(self) -> tuple[psycopg.Connection[Any], bool]:
        try:
            conn, pooled = self._connections.borrow()
        except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
            raise translate(exc, "starting a transaction") from exc
        try:
            conn.execute("BEGIN")
        except BaseException:
            self._connections.give_back(conn, pooled)
            raise
        return conn, pooled

    def _end(self, statement: str) -> None:
        conn = self._txn()
        if conn is None:
            raise BackendError("no transaction is open on this thread")
        if statement == "COMMIT":
            try:
                self._finish_copy()
            except BaseException:
                self._end("ROLLBACK")
                raise
        else:
            self._abandon_copy()
        self._local.conn = None
        pending, self._local.pending = self._local.pending, {}
        written, self._local.written = self._local.written, {}
        with self._lock:
            owned = self._in_use.pop(threading.get_ident(), None) is conn
        try:
            if owned and not conn.closed:
                conn.execute(statement)
        except psycopg.Error as exc:
            if statement == "COMMIT":
                raise translate(exc, "committing") from exc
        finally:
            if owned:
                self._connections.give_back(conn, self._local.pooled)
        if statement == "COMMIT":
            if not owned:
                raise BackendError("the store was closed before the transaction could commit")
            self._tables.update(pending)
            self._ensured_specs.update(pending.values())
            self._exists.update(pending)
            self._analyzer.after_commit(
                written, self.schema, self._tables, self._connection_outside
            )

    def commit(self) -> None:
        self._end("COMMIT")

    def rollback(self) -> None:
        self._end("ROLLBACK")

    def _execute(self, statement: str, doing: str) -> None:
        self._writer()
        with self._connection(doing) as conn:
            conn.execute(statement)

    def savepoint(self, name: str) -> None:
        self._execute(f"SAVEPOINT {pgsql.quote(name)}", "making a savepoint")

    def release(self, name: str) -> None:
        self._execute(f"RELEASE SAVEPOINT {pgsql.quote(name)}", "releasing a savepoint")

    def rollback_to(self, name: str) -> None:
        self._abandon_copy()
        self._execute(f"ROLLBACK TO SAVEPOINT {pgsql.quote(name)}", "rolling back")
        self._execute(f"RELEASE SAVEPOINT {pgsql.quote(name)}", "rolling back")
        self._local.pending = {}  # tables it made may be gone: check again

    # -- rows ----------------------------------------------------------------
    def put(self, spec: CollectionSpec, rows: Sequence[Row]) -> None:
        self._writer()
        convert = converter(spec)
        statements = self._sql(spec)
        conn = self._txn()
        if conn is not None:
            written: dict[str, int] = self._local.written
            written[spec.name] = written.get(spec.name, 0) + len(rows)
        if len(rows) == 1 or conn is None:
            with self._connection(f"storing {spec.name}") as conn:
                for row in map(convert, rows):
                    put_one(conn, statements, spec, row)
            return
        converted = list(map(convert, rows))
        if len({row[0] for row in converted}) < len(converted):
            with self._connection(f"storing {spec.name}") as conn:
                for row in converted:  # an entity twice: each write builds on the one before
                    put_one(conn, statements, spec, row)
            return
        # in id order, so that batches racing over the same ids wait for each
        # other instead of deadlocking
        converted.sort(key=itemgetter(0))
        new = [row for row in converted if row[1] == 1]
        if len(new) < len(converted):  # updates first: the new rows' COPY stays open
            with self._connection(f"storing {spec.name}") as conn:
                update_many(conn, statements, spec, [row for row in converted if row[1] != 1])
        if new:
            self._copy_rows(conn, spec, new)

    def _copy_rows(
        self, conn: psycopg.Connection[Any], spec: CollectionSpec, rows: list[Row]
    ) -> None:
        """New rows by binary COPY, the fastest way in (measured: about 3x an
        INSERT ... SELECT FROM unnest), into the COPY this transaction has open
        for the collection, if any (see _postgres_copy). An id that is taken
        fails the COPY and with it the transaction, as any failed statement in
        PostgreSQL does: the caller rolls back (every caller of put does)."""
        copy: OpenCopy | None = getattr(self._local, "copy", None)
        if copy is not None and copy.spec is not spec:
            self._finish_copy()
            copy = None
        try:
            if copy is None:
                statements = self._sql(spec)
                copy = OpenCopy(
                    conn, spec, statements.copy, statements.copy_types, statements.stamp
                )
                self._local.copy = copy
            copy.write(rows)
        except psycopg.Error as exc:
            self._abandon_copy()
            raise translate(exc, f"storing {spec.name}") from exc

    def _finish_copy(self) -> None:
        copy: OpenCopy | None = getattr(self._local, "copy", None)
        if copy is None:
            return
        self._local.copy = None
        try:
            copy.finish()
        except psycopg.errors.UniqueViolation as exc:
            raise self._taken(copy.spec, copy.first_id, exc) from None
        except psycopg.Error as exc:
            raise translate(exc, f"storing {copy.spec.name}") from exc

    def _abandon_copy(self) -> None:
        copy: OpenCopy | None = getattr(self._local, "copy", None)
        if copy is not None:
            self._local.copy = None
            copy.abandon()

    def _taken(
        self, spec: CollectionSpec, first_id: str | None, exc: psycopg.errors.UniqueViolation
    ) -> ConflictError:
        """The ConflictError of a COPY that met a taken id (looked up on another
        connection: this transaction can run nothing more)."""
        id = taken_id(exc, first_id)
        try:
            with self._connection_outside(f"reading {spec.name}") as other:
                stored = stored_version(other, self._sql(spec), id)
        except StatekeepError:
            stored = 0
        if stored == 0:  # taken by an earlier write of this same transaction
            return ConflictError(spec.name, id, "already stored by this transaction")
        return ConflictError(spec.name, id, conflict_detail(stored, 0))

    def _versions(
        self, conn: psycopg.Connection[Any], collection: str, ids: list[str]
    ) -> dict[str, int]:
        if not self._known(collection):
            return {}
        table = f"{pgsql.quote(self.schema)}.{pgsql.quote(collection)}"
        rows = conn.execute(f"SELECT id, version FROM {table} WHERE id = ANY(%s)", (ids,))
        return dict(rows.fetchall())

    def delete(self, collection: str, id: str, version: int | None) -> None:
        self._writer()
        table = f"{pgsql.quote(self.schema)}.{pgsql.quote(collection)}"
        with self._connection(f"deleting from {collection}") as conn:
            if not self._known(collection):
                raise NotFoundError(collection, id)
            if version is None:
                cursor = conn.execute(f"DELETE FROM {table} WHERE id = %s", (id,))
            else:
                cursor = conn.execute(
                    f"DELETE FROM {table} WHERE id = %s AND version = %s", (id, version)
                )
            if cursor.rowcount:
                return
            stored = self._versions(conn, collection, [id])
        if id not in stored:
            raise NotFoundError(collection, id)
        raise ConflictError(collection, id, conflict_detail(stored[id], version or 0))

    def versions(self, collection: str, ids: Sequence[str]) -> dict[str, int]:
        wanted = list(ids)
        return dict(
            self._read(
                f"reading {collection}", lambda conn: self._versions(conn, collection, wanted)
            )
        )

    def get(self, collection: str, id: str) -> str | None:
        if collection not in self._exists and not self._known(collection):
            return None
        sql = self._get_sql.get(collection)
        if sql is None:
            table = f"{pgsql.quote(self.schema)}.{pgsql.quote(collection)}"
            sql = self._get_sql[collection] = f"SELECT body FROM {table} WHERE id = %s"
        if self._local.conn is None:  # no transaction on this thread: the hot path
            body = self._connections.first_value(sql, (id,), collection)
            return None if body is None else str(body)

        def work(conn: psycopg.Connection[Any]) -> str | None:
            row = self._connections.cursor(conn).execute(sql, (id,), prepare=True).fetchone()
            return None if row is None else str(row[0])

        result: str | None = self._read(f"reading {collection}", work)
        return result

    def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, str]:
        if not self._known(collection):
            return {}
        table = f"{pgsql.quote(self.schema)}.{pgsql.quote(collection)}"
        sql = f"SELECT id, body FROM {table} WHERE id = ANY(%s)"
        wanted = list(ids)
        return dict(
            self._read(
                f"reading {collection}", lambda conn: conn.execute(sql, (wanted,)).fetchall()
            )
        )

    def _select_sql(self, spec: CollectionSpec, query: Query) -> tuple[str, list[Any]]:
        return pgsql.select(self.schema, spec, self._sql(spec).table, query)

    def select(self, spec: CollectionSpec, query: Query) -> Iterator[str]:
        if not self._known(spec.name):
            return iter(())
        text, params = self._select_sql(spec, query)
        if self._txn() is not None:  # must see its own writes: read them all now
            bodies = self._read(
                f"finding {spec.name}", lambda conn: conn.execute(text, params).fetchall()
            )
            return (body for (body,) in bodies)
        return self._stream(spec.name, text, params)

    def _stream(self, collection: str, text: str, params: list[Any]) -> Iterator[str]:
        """Reads a snapshot through a cursor on the server, a batch at a time."""
        doing = f"finding {collection}"
        with self._connection(doing) as conn:
            try:
                with conn.transaction():
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    with conn.cursor(name=f"statekeep_{next(_cursor_numbers)}") as cursor:
                        cursor.itersize = _FETCH
                        cursor.execute(text, params)
                        for (body,) in cursor:
                            yield body
            except (psycopg.Error, UnicodeError) as exc:
                raise translate(exc, doing) from exc

    def count(self, spec: CollectionSpec, filters: tuple[Filter, ...]) -> int:
        if not self._known(spec.name):
            return 0
        built = pgsql.Query(self.schema, spec)
        text = f"SELECT count(*) FROM {self._sql(spec).table}{built.where(filters)}"

        def work(conn: psycopg.Connection[Any]) -> int:
            row = conn.execute(text, built.params).fetchone()
            return int(row[0]) if row else 0

        result: int = self._read(f"counting {spec.name}", work)
        return result

    def count_by(
        self, spec: CollectionSpec, column: str, filters: tuple[Filter, ...]
    ) -> dict[Any, int]:
        if not self._known(spec.name):
            return {}
        built = pgsql.Query(self.schema, spec)
        name = pgsql.quote(column)
        text = (
            f"SELECT {name}, count(*) FROM {self._sql(spec).table}{built.where(filters)} "
            f"GROUP BY {name}"
        )

        def work(conn: psycopg.Connection[Any]) -> dict[Any, int]:
            return {value: int(n) for value, n in conn.execute(text, built.params).fetchall()}

        result: dict[Any, int] = self._read(f"counting {spec.name} by {column}", work)
        return result

    # -- the outbox: commit order without a lock (_postgres_outbox.py) ----------
    def append_events(self, bodies: Sequence[str]) -> None:
        self._writer()
        with self._connection("writing events") as conn:
            self._outbox.append(conn, bodies)

    def read_events(self, after: int, limit: int) -> list[tuple[int, str]]:
        rows: list[tuple[int, str]] = self._read(
            "reading events", lambda conn: self._outbox.read(conn, after, limit)
        )
        return rows

    def unsettled_events(self, after: int) -> bool:
        result: bool = self._read(
            "reading events", lambda conn: self._outbox.unsettled(conn, after)
        )
        return result

    def wait_events(self, after: int, timeout: float) -> None:
        """Waits for a NOTIFY from a commit that added events (LISTEN on a
        connection of this thread's own, outside the pool)."""
        self._sessions.wait(timeout)

    def prune_events(self, upto: int, keep: int = 0) -> int:
        with self._connection("pruning events") as conn:
            return self._outbox.prune(conn, upto, keep)

    def claim(self, name: str) -> Claim | None:
        """A session-level advisory lock on a connection of the claim's own
        (see _postgres_sessions)."""
        return self._sessions.claim(name)

    def explain(self, spec: CollectionSpec, query: Query) -> list[str]:
        """PostgreSQL's plan for a select (what an index lookup looks like)."""
        text, params = self._select_sql(spec, query)
        with self._connection("explaining") as conn:
            return [str(row[0]) for row in conn.execute(f"EXPLAIN {text}", params)]


_cursor_numbers = itertools.count()


_INHERITED: list[Any] = []  # in a forked child: what belongs to the parent, kept from close
