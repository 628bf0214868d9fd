"""What becomes of a write its batch is done with (a part of WriteBehind,
which holds the state it shares: see _engine): resolved (stored or failed
for good: its journal records may be marked done, its awaiting receipts
woken), dead-lettered, or put back to be tried again."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from ..errors import StatekeepError
from ._journal import Journal, JournalId
from ._options import DeadLetter, Priority
from ._records import DeadLetterFile, journal_record
from ._write import Key, Write


class Outcomes:
    """The end of a write's try (lock held)."""

    _journal: Journal | None
    _pending: dict[Key, Write]
    _lanes: dict[Priority, dict[Key, Write]]
    _unjournaled: dict[Write, float]
    _rejournal: dict[Write, None]
    _markers: list[JournalId]
    _deadlines: list[tuple[float, int, Key]]
    _dead_letters: list[DeadLetter]
    _dead_file: DeadLetterFile | None
    _dead: int
    _run: int
    _last_error: str | None

    def _emit(self, name: str, **info: Any) -> None: ...

    def _resolve(self, write: Write) -> list[Callable[[], None]]:
        """A write is stored or failed for good (lock held): its records may be
        marked done; returns the callbacks of awaiting receipts."""
        self._markers.extend(write.jids)
        write.jids = ()
        self._unjournaled.pop(write, None)
        self._rejournal.pop(write, None)
        return self._finish(write)

    @staticmethod
    def _finish(write: Write) -> list[Callable[[], None]]:
        callbacks, write.callbacks = write.callbacks or [], None
        return callbacks

    def _dead_letter(self, write: Write, error: StatekeepError) -> None:
        self._dead += 1
        self._last_error = str(error)
        collection, id = write.key
        record = journal_record(
            write.spec,
            write.row,
            write.delete,
            write.expect,
            write.priority,
            None,
            write.seq,
            run=self._run,
        )
        letter = DeadLetter(
            collection, id, write.delete, f"{type(error).__name__}: {error}", record
        )
        self._dead_letters.append(letter)
        if self._dead_file is not None:
            self._dead_file.append(letter)
        self._emit("dead_letter", collection=collection, id=id, error=str(error))

    def _put_back(self, write: Write) -> None:
        key = write.key
        newer = self._pending.get(key)
        if newer is not None:  # a later write of the entity waits: it wins
            newer.jids = write.jids + newer.jids
            newer.durable_seq = max(newer.durable_seq, write.durable_seq)
            newer.since = min(newer.since, write.since)
            newer.events = write.events + newer.events
            if write.callbacks:
                newer.callbacks = [*write.callbacks, *(newer.callbacks or [])]
                write.callbacks = None
            write.merged_into = newer
            self._unjournaled.pop(write, None)
            return
        write.sealed = False
        if self._journal is not None and write.durable_seq < write.seq:
            self._unjournaled.setdefault(write, write.since)  # not durable until journaled
        self._pending[key] = write
        self._lanes[write.priority][key] = write
        if write.deadline is not None:
            heapq.heappush(self._deadlines, (write.deadline, write.seq, key))
