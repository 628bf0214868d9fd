"""The write-behind engine: pending writes by priority, a journal thread and
a flusher thread.

enqueue() only moves Python objects: it coalesces the write into its
entity's pending Write (the last content wins) and hands back a receipt, a
handle on that Write. The journal thread appends the content of the writes
touched since its last look to the journal as one frame (every write with
durability "journal"; with "commit", those not committed within spill_after)
and so makes them durable; the flusher takes due writes in batches and
stores them in one transaction, with a note of the journal records it stores
(see _notes), and the journal thread then marks those records done. A
transient failure puts the batch back and retries with exponential backoff
and jitter, probing the database while it waits; a permanent one is narrowed
down to the writes that cause it, which go to the dead letters.

The conflict rule: a write is based on its entity's version when enqueued;
it is stored if the stored version is still that, or if every change stored
since was this engine's own (a chain per entity: the first base and the last
version it stored); otherwise it fails with ConflictError and is
dead-lettered. Classes declared last_write_wins=True have no base.
"""

from __future__ import annotations

import heapq
import logging
import os
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..backends.base import Backend, CollectionSpec, Row
from ..errors import (
    StatekeepError,
    StoreClosedError,
    TransientBackendError,
)
from ..flow import Backoff, CircuitBreaker, CircuitState
from ._chains import Chains
from ._claim import claim, free_with_leftovers
from ._journal import Journal, JournalId, Record, RecordId
from ._journaling import JournalThread
from ._notes import NOTES
from ._options import JOURNAL_WINDOW, DeadLetter, Priority, WriteBehindOptions
from ._outcomes import Outcomes
from ._readings import Readings, report_batch
from ._receipt import Receipt, Waits
from ._records import DeadLetterFile, spec_of
from ._room import Room
from ._scheduling import Scheduling
from ._shutdown import unwatch, watch
from ._storing import Batch, BatchHooks, Outcome, store_batch
from ._write import Key, Write

_log = logging.getLogger("statekeep.writebehind")
# A caller enqueueing flat out (two batches pending) while a batch is
# being stored (or a journal frame written) lets the engine's threads have the
# interpreter every this many writes (+1): else each waits a whole switch
# interval (5 ms) for it after each of its database or file calls. A paced
# caller does not: it would wait for them instead (its latency).
_YIELD_EVERY = 31
_PROBE = 0.25  # seconds between probes of the database while backing off
_monotonic = time.monotonic


