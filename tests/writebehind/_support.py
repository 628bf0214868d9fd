"""Helpers of the write-behind tests: a fault-injecting backend wrapper, an
event recorder, polling, and where a SQLite store keeps its journal."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from statekeep.backends import open_backend
from statekeep.errors import TransientBackendError

FLUSHER = "statekeep-flusher"


class FaultyBackend:
    """Wraps a real backend. Faults apply only to the write-behind flusher
    thread, so the test's own reads and saves go straight through.

    - gate: while cleared, the flusher waits in begin() (the database hangs);
      `waiting` is set while it does.
    - outage: begin() (or put(), by `fail_in`) raise TransientBackendError
      until `down_until` (time.monotonic()).
    - committed: the ids of every committed write-behind transaction, in order.
    - reads: how many times the flusher read stored versions.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()
        self.down_until = 0.0
        self.fail_in = "begin"
        self.attempts: list[float] = []  # monotonic time of each batch's begin()
        self.failures: list[float] = []  # ... of each injected failure (not of probes)
        self.committed: list[list[str]] = []
        self.reads = 0  # the flusher's reads of stored versions (not of its notes)
        self._batch: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    @staticmethod
    def _flusher() -> bool:
        return threading.current_thread().name == FLUSHER

    def outage(self, seconds: float, fail_in: str = "begin") -> None:
        self.fail_in = fail_in
        self.down_until = time.monotonic() + seconds

    def recover(self) -> None:
        self.down_until = 0.0

    def _down(self, where: str, *, probe: bool = False) -> bool:
        if self.fail_in == where and time.monotonic() < self.down_until:
            if not probe:
                self.failures.append(time.monotonic())
            return True
        return False

    def begin(self) -> None:
        if self._flusher():
            # the flusher's probe of the database while it backs off is not an attempt
            probe = sys._getframe(1).f_code.co_name == "_probe"
            if not probe:
                self.attempts.append(time.monotonic())
            if not self.gate.is_set():
                self.waiting.set()
                self.gate.wait()
                self.waiting.clear()
            if self._down("begin", probe=probe):
                raise TransientBackendError("the database is unreachable (injected outage)")
            self._batch = []
        self._inner.begin()

    def put(self, spec: Any, rows: Sequence[Any]) -> None:
        if self._flusher() and self._down("put"):
            raise TransientBackendError("the connection was lost (injected outage)")
        self._inner.put(spec, rows)
        if self._flusher() and not spec.name.startswith("statekeep_"):  # not the engine's notes
            self._batch.extend(row[0] for row in rows)

    def versions(self, collection: str, ids: Sequence[str]) -> dict[str, int]:
        if self._flusher() and not collection.startswith("statekeep_"):  # not the notes
            self.reads += 1
        result: dict[str, int] = self._inner.versions(collection, ids)
        return result

    def delete(self, collection: str, id: str, version: int | None) -> None:
        self._inner.delete(collection, id, version)
        if self._flusher() and not collection.startswith("statekeep_"):  # not a note
            self._batch.append(id)

    def commit(self) -> None:
        self._inner.commit()
        if self._flusher():
            self.committed.append(self._batch)
            self._batch = []

    def rollback(self) -> None:
        self._inner.rollback()
        if self._flusher():
            self._batch = []

    def batch_of(self, id: str) -> int:
        """The index of the committed transaction that wrote id (last one)."""
        found = [i for i, batch in enumerate(self.committed) if id in batch]
        assert found, f"{id} was never written"
        return found[-1]


class Recorder:
    """An on_event callback that keeps (name, info) pairs; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, name: str, info: dict[str, Any]) -> None:
        with self._lock:
            self.events.append((name, dict(info)))

    def names(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self.events]

    def of(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [info for n, info in self.events if n == name]


def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Polls check() until it is true; fails after timeout (a hang, not a speed limit)."""
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout}s: {what or check}")
        time.sleep(0.005)


def db_path(url: str) -> Path:
    """The database file of a sqlite:/// URL."""
    assert url.startswith("sqlite:///"), url
    return Path(url.removeprefix("sqlite:///"))


def journal_dir(url: str) -> Path:
    """Where a store of url keeps its write-behind journal (beside its backend's location)."""
    backend = open_backend(url, {})
    try:
        location = backend.location
    finally:
        backend.close()
    assert location is not None, f"{url} has no journal"
    return Path(location + ".writebehind")


def segments(url: str) -> list[Path]:
    directory = journal_dir(url)
    return sorted(directory.glob("segment-*.log")) if directory.exists() else []


def journal_bytes(url: str) -> int:
    return sum(p.stat().st_size for p in segments(url) if p.exists())
