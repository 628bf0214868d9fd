"""A transaction's changes held in memory until commit, with savepoints.

The memory and files backends keep a transaction's changes in an overlay of
its own (other threads see only what is committed). A journal of what each
change replaced lets a savepoint be rolled back; it is kept only while a
savepoint is open, as only a savepoint can undo part of a transaction.
OverlayTransactions is what both backends do alike with them: the calling
task's transaction, the refusal of a second one, and the savepoints.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from ..errors import BackendError, TransactionError
from ._owner import ANOTHER_TASK, current_task, second_transaction

Key = tuple[str, str]  # (collection, id)
V = TypeVar("V")


@dataclass
class Overlay(Generic[V]):
    task: object = None  # the asyncio task it belongs to (None: its thread, outside asyncio)
    changes: dict[Key, V] = field(default_factory=dict)
    # (key, had a change before, that change) for undoing back to a savepoint
    journal: list[tuple[Key, bool, Any]] = field(default_factory=list)
    savepoints: list[tuple[str, int]] = field(default_factory=list)

    def change(self, key: Key, value: V) -> None:
        if self.savepoints:
            self.journal.append((key, key in self.changes, self.changes.get(key)))
        self.changes[key] = value

    def savepoint(self, name: str) -> None:
        self.savepoints.append((name, len(self.journal)))

    def release(self, name: str) -> None:
        del self.savepoints[self._index(name) :]

    def rollback_to(self, name: str) -> None:
        """Undoes the changes since the savepoint and ends it (as SQLite's
        ROLLBACK TO + RELEASE)."""
        position = self._index(name)
        mark = self.savepoints[position][1]
        while len(self.journal) > mark:
            key, had, previous = self.journal.pop()
            if had:
                self.changes[key] = previous
            else:
                del self.changes[key]
        del self.savepoints[position:]

    def _index(self, name: str) -> int:
        for position in range(len(self.savepoints) - 1, -1, -1):
            if self.savepoints[position][0] == name:
                return position
        raise RuntimeError(f"no savepoint named {name!r}")


def mine(txn: Overlay[Any] | None) -> Overlay[Any] | None:
    """The thread's transaction if the calling task owns it; else None (reads
    of another task see only what is committed)."""
    if txn is not None and txn.task is not current_task():
        return None
    return txn


def owned(txn: Overlay[Any] | None) -> None:
    """Raises unless the calling task owns the thread's transaction txn."""
    if txn is None:
        raise BackendError("no transaction is open on this thread (or in this task)")
    if txn.task is not current_task():
        raise TransactionError(ANOTHER_TASK)


T = TypeVar("T", bound=Overlay[Any])


class OverlayTransactions(Generic[T]):
    """A backend whose transactions are Overlays of type T, one per thread in
    self._local.txn: finding the calling task's, refusing a second, and the
    savepoint methods of the Backend protocol."""

    _local: threading.local

    def _mine(self) -> T | None:
        """The thread's transaction if the calling task owns it, else None."""
        txn: T | None = getattr(self._local, "txn", None)
        return txn if mine(txn) is not None else None

    def _txn(self) -> T:
        """The calling task's transaction; BackendError or TransactionError if none."""
        txn: T | None = getattr(self._local, "txn", None)
        owned(txn)
        assert txn is not None
        return txn

    def _check_none_open(self) -> None:
        """For begin: refuses a second transaction on this thread."""
        held: T | None = getattr(self._local, "txn", None)
        if held is not None:
            raise second_transaction(held.task)

    def savepoint(self, name: str) -> None:
        self._txn().savepoint(name)

    def release(self, name: str) -> None:
        self._txn().release(name)

    def rollback_to(self, name: str) -> None:
        self._txn().rollback_to(name)
