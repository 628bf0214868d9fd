"""The write-behind engine's journal thread (a part of WriteBehind, which
holds the state it shares: see _engine).

Each tick writes one frame: the content of the writes due (with durability
"journal" every write touched since the last tick; with "commit" those not
committed within spill_after), the writes whose base changed since they
were journaled, and the markers of the records that need no storing any
more. About once a second it adopts the journal of a dead engine sharing
the journal root (its segments become this journal's) and pends its writes.
"""

from __future__ import annotations

import heapq
import os
import threading
import time
from pathlib import Path

from ..backends.base import Backend
from ..errors import BackendError, StatekeepError
from ._chains import Chains
from ._claim import free_with_leftovers
from ._journal import Journal, JournalId, Record
from ._notes import delete_notes, read_notes
from ._options import DeadLetter, Priority, WriteBehindOptions
from ._records import DeadLetterFile
from ._write import Key, Write, recovered

_GATHER = 0.0005  # seconds the journal thread lets writes gather before a frame
_ADOPT = 1.0  # seconds between looks for a dead engine's journal


class JournalThread:
    """The journal thread's part of the engine."""

    options: WriteBehindOptions
    _backend: Backend
    _lock: threading.Lock
    _changed: threading.Condition
    _work: threading.Condition
    _jwork: threading.Condition
    _journal: Journal | None
    _dead_file: DeadLetterFile | None
    _dead_letters: list[DeadLetter]
    _base: Path | None
    _pending: dict[Key, Write]
    _lanes: dict[Priority, dict[Key, Write]]
    _flight: dict[Key, Write]
    _unjournaled: dict[Write, float]
    _deferred: dict[Key, tuple[Write, float]]
    _held: dict[Key, Write]
    _adopted: list[tuple[int, Record]]
    _journaling: bool
    _rejournal: dict[Write, None]
    _markers: list[JournalId]
    _noted: list[str]
    _stale: list[str]
    _chains: Chains
    _deadlines: list[tuple[float, int, Key]]
    _spill: float | None
    _jwake: float | None
    _jstop: bool
    _wake_at: float | None
    _state: str
    _seq: int
    _jseq: int
    _run: int
    _last_error: str | None

    def _start(self) -> None: ...

    def _journal_loop(self) -> None:
        adopt_at = time.monotonic() + _ADOPT
        while True:
            with self._lock:
                idle = self._jwait(adopt_at)
            if idle is None:
                return
            if idle:
                time.sleep(_GATHER)  # let a frame gather (enqueue does not wake a busy thread)
            now = time.monotonic()
            if now >= adopt_at:
                adopt_at = now + _ADOPT
                self._adopt_dead()
            self._journal_tick(now)

    def _jwait(self, adopt_at: float) -> bool | None:
        """Waits (lock held) until there is journal work; whether it slept
        (None: time to stop)."""
        slept = False
        while True:
            now = time.monotonic()
            if self._jstop:
                return None if not (self._unjournaled or self._deferred or self._markers) else False
            due = self._jdue()
            if (due is not None and due <= now) or self._markers or self._rejournal:
                return slept
            wake = adopt_at if due is None else min(due, adopt_at)
            if wake <= now:
                return slept
            self._jwake = None if due is None else due
            self._jwork.wait(wake - now)
            self._jwake = 0.0  # awake: enqueue need not wake it
            slept = True

    def _jdue(self) -> float | None:
        """When the oldest write not journaled needs journaling."""
        for since in self._unjournaled.values():
            return since if self._spill is None else since + self._spill
        return None

    def _journal_tick(self, now: float) -> None:
        """Writes one frame: the writes due (all when stopping), the ones to
        journal again with a new base, and the markers of stored ones."""
        journal = self._journal
        assert journal is not None
        with self._lock:
            everything = self._spill is None or self._jstop
            if self._jstop:  # the flusher has stopped: nothing is in flight any more
                for write, since in self._deferred.values():
                    self._unjournaled.setdefault(write, since)
                self._deferred.clear()
            taken: list[tuple[Write, int, int, int | None]] = []
            records: list[Record] = []
            unjournaled, chains, run = self._unjournaled, self._chains, self._run
            # before any base is worked out: the flusher forgets chains without the lock
            changes = chains.changes
            due = [(write, now) for write in self._rejournal]
            self._rejournal.clear()
            if everything:
                due.extend(unjournaled.items())
                unjournaled.clear()
            else:
                spill = self._spill or 0.0
                for write, since in unjournaled.items():
                    if since + spill > now:
                        break
                    due.append((write, since))
                for write, _ in due:
                    unjournaled.pop(write, None)
            flight, stopping, jseq = self._flight, self._jstop, self._jseq
            for write, since in due:
                if flight and not stopping:
                    flying = flight.get(write.key)
                    if flying is not None:
                        if flying is not write:
                            # a newer write of an entity a batch in flight is storing: its
                            # base is what that batch leaves, so journaled once it settles
                            self._deferred.setdefault(write.key, (write, since))
                            continue
                        if write.sealed:  # its batch's note is written: durable once committed
                            continue
                        # else in a batch that has not reached its note (the database
                        # hangs, say): journaled now, and that note will name the record
                if write.done or write.merged_into is not None:
                    continue
                jseq += 1
                base = chains.effective(write)
                records.append(write.record(run, jseq, base))
                write.jnext = (run, jseq)
                taken.append((write, write.seq, jseq, base))
            self._jseq = jseq
            markers, self._markers = self._markers, []
            noted, self._noted = self._noted, []
        self._journaling = True  # enqueue lets this thread back in between its calls
        try:
            segment = journal.write(records, markers) if records or markers else 0
        except BackendError as exc:
            with self._lock:
                self._journaling = False
                self._last_error = str(exc)
                for write, *_ in taken:
                    write.jnext = None
                    self._unjournaled.setdefault(write, now)
                self._markers[:0] = markers
                self._noted[:0] = noted
            time.sleep(self.options.retry_base)
            return
        self._journaling = False
        with self._lock:
            moved = chains.changes != changes  # a batch stored (or forgot) some meanwhile
            rejournal, markers = self._rejournal, self._markers
            for write, seq, jseq, base in taken:
                target = write.final()
                jid = (segment, (run, jseq))
                if target.done:  # stored (or failed) while it was being written
                    write.jnext = None
                    markers.append(jid)
                    continue
                target.jids += (jid,)
                write.jnext = None  # after: a batch's note reads one or the other unlocked
                target.jbase = base
                if seq > target.durable_seq:
                    target.durable_seq = seq
                if moved and chains.effective(target) != base:  # a batch of it committed
                    rejournal[target] = None
            self._stale.extend(noted)  # their markers are written: the notes may go
            self._changed.notify_all()

    def _adopt(self, directory: Path, fd: int) -> list[tuple[int, Record]]:
        """A dead engine's journal directory: its segments and dead letters become ours."""
        assert self._journal is not None and self._dead_file is not None
        try:
            records = self._journal.adopt(directory)
            theirs = DeadLetterFile(directory)
            letters = theirs.load()
            for letter in letters:
                self._dead_letters.append(letter)
                self._dead_file.append(letter)
            if letters:
                theirs.rewrite([])
        finally:
            os.close(fd)
        return records

    def _adopt_dead(self) -> None:
        assert self._journal is not None and self._base is not None
        if self._adopted:  # taken into this journal, not yet pended (the database was away)
            records, self._adopted = self._adopted, []
            self._pend_adopted(records, "adopted records")
        for directory, fd in free_with_leftovers(self._base, self._journal.directory):
            try:
                records = self._adopt(directory, fd)
            except StatekeepError as exc:
                with self._lock:
                    self._last_error = f"adopting {directory}: {exc}"
                continue
            if records:
                self._pend_adopted(records, str(directory))

    def _pend_adopted(self, records: list[tuple[int, Record]], what: str) -> None:
        """Pends adopted records; if the database cannot say which are stored
        yet, they wait (in this journal now) for the next look."""
        try:
            self._take_over(records)
        except StatekeepError as exc:
            self._adopted.extend(records)
            with self._lock:
                self._last_error = f"adopting {what}: {exc}"

    def _pend(self, write: Write) -> None:
        """A write that no caller enqueued (adopted) joins the pending ones (lock held)."""
        key = write.key
        self._pending[key] = write
        self._lanes[write.priority][key] = write
        if write.deadline is not None:
            heapq.heappush(self._deadlines, (write.deadline, write.seq, key))

    def _take_over(self, records: list[tuple[int, Record]]) -> None:
        """Pends the writes of crashed runs' records (those a note says were
        stored are marked done, then their notes deleted)."""
        assert self._journal is not None
        runs = {record[0] for _, record in records}
        noted, note_ids = read_notes(self._backend, runs)
        writes, done = recovered(records, noted, time.monotonic())
        if done:
            self._journal.write([], done)
        if note_ids:
            self._backend.begin()
            try:
                delete_notes(self._backend, note_ids)
            except BaseException:
                self._backend.rollback()
                raise
            self._backend.commit()
        with self._lock:
            for key, write in writes.items():
                self._seq += 1
                write.seq = write.durable_seq = self._seq
                if key in self._pending:
                    # a live write of the entity waits too, and which came first is not
                    # known: each is stored, the adopted one once the live one is
                    held = self._held.get(key)
                    if held is not None:
                        write.jids = held.jids + write.jids
                        write.events = held.events + write.events
                    self._held[key] = write
                    continue
                self._pend(write)
            if writes and self._state == "new":
                self._start()
            self._wake_at = time.monotonic()
            self._work.notify()
