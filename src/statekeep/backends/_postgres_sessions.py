"""Connections of their own outside the pool: a thread's LISTEN, a claim's session.

A durable subscription's claim is a session-level advisory lock, held by a
connection kept for it alone (SessionClaim): it ends with the session, so a
holder that dies loses it at once. A thread waiting for events LISTENs on a
connection of its own (Listening), closed when the thread ends. `Sessions`
makes them and closes those still open with the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import psycopg

from ._claims import Claim, unwatch, watch
from ._postgres_errors import translate

Connect = Callable[[], psycopg.Connection[Any]]


class Sessions:
    """The connections a store keeps outside its pool, each for one purpose."""

    def __init__(self, connect: Connect, schema: str, channel: str) -> None:
        self._connect = connect
        self._schema = schema
        self._channel = channel
        self._lock = threading.Lock()
        self.kept: list[psycopg.Connection[Any]] = []  # listeners and claims' connections
        self._spare_claimers: list[psycopg.Connection[Any]] = []
        self._local = threading.local()  # .listening: this thread's Listening

    def wait(self, timeout: float) -> None:
        """Waits for a NOTIFY from a commit that added events (LISTEN on a
        connection of this thread's own, outside the pool)."""
        listening: Listening | None = getattr(self._local, "listening", None)
        listener = None if listening is None else listening.conn
        try:
            if listener is None or listener.closed:
                listener = self._connect()
                listener.execute(f"LISTEN {self._channel}")
                self._local.listening = Listening(listener)
                self._keep(listener)
            for _ in listener.notifies(timeout=timeout, stop_after=1):
                pass
        except psycopg.Error:
            if listener is not None:
                listener.close()
            time.sleep(min(timeout, 0.5))  # the server is away: the caller reads (and fails) again

    def _keep(self, conn: psycopg.Connection[Any]) -> None:
        """A connection of its own, closed with the store; the ones closed
        already (a claim released, a thread's listener gone) are let go."""
        with self._lock:
            self.kept = [c for c in self.kept if not c.closed]
            self.kept.append(conn)

    def claim(self, name: str) -> Claim | None:
        """A session-level advisory lock on a connection of the claim's own:
        it ends with the session, so a holder that dies loses it at once.
        A failed try keeps its connection for the next (a standby tries often)."""
        with self._lock:
            conn = self._spare_claimers.pop() if self._spare_claimers else None
        try:
            if conn is None or conn.closed:
                conn = self._connect()
                self._keep(conn)
            row = conn.execute(
                "SELECT pg_try_advisory_lock(%s::bigint)", (lock_key(self._schema, name),)
            ).fetchone()
        except psycopg.Error as exc:
            if conn is not None:
                conn.close()
            raise translate(exc, f"claiming subscription {name!r}") from exc
        if not (row and row[0]):
            with self._lock:
                self._spare_claimers.append(conn)
            return None
        return SessionClaim(conn)

    def close(self) -> None:
        with self._lock:
            kept, self.kept = self.kept, []
        for conn in kept:
            conn.close()

    def after_fork(self) -> list[Any]:
        """In a forked child: sets the parent's connections aside (returned,
        for the caller to keep from being closed) and starts afresh."""
        inherited = [self.kept, self._local]
        self.kept = []
        self._local = threading.local()
        self._lock = threading.Lock()
        return inherited


class Listening:
    """A thread's LISTEN connection, in its thread-local data: closed when the
    thread ends (a stopped subscription's thread) rather than with the store."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        weakref.finalize(self, conn.close)


def lock_key(schema: str, name: str) -> int:
    """The advisory lock of a claim: 64 bits of a hash of the schema and the
    name, computed here (any text, NUL included; two names collide about once
    in 2**32 names, where PostgreSQL's 32-bit hashtext collides about once in
    65,000)."""
    text = f"statekeep:{schema}\0{name}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big", signed=True)


class SessionClaim:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        self._forgotten = False
        watch(self)

    def held(self) -> bool:
        """Asks the server: a connection that broke has lost the lock."""
        if self._conn.closed or self._forgotten:
            return False
        try:
            self._conn.execute("SELECT 1")
        except psycopg.Error:
            self._conn.close()
            return False
        return True

    def release(self) -> None:
        unwatch(self)
        if not self._forgotten:
            self._conn.close()  # the session ends, and its advisory locks with it

    def forget(self) -> None:
        """In a forked child: drops its copy of the session's socket, without
        ending the parent's session (/dev/null in its place, for libpq)."""
        self._forgotten = True
        with contextlib.suppress(OSError, psycopg.Error):
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, self._conn.fileno())
            os.close(devnull)
