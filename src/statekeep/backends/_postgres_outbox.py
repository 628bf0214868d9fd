"""The PostgreSQL outbox: events in commit order without a lock among writers.

Positions come from a sequence, taken as a transaction inserts its events, so
they are in insert order, not commit order: a transaction holding position 5
may commit after one holding 6. A reader must not pass 6 while 5 may still
appear. Holding an exclusive lock from the insert to the commit would settle
that, but it makes every writer wait for every other (the commit of a
300k-row save_many held all the others up for seconds).

Instead a transaction takes a *shared* advisory lock (writers never wait for
each other on it) before it takes its first position, holds it to its end,
and after its events adds a marker row:

    upto  = currval(sequence): its last event's position
    waits = the (virtual) transactions holding that lock right then, but itself

Any transaction holding a position <= upto took the lock before taking it,
so before the marker: it had ended by then (and is visible to any later
snapshot), or it is in `waits`. A reader first finds the markers none of
whose `waits` holds the lock any more (those have ended), then, in a later
statement (a later snapshot, which sees what they committed), returns the
events up to the largest `upto` among them, in position order.

What it costs: a marker row and two short statements per transaction with
events, and delivery of a transaction's events waits for the transactions
that were adding events at the same time to end. Markers are rows of the
outbox (`upto IS NOT NULL`) that reads leave out and pruning deletes with the
events. Writers of a version before this scheme add no markers: upgrade every
writer of a database together.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import psycopg

from . import _postgres_sql as pgsql

COLUMNS = "(position bigserial PRIMARY KEY, body text NOT NULL, upto bigint, waits text[])"
# From this many events COPY beats one INSERT ... unnest(): 100k events of
# ~200 bytes took 0.28 s by COPY, 2.5 s by unnest (PostgreSQL 15, local).
_COPY_FROM = 100
_LOCK_CLASS = 0x736B6F62  # "skob": the two-key advisory locks of outbox writers


class Outbox:
    def __init__(self, schema: str) -> None:
        self.table = f"{pgsql.quote(schema)}.statekeep_outbox"
        self._schema = schema
        self._channel = pgsql.quote(f"statekeep_{schema}"[:63])
        sequence = pgsql.literal(f"{pgsql.quote(schema)}.statekeep_outbox_position_seq")
        key = zlib.crc32(schema.encode()) & 0x7FFFFFFF
        self._lock = f"SELECT pg_advisory_xact_lock_shared({_LOCK_CLASS}, {key})"
        holders = (
            "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'advisory' "
            f"AND classid = {_LOCK_CLASS} AND objid = {key} AND objsubid = 2 AND granted"
        )
        self._copy = f"COPY {self.table} (body) FROM STDIN"
        self._insert = (
            f"INSERT INTO {self.table} (body) SELECT b FROM unnest(%s::text[]) "
            "WITH ORDINALITY AS u(b, n) ORDER BY n"
        )
        # no parameters: one simple query for both (NOTIFY is sent at commit)
        self._mark = (
            f"INSERT INTO {self.table} (body, upto, waits) VALUES ('', "
            f"currval({sequence.replace('%%', '%')}::regclass), "
            f"ARRAY({holders} AND pid <> pg_backend_pid())); NOTIFY {self._channel}"
        )
        self._settled = (
            f"WITH held AS MATERIALIZED (SELECT coalesce(array_agg(virtualtransaction), "
            f"'{{}}') AS v FROM ({holders}) h) "
            f"SELECT coalesce(max(m.upto), 0) FROM {self.table} m, held "
            "WHERE m.upto IS NOT NULL AND m.position > %s "
            "AND NOT coalesce(m.waits && held.v, false)"
        )
        self._read = (
            f"SELECT position, body FROM {self.table} "
            "WHERE position > %s AND position <= %s AND upto IS NULL "
            "ORDER BY position LIMIT %s"
        )
        self._prune = (
            f"WITH gone AS (DELETE FROM {self.table} WHERE position <= ("
            f"  SELECT position FROM {self.table} WHERE position <= %s AND upto IS NULL "
            "   ORDER BY position DESC LIMIT 1 OFFSET %s) RETURNING upto) "
            "SELECT count(*) FILTER (WHERE upto IS NULL) FROM gone"
        )

    @property
    def channel(self) -> str:
        return self._channel

    def setup(self, conn: psycopg.Connection[Any]) -> None:
        """Makes the table, or brings one of an earlier version up to date (in
        the caller's transaction, under its lock): its events, which have no
        marker, are covered by one."""
        conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} {COLUMNS}")
        row = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = %s "
            "AND table_name = 'statekeep_outbox' AND column_name = 'waits'",
            (self._schema,),
        ).fetchone()
        if not row or not row[0]:
            conn.execute(
                f"ALTER TABLE {self.table} ADD COLUMN upto bigint, ADD COLUMN waits text[]"
            )
            conn.execute(
                f"INSERT INTO {self.table} (body, upto) "
                f"SELECT '', coalesce(max(position), 0) FROM {self.table}"
            )
        conn.execute(
            "CREATE INDEX IF NOT EXISTS statekeep_outbox_markers "
            f"ON {self.table} (position) WHERE upto IS NOT NULL"
        )

    def append(self, conn: psycopg.Connection[Any], bodies: Sequence[str]) -> None:
        conn.execute(self._lock)  # before the first position, held to the end
        if len(bodies) >= _COPY_FROM:
            with conn.cursor().copy(self._copy) as copy:
                for body in bodies:
                    copy.write_row((body,))
        else:
            conn.execute(self._insert, (list(bodies),))
        conn.execute(self._mark)

    def read(self, conn: psycopg.Connection[Any], after: int, limit: int) -> list[tuple[int, str]]:
        """Two statements, in this order: the second's snapshot sees what the
        transactions the first found ended have committed."""
        row = conn.execute(self._settled, (after,)).fetchone()
        upto = int(row[0]) if row else 0
        if upto <= after:
            return []
        rows: list[tuple[int, str]] = conn.execute(self._read, (after, upto, limit)).fetchall()
        return rows

    def prune(self, conn: psycopg.Connection[Any], upto: int, keep: int) -> int:
        """Deletes the events up to upto but the last keep of them, and the
        markers among them (a marker follows its events: the ones kept keep theirs)."""
        row = conn.execute(self._prune, (upto, keep)).fetchone()
        return int(row[0]) if row else 0