class WriteBehind(JournalThread, Scheduling, Room, Outcomes, Readings):
    def __init__(
        self,
        backend: Backend,
        options: WriteBehindOptions,
        journal_dir: Path | None,
        hooks: BatchHooks | None = None,
    ) -> None:
        self.options = options
        self._backend = backend
        self._hooks = hooks
        # called after each batch with (priority, rows, nanoseconds): the store's metrics
        self.on_batch: Callable[[str, int, int], None] | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # receipts, room, flushes
        self._work = threading.Condition(self._lock)  # the flusher
        self._jwork = threading.Condition(self._lock)  # the journal thread
        self._pending: dict[Key, Write] = {}
        self._lanes: dict[Priority, dict[Key, Write]] = {p: {} for p in Priority}
        self._flight: dict[Key, Write] = {}
        self._unjournaled: dict[Write, float] = {}  # -> since when
        self._deferred: dict[Key, tuple[Write, float]] = {}  # journaled once its key settles
        self._held: dict[Key, Write] = {}  # adopted, stored once the live write of its key is
        self._forgotten: list[Key] = []  # deleted by the store directly: chains to forget
        self._adopted: list[tuple[int, Record]] = []  # adopted while the database was away
        self._rejournal: dict[Write, None] = {}  # journaled with a base that changed
        self._markers: list[JournalId] = []  # records to mark done in the next frame
        self._noted: list[str] = []  # notes of batches whose markers are not written yet
        self._stale: list[str] = []  # notes the next batch deletes
        self._chains = Chains()
        self._deadlines: list[tuple[float, int, Key]] = []
        self._seq = self._jseq = self._batches = 0
        self._run = random.getrandbits(62)  # with a sequence number, names a journal record
        self._flushing = 0
        self._retry_at = 0.0
        # the database, as the flusher sees it: open after a batch failed for a
        # reason that may pass (nothing is sent until retry_at, the backoff's
        # moment), half open every _PROBE s (a cheap read: a probe that
        # succeeds sends the batches at once, one that fails opens it again)
        self._circuit = CircuitBreaker(
            1,
            reset_timeout=_PROBE,
            failure_on=StatekeepError,  # a probe that fails in any way: open again
            name="write-behind: the database",
        )
        self._attempt = 0  # failures in a row of the batches being retried
        self._backoff = Backoff(options.retry_base, options.retry_cap, jitter=0.5)
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._storing = False  # the flusher is storing a batch
        self._journaling = False  # the journal thread is writing a frame
        self._settling = False  # a batch's writes are done, its events not yet out
        self._high = False
        self._high_mark = 0.9 * options.max_pending
        self._max_pending, self._max_batch = options.max_pending, options.max_batch
        self._wake_at: float | None = 0.0  # when the flusher plans to look again
        self._jwake: float | None = 0.0  # ... the journal thread
        self._jstop = False  # the flusher has stopped: the journal thread writes what is left
        self._state = "new"  # new -> running -> closing -> closed
        self.waits = Waits(self._changed)  # the store sets waits.in_transaction
        self._threads = self.waits.threads
        self._closer: threading.Thread | None = None  # closed from its own thread: that one
        self._stored = self._retried = self._dead = self._shed = 0
        self._last_error: str | None = None
        self._journal: Journal | None = None
        self._dead_file: DeadLetterFile | None = None
        self._claim: int | None = None  # the lock on our journal directory
        self._base = journal_dir
        commit = options.durability == "commit" or (
            options.durability == "auto" and getattr(backend, "embedded", False)
        )  # (a backend written before `embedded` is not embedded)
        default = options.commit_interval if commit else JOURNAL_WINDOW
        self._window: float = default if options.window is None else options.window
        if journal_dir is not None:
            directory, self._claim = claim(journal_dir)
            self._journal = Journal(directory, fsync=options.fsync)
            self._dead_file = DeadLetterFile(directory)
        self._journal_all = self._journal is not None and not commit
        self._spill = options.spill_after if self._journal is not None and commit else None
        self._dead_letters: list[DeadLetter] = self._dead_file.load() if self._dead_file else []
        if self._journal is not None:
            records = self._journal.recover()
            for directory, fd in free_with_leftovers(
                journal_dir or Path(), self._journal.directory
            ):
                records.extend(self._adopt(directory, fd))
            if records:
                self._take_over(records)

    # -- the caller's side ---------------------------------------------------
    def enqueue(
        self,
        spec: CollectionSpec,
        row: Row,
        delete: bool = False,
        priority: Priority = Priority.NORMAL,
        deadline: float | None = None,
        expect: int | None = None,
        base: int | None = None,
        events: tuple[str, ...] = (),
        receipt: Receipt | None = None,
    ) -> Receipt:
        """Takes a write; does no I/O (but to mark a shed write done). row is
        (id, version its body says, body, *indexed); base the version it is
        based on (None: stored over whatever is there)."""
        now = _monotonic()
        key = (spec.name, row[0])
        with self._lock:
            if self._state != "running":
                if self._state != "new":
                    raise StoreClosedError("the store is closing: enqueue refused")
                self._start()
            pending = self._pending
            write = pending.get(key)
            if write is None and len(pending) >= self._max_pending:
                self._make_room(now)  # may wait, and so let others in
                write = pending.get(key)
            self._seq = seq = self._seq + 1
            unjournaled = self._unjournaled
            if write is None:
                write = pending[key] = Write(key, spec, now, priority)
                lane = self._lanes[priority]
                lane[key] = write
                fresh = True
            else:
                fresh = write not in unjournaled
                if priority > write.priority:  # coalesced into a more urgent write
                    del self._lanes[write.priority][key]
                    self._lanes[priority][key] = write
                    write.priority = priority
                if write.delete and not delete and base == 0:
                    base = write.base  # created again after its pending delete: as the delete
                write.spec = spec
                lane = self._lanes[write.priority]
            write.row, write.delete, write.expect, write.base, write.seq = (
                row,
                delete,
                expect,
                base,
                seq,
            )
            if events:
                write.events += events
            if deadline is not None:
                due = now + deadline
                if write.deadline is None or due < write.deadline:
                    write.deadline = due
                    heapq.heappush(self._deadlines, (due, seq, key))
            if fresh and self._journal is not None:
                unjournaled[write] = now
                jdue = now if self._spill is None else now + self._spill
                if self._jwake is None or jdue < self._jwake:
                    self._jwake = jdue
                    self._jwork.notify()
            wake_at = self._wake_at
            if wake_at is None or (
                wake_at > now  # asleep: wake it if this write is due before it planned
                and (
                    len(lane) >= self._max_batch
                    or (
                        write.since + self._window  # _due() of a NORMAL write, inlined
                        if write.priority is Priority.NORMAL and write.deadline is None
                        else self._due(write, now)
                    )
                    < wake_at
                )
            ):
                self._wake_at = now
                self._work.notify()
            if not self._high and len(pending) >= self._high_mark:
                self._high = True
                self._emit("health.high", pending=len(pending))
            if receipt is None:
                receipt = Receipt(self.waits, write, seq)
            else:
                receipt._bind(write, seq)
        if self._events:
            self._deliver()
        if (
            not seq & _YIELD_EVERY
            and (self._storing or self._journaling)
            and len(pending) > 2 * self._max_batch  # flat out, not paced
        ):
            time.sleep(0)  # lets the engine's threads back in between their calls
        return receipt

    def deleted_directly(self, collection: str, id: str) -> None:
        """The store deletes an entity directly (any thread): the flusher
        forgets its chain before its next batch."""
        self._forgotten.append((collection, id))

    def unbound(self) -> Receipt:
        """The receipt of a write enqueued in a transaction (bound at its commit)."""
        return Receipt(self.waits)

    def drop(self, receipt: Receipt, error: StatekeepError) -> None:
        """The transaction a write was enqueued in rolled back: it never is."""
        with self._lock:
            callbacks = receipt._drop(error)
            self._changed.notify_all()
        for callback in callbacks:
            callback()

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every write enqueued so far is stored (or failed for good).

        DeadlockError on the engine's own thread (an event handler of a
        write-behind write): that wait could never end."""
        self.waits.check("store.flush()")
        with self._lock:
            if self._state == "new":
                return True
            waiting = self._outstanding()
            everything = list(waiting)
            self._flushing += 1
            self._work.notify()
            try:
                if not self._changed.wait_for(
                    lambda: not self._settling and _all_done(waiting), timeout
                ):
                    return False
            finally:
                self._flushing -= 1
            # close() may have left some in the journal: not stored, not failed
            return not any(write.final().left for write in everything)

    def _outstanding(self) -> list[Write]:
        return [*self._flight.values(), *self._pending.values(), *self._held.values()]

    def close(self, timeout: float | None = None) -> bool:
        """Drains for up to timeout (drain_timeout by default), then stops the
        threads; writes still pending stay in the journal for the next open.

        Called from one of the engine's own threads (a handler of an event it
        delivers closing the store), it cannot wait for that thread to store
        anything: it stops at once, leaving what is pending to the journal."""
        own = threading.current_thread() in self._threads
        if own:
            timeout = 0.0
        with self._lock:
            if self._state in ("new", "closed"):
                self._state = "closed"
                self._close_journal()
                return True
            self._state = "closing"
            self._flushing += 1
            self._work.notify_all()
            self._changed.notify_all()
            waiting = self._outstanding()
            drained = self._changed.wait_for(
                lambda: not self._settling and _all_done(waiting),
                self.options.drain_timeout if timeout is None else timeout,
            )
            self._state = "closed"
            self._work.notify_all()
        for thread in self._threads[:1]:  # the flusher: then the journal thread writes the rest
            if thread is not threading.current_thread():
                thread.join()
        with self._lock:
            self._jstop = True
            self._jwork.notify_all()
        for thread in self._threads[1:]:
            thread.join()
        if not own:  # else this thread's batch is still in flight: it settles it
            self._leave_pending()
            self._finish_close()
        else:  # this thread still settles its batch: it lets go of the journal as it ends
            self._closer = threading.current_thread()
        return drained

    def _leave_pending(self) -> None:
        """Completes the receipts of the writes close() did not store: they
        are left in the journal for the next open (lost without one)."""
        callbacks: list[Callable[[], None]] = []
        with self._lock:
            for write in self._outstanding():
                write.left = True
                if write.durable_seq < write.seq:
                    write.error = StoreClosedError(
                        f"{write.key[0]} {write.key[1]!r}: the store closed before this "
                        "write was stored, and no journal holds it: it is lost"
                    )
                callbacks.extend(self._finish(write))
            self._changed.notify_all()
        for callback in callbacks:
            callback()

    def _finish_close(self) -> None:
        self._close_journal()
        unwatch(self)

    def _thread(self, loop: Callable[[], None]) -> None:
        """A thread of the engine; the one that closed it (from a handler)
        releases the journal directory once it has stopped writing to it."""
        try:
            loop()
        finally:
            if self._closer is threading.current_thread():
                self._finish_close()

    def forget(self) -> None:
        """In a forked child: this engine is the parent's. Its threads are not
        here; its pending writes, journal and journal directory are the
        parent's to store. Lets go of its descriptors, writing nothing."""
        self._state = "closed"
        if self._journal is not None:
            self._journal.forget()
        claimed, self._claim = self._claim, None
        if claimed is not None:
            os.close(claimed)  # the parent's descriptor keeps the lock

    def _close_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()
        claimed, self._claim = self._claim, None
        if claimed is not None:
            os.close(claimed)  # the directory is free for the next engine

    def requeue(self, letter: DeadLetter) -> Receipt:
        """Tries a dead-lettered write again, over whatever is stored (on
        purpose: no conflict rule); it stops being dead once enqueued."""
        record = letter.journal_record
        receipt = self.enqueue(
            spec_of(record),
            tuple(record["r"]),
            record["o"] == "delete",
            Priority(record["p"]),
            None,
            record["e"],
        )
        with self._lock:
            self._dead_letters = [d for d in self._dead_letters if d is not letter]
            if self._dead_file is not None:
                self._dead_file.rewrite(self._dead_letters)
        return receipt

    def _emit(self, name: str, **info: Any) -> None:
        """Notes an event (lock held); _deliver() hands it over once the lock is free,
        so that a callback may use the engine."""
        if self.options.on_event is not None:
            self._events.append((name, info))

    def _deliver(self) -> None:
        callback = self.options.on_event
        if callback is None or not self._events:
            return
        with self._lock:
            events, self._events = self._events, []
        for name, info in events:
            try:
                callback(name, info)
            except Exception as exc:  # noqa: BLE001 - the application's callback must not stop us
                _log.exception(
                    "statekeep write-behind: the on_event callback failed on %s",
                    name,
                    extra={
                        "statekeep": {
                            "event": "writebehind.on_event_failed",
                            "on_event": name,
                            "info": info,
                            "error_type": type(exc).__name__,
                            "error": str(exc),
                        }
                    },
                )

    # -- threads -------------------------------------------------------------
    def _start(self) -> None:
        self._state = "running"
        watch(self)
        self._threads[:] = [
            threading.Thread(
                target=self._thread, args=(self._flush_loop,), name="statekeep-flusher", daemon=True
            )
        ]
        if self._journal is not None:
            self._threads.append(
                threading.Thread(
                    target=self._thread,
                    args=(self._journal_loop,),
                    name="statekeep-journal",
                    daemon=True,
                )
            )
        for thread in self._threads:
            thread.start()

    # -- the flusher ---------------------------------------------------------
    def _flush_loop(self) -> None:
        while True:
            with self._lock:
                writes = self._next_batch()
                if writes is None:
                    return
                batch = Batch(
                    self._hooks,
                    self._chains,
                    self._seal,
                    (self._run, self._batches),
                    self._stale,
                )
                self._batches += 1
                self._stale = []
                forgotten = self._forgotten  # appended to without the lock: popped one by
                while forgotten:  # one (atomic), none is lost to a swap of the list
                    self._chains.forget(forgotten.pop())
            if not writes:  # a probe, the breaker half open
                error = self._probe()
                with self._lock:
                    self._circuit._exit(True, error)  # closed again, or open for _PROBE
                    if error is None:
                        self._retry_at = 0.0
                continue
            self._storing = True
            on_batch, start = self.on_batch, time.perf_counter_ns()
            try:
                outcome = store_batch(self._backend, writes, batch)
                took = time.perf_counter_ns() - start
                self._settle(writes, outcome, batch)
            finally:
                self._storing = False
            if on_batch is not None:
                report_batch(on_batch, writes, took)

    def _seal(self, writes: list[Write]) -> list[tuple[Write, RecordId]]:
        """A batch is about to write its note: from now on its writes are
        durable once it commits, so the journal thread leaves them be; the
        journal records of each (one may be being written) go in the note."""
        with self._lock:
            unjournaled = self._unjournaled
            recorded = []
            for write in writes:
                write.sealed = True
                if unjournaled:
                    unjournaled.pop(write, None)
                for _, record_id in write.jids:
                    recorded.append((write, record_id))
                if write.jnext is not None:
                    recorded.append((write, write.jnext))
            return recorded

    def _probe(self) -> StatekeepError | None:
        """Is the database back? One small read in a transaction: None if
        it is, else why not."""
        backend = self._backend
        try:
            backend.begin()
            try:
                backend.ensure_collection(NOTES)
                backend.versions(NOTES.name, ["probe"])
            finally:
                backend.rollback()
        except StatekeepError as exc:
            return exc
        return None

    def _next_batch(self) -> list[Write] | None:
        """Waits (lock held) until a batch is due; None when it is time to
        stop, [] when it is time to probe the database while backing off."""
        while True:
            now = time.monotonic()
            if self._state == "closed":
                return None
            if now >= self._retry_at:
                batch = self._take(now)
                if batch:
                    return batch
                wake = self._next_due(now)
            elif (
                self._retry_at - now > _PROBE
                and self._circuit.state is CircuitState.HALF_OPEN
                and self._circuit._enter()  # this thread's probe
            ):
                return []
            else:
                probe_at = self._circuit.probe_at
                wake = (
                    self._retry_at if probe_at is None else min(self._retry_at, max(probe_at, now))
                )
            self._wake_at = wake
            self._work.wait(None if wake is None else max(wake - now, 0.0005))
            self._wake_at = time.monotonic()  # awake: enqueue need not wake it

    # -- storing -------------------------------------------------------------
    def _settle(self, batch: list[Write], outcome: Outcome, parts: Batch) -> None:
        callbacks: list[Callable[[], None]] = []
        dead: list[tuple[Write, StatekeepError]] = []
        with self._lock:
            self._settling = True  # flush() returns once this batch's events are out
            transient = None
            flight, deferred, pending = self._flight, self._deferred, self._pending
            unjournaled, rejournal, markers = self._unjournaled, self._rejournal, self._markers
            stored: list[Write] = []
            for write in batch:
                key = write.key
                del flight[key]
                if deferred:
                    later = deferred.pop(key, None)
                    if later is not None:  # now its base is known
                        unjournaled.setdefault(*later)
                result = outcome[key]
                if type(result) is int:
                    write.version = result
                    stored.append(write)
                    if write.jids:
                        markers.extend(write.jids)
                        write.jids = ()
                    if rejournal:
                        rejournal.pop(write, None)
                    if write.callbacks:
                        callbacks.extend(self._finish(write))
                elif isinstance(result, TransientBackendError):
                    transient = result
                    self._put_back(write)
                else:
                    assert isinstance(result, StatekeepError)
                    write.error = result
                    dead.append((write, result))
                    callbacks.extend(self._resolve(write))
            self._stored += len(stored)
            self._chains.stored(stored)
            for write in stored:
                newer = pending.get(write.key)
                if (
                    newer is not None
                    and newer.jids
                    and self._chains.effective(newer) != newer.jbase
                ):
                    rejournal[newer] = None  # with the marker of this batch
            self._noted.extend(parts.written)
            if transient is not None:
                self._stale[:0] = parts.stale
                self._attempt += 1
                self._retried += 1
                self._last_error = str(transient)
                delay = self._backoff.delay(self._attempt)
                now = time.monotonic()
                self._retry_at = now + delay
                self._circuit.trip()  # open: a probe in _PROBE s
                self._emit("retry", attempt=self._attempt, delay=delay, error=str(transient))
            else:
                self._attempt = 0
                if self._circuit.state is not CircuitState.CLOSED:
                    self._circuit.reset()
            for write, error in dead:
                self._dead_letter(write, error)
            if self._held:
                for write in batch:  # an adopted write waited for this live one
                    key = write.key
                    if key in self._held and key not in self._pending and key not in self._flight:
                        self._pend(self._held.pop(key))
                        self._work.notify()
            if self._high and len(self._pending) < 0.7 * self.options.max_pending:
                self._high = False
                self._emit("health.ok", pending=len(self._pending))
            if self._markers or self._rejournal:
                self._jwork.notify()
        try:
            for callback in callbacks:
                callback()
            self._deliver()  # before waking flush(): its events are out when it returns
        finally:
            with self._lock:
                self._settling = False
                self._changed.notify_all()


def _all_done(waiting: list[Write]) -> bool:
    while waiting:
        write = waiting[-1].final()
        if not (write.done or write.left):
            return False
        waiting.pop()
    return True
