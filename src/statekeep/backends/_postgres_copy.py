"""A binary COPY of new rows, left open from one put to the next.

save_many hands the backend a chunk at a time, serialising each chunk just
before. Were each chunk's COPY finished at once, the server would sit idle
while the next chunk is serialised, and the client while the server finishes
the chunk. Kept open, the COPY streams chunk after chunk as raw COPY of one
big generator would: the server works on a chunk while the next is made.
The COPY is finished before anything else runs on the connection (another
statement, a savepoint, the commit); an id that turns out to be taken is
reported then, as a ConflictError.

Every open COPY is also held in _OPEN: in a child forked while another
thread of the parent had one open, that thread's state (its thread-locals,
its frames) is freed, and the COPY's generator, closed by the garbage
collector, would send the server a CopyFail ("GeneratorExit") on the
parent's connection, aborting the parent's transaction and leaving its
COPY waiting for good. Held here, it is never closed in the child.
"""

from __future__ import annotations

from typing import Any

import psycopg

from .base import CollectionSpec, Row

_OPEN: set[OpenCopy] = set()


class OpenCopy:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        spec: CollectionSpec,
        sql: str,
        types: list[str],
        stamp: int,
    ) -> None:
        self.spec = spec
        self._stamp = (stamp,)  # each row's last value (see _layout)
        self.first_id: str | None = None
        self._cursor = conn.cursor()
        self._context = self._cursor.copy(sql)
        try:
            self._copy = self._context.__enter__()
            self._copy.set_types(types)
        except BaseException:
            self._cursor.close()
            raise
        _OPEN.add(self)

    def write(self, rows: list[Row]) -> None:
        if self.first_id is None and rows:
            self.first_id = rows[0][0]
        write_row, stamp = self._copy.write_row, self._stamp
        for row in rows:
            write_row(row + stamp)

    def finish(self) -> None:
        """Ends the COPY and waits for the server to store it (psycopg errors as they come)."""
        try:
            self._context.__exit__(None, None, None)
        finally:
            _OPEN.discard(self)
            self._cursor.close()

    def abandon(self) -> None:
        """Ends the COPY unstored (the transaction is rolled back anyway)."""
        reason = RuntimeError("abandoned: the transaction rolls back")
        try:
            self._context.__exit__(RuntimeError, reason, None)
        except (psycopg.Error, RuntimeError):
            pass  # the COPY failed, as it was told to
        finally:
            _OPEN.discard(self)
            self._cursor.close()
