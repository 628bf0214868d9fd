"""The PostgreSQL backend's connections: a psycopg pool, and what to do when
the pool has none to give.

After an outage psycopg_pool reconnects with a growing backoff (1, 2, 4, 8,
16 s...), so it may still be waiting when the server is back. Once a
connection has been lost, this makes connections of its own, one per call,
until the pool has idle connections again: a call fails at once while the
server is down and works as soon as it is back. A pool that is merely busy
(all its connections in use) is waited for, never bypassed, so a healthy
store never opens more than pool_max connections.

In front of the pool, one idle connection is kept out of it ("hot"): a
connection given back is the next one borrowed, so a thread doing one read
after another talks to one server process whose caches are warm
(psycopg_pool hands its connections out in turn, first in first out: once it
has grown to several, each get pays for switching server processes,
15-25 us), and pays a list pop instead of the pool's checkout (about 3 us,
as much as statekeep's whole get path besides the driver and the round
trip). Only a connection with no transaction (status IDLE) is kept hot;
when anyone waits for the pool, connections go back to it instead, so the
hot one never starves a borrower; every RETURN-th give-back goes to the
pool too, which then applies its own rules (max_lifetime). A lost
connection sends the hot one back to the pool to be checked; close closes it.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import TransactionStatus
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from ._postgres_errors import lost, translate

Connection = psycopg.Connection[Any]
_IDLE = TransactionStatus.IDLE
HOT = 1  # idle connections kept out of the pool at most
RETURN = 1024  # every RETURN-th connection given back goes to the pool (see above)


class _JsonbText(Dumper):
    """JSON text in jsonb's binary format (a version byte, then the text), for
    binary COPY: registered by type only, so it serves set_types(["jsonb"])
    and nothing else."""

    format = psycopg.pq.Format.BINARY
    oid = psycopg.adapters.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + str(obj).encode()


def configure(conn: Connection) -> None:
    conn.adapters.register_loader("jsonb", TextLoader)  # bodies stay JSON text
    conn.adapters.register_loader("json", TextLoader)
    conn.adapters.register_dumper(None, _JsonbText)


class Connections:
    def __init__(
        self, conninfo: str, kwargs: dict[str, Any], *, size: tuple[int, int], timeout: float
    ) -> None:
        self.conninfo = conninfo
        self.kwargs = kwargs
        self._size, self._timeout = size, timeout
        self._opening: threading.Lock | None = None  # set while the pool waits to be opened
        self._pool = ConnectionPool(
            conninfo,
            kwargs=kwargs,
            min_size=size[0],
            max_size=size[1],
            timeout=timeout,
            configure=configure,
            open=False,
        )
        self._down = False
        self._cursors: weakref.WeakKeyDictionary[Connection, psycopg.Cursor[Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._hot: list[Connection] = []  # idle, the pool's but out of it: last in, first out
        self._hot_max = HOT
        self._given = 0  # connections given back (every RETURN-th goes to the pool)
        self._hot_lock = threading.Lock()
        self._waiting = 0  # borrowers waiting for the pool: give connections back to it
        self._closed = False

    def connect(self) -> Connection:
        """A connection of its own (not the pool's): close it after use."""
        conn = psycopg.connect(self.conninfo, **self.kwargs)
        configure(conn)
        return conn

    def open(self, timeout: float) -> None:
        # waiting for the first connection: a pool that grows to two at its
        # first use hands them out in turn ever after, and a get then pays for
        # switching between two server processes (measured: 15-25 us each)
        self._pool.open(wait=True, timeout=timeout)

    def cursor(self, conn: Connection) -> psycopg.Cursor[Any]:
        """The connection's own cursor, kept for its life: a new cursor for
        each statement costs more than statekeep's whole get (measured 12 us)."""
        cursor = self._cursors.get(conn)
        if cursor is None or cursor.closed:
            cursor = self._cursors[conn] = conn.cursor()
        return cursor

    def fresh(self) -> Connections:
        """A pool of the same settings, for a forked child: opened at its first
        use (the parent's pool and its connections are the parent's; a child
        that used them would read the parent's replies)."""
        pool = Connections(self.conninfo, self.kwargs, size=self._size, timeout=self._timeout)
        pool._opening = threading.Lock()
        return pool

    def _open_late(self) -> None:
        opening = self._opening
        if opening is None:
            return
        with opening:
            if self._opening is not None:
                self._pool.open(wait=True, timeout=self._timeout)
                self._opening = None

    def borrow(self) -> tuple[Connection, bool]:
        """A connection, and whether it is the pool's (give it back with give_back)."""
        with self._hot_lock:
            if self._hot:
                return self._hot.pop(), True
            self._waiting += 1
        try:
            if self._opening is not None:
                self._open_late()
            if self._down:
                if not self._pool.get_stats().get("pool_available", 0):
                    return self.connect(), False  # fails at once while the server is away
                self._down = False  # the pool has connections again
            return self._pool.getconn(), True
        finally:
            with self._hot_lock:
                self._waiting -= 1

    @contextmanager
    def borrowed(self, doing: str) -> Iterator[Connection]:
        """A connection for the block, given back after it. Errors of psycopg
        (borrowing, and in the block) become statekeep's, saying what was
        being done; a connection found dead is reported (see lost)."""
        try:
            conn, pooled = self.borrow()
        except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
            raise translate(exc, doing) from exc
        try:
            yield conn
        except (psycopg.Error, UnicodeError) as exc:
            if lost(exc):
                self.lost()
            raise translate(exc, doing) from exc
        finally:
            self.give_back(conn, pooled)

    def give_back(self, conn: Connection, pooled: bool) -> None:
        if not pooled:
            conn.close()
            return
        self._given += 1  # not exact across threads, and need not be
        if conn.pgconn.transaction_status == _IDLE and self._given % RETURN:
            with self._hot_lock:
                if not (self._waiting or self._closed) and len(self._hot) < self._hot_max:
                    self._hot.append(conn)
                    return
        self._pool.putconn(conn)  # the pool throws a broken connection away

    def first_value(self, sql: str, params: Sequence[Any], reading: str) -> Any:
        """The first value of the first row of a statement prepared on the
        server (None without a row), on a connection borrowed for it alone:
        the hot path of a get, with no context manager or retry object. A
        connection found dead is reported and the statement runs once more
        on another (a read can safely run twice). Errors say they were
        `reading` (a collection)."""
        for again in (False, True):
            try:
                conn, pooled = self.borrow()
            except (psycopg.Error, PoolTimeout, PoolClosed) as exc:
                if again or not lost(exc):
                    raise translate(exc, f"reading {reading}") from exc
                continue
            try:
                row = self.cursor(conn).execute(sql, params, prepare=True).fetchone()
            except (psycopg.Error, UnicodeError) as exc:
                self.give_back(conn, pooled)
                if not lost(exc):
                    raise translate(exc, f"reading {reading}") from exc
                self.lost()
                if again:
                    raise translate(exc, f"reading {reading}") from exc
                continue
            except BaseException:
                self.give_back(conn, pooled)
                raise
            self.give_back(conn, pooled)
            return None if row is None else row[0]
        raise AssertionError("unreachable")  # pragma: no cover

    def _cool(self) -> list[Connection]:
        """The hot connections, taken out."""
        with self._hot_lock:
            hot, self._hot = self._hot, []
        return hot

    def lost(self) -> None:
        """A connection turned out dead: the hot ones go back to the pool,
        which checks them and its others at once; connections are made
        directly until the pool has some again."""
        self._down = True
        for conn in self._cool():
            self._pool.putconn(conn)
        self._pool.check()

    def close(self) -> None:
        with self._hot_lock:
            self._closed = True
        for conn in self._cool():
            conn.close()
        self._pool.close()
