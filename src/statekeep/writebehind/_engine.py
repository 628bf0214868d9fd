"""The write-behind engine: a pending set, a journal thread and a flusher thread.

enqueue() only moves Python objects: it coalesces the write into the pending
set (one entry per entity: the last content wins, every receipt is kept) and
wakes the threads. The journal thread appends new content to the journal and
marks receipts durable; the flusher takes due writes in batches, stores them in
one transaction, and marks them stored. A transient failure puts the batch back
and retries with exponential backoff and jitter; a permanent one is narrowed to
the writes that cause it, which go to the dead-letter list with their error.

For one entity the stored content is always the last enqueued: a write taken
into a batch leaves the pending set, so a newer write of the same entity waits
for the next batch, and a batch that fails merges back under any newer write.
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
    BackendError,
    QueueFullError,
    StatekeepError,
    StoreClosedError,
    TransientBackendError,
)
from ..flow import Backoff
from ._claim import claim
from ._item import Item, Key, first, journal_content, recovered
from ._journal import Journal, JournalId
from ._options import DeadLetter, Policy, Priority, Stats, WriteBehindOptions
from ._receipt import Receipt, check_not_own
from ._records import DeadLetterFile, journal_record, spec_of
from ._shutdown import unwatch, watch
from ._storing import BatchHooks, store_batch

_log = logging.getLogger("statekeep.writebehind")
_GATHER = 0.001  # seconds the journal thread lets writes gather before a batch


class WriteBehind:
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
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # receipts, room, flushes
        self._work = threading.Condition(self._lock)  # the flusher
        self._journal_work = threading.Condition(self._lock)  # the journal thread
        self._items: dict[Key, Item] = {}
        self._queues: dict[Priority, dict[Key, None]] = {p: {} for p in Priority}
        self._unjournaled: dict[Key, None] = {}
        self._in_flight: dict[Key, Item] = {}
        self._deadlines: list[tuple[float, int, Key]] = []
        self._seq = 0
        self._run = random.getrandbits(62)  # with _seq, names this run's journal records
        self._flushing = 0
        self._retry_at = 0.0
        self._attempt = 0  # failures in a row of the batches being retried
        self._backoff = Backoff(options.retry_base, options.retry_cap, jitter=0.5)
        self._events: list[tuple[str, dict[str, Any]]] = []
        self._unresolved: list[JournalId] = []  # markers a journal error held up
        self._high = False
        self._high_mark = 0.9 * options.max_pending
        self._journal_idle = False
        self._wake_at: float | None = 0.0  # when the flusher plans to look again
        self._state = "new"  # new -> running -> closing -> closed
        self._threads: list[threading.Thread] = []
        self._closer: threading.Thread | None = None  # closed from its own thread: that one
        self._stored = self._retried = self._dead = self._shed = 0
        self._last_error: str | None = None
        self._journal: Journal | None = None
        self._dead_file: DeadLetterFile | None = None
        self._claim: int | None = None  # the lock on our journal directory
        if journal_dir is not None:
            directory, self._claim = claim(journal_dir)
            self._journal = Journal(directory, fsync=options.fsync)
            self._dead_file = DeadLetterFile(directory)
        self._dead_letters: list[DeadLetter] = self._dead_file.load() if self._dead_file else []
        if self._journal is not None:
            self._recover(self._journal)

    # -- the caller's side ---------------------------------------------------
    def enqueue(
        self,
        spec: CollectionSpec,
        row: Row,
        *,
        delete: bool = False,
        priority: Priority = Priority.NORMAL,
        deadline: float | None = None,
        expect: int | None = None,
    ) -> Receipt:
        """Takes a write; does no I/O. row is (id, version as read, body, *indexed)."""
        receipt = Receipt(self._changed, self._threads)
        now = time.monotonic()
        key = (spec.name, row[0])
        try:
            self._enqueue(receipt, now, key, spec, row, delete, priority, deadline, expect)
        finally:
            if self._events:
                self._deliver()
        return receipt

    def _enqueue(
        self,
        receipt: Receipt,
        now: float,
        key: Key,
        spec: CollectionSpec,
        row: Row,
        delete: bool,
        priority: Priority,
        deadline: float | None,
        expect: int | None,
    ) -> None:
        with self._lock:
            if self._state != "running":
                if self._state != "new":
                    raise StoreClosedError("the store is closing: enqueue refused")
                self._start()
            self._seq += 1
            item = self._items.get(key)
            if item is None and len(self._items) >= self.options.max_pending:
                self._make_room(priority, now)  # may wait, and so let others in
                item = self._items.get(key)
            if item is None:
                item = self._items[key] = Item(key, spec, self._seq, now)
                item.priority = priority
                self._queues[priority][key] = None
            elif priority > item.priority:  # coalesced into a more urgent write
                del self._queues[item.priority][key]
                self._queues[priority][key] = None
                item.priority = priority
            item.spec, item.row, item.delete = spec, row, delete
            item.body_version, item.expect, item.seq = row[1], expect, self._seq
            item.receipts.append(receipt)
            if deadline is not None:
                due = now + deadline
                if item.deadline is None or due < item.deadline:
                    item.deadline = due
                    heapq.heappush(self._deadlines, (due, self._seq, key))
            if self._journal is not None:  # else durable means stored
                self._unjournaled[key] = None
                if self._journal_idle:
                    self._journal_idle = False
                    self._journal_work.notify()
            wake_at = self._wake_at
            if wake_at is None or (
                wake_at > now  # asleep: wake it if this write is due before it planned
                and (
                    self._due(item, now) < wake_at
                    or len(self._queues[item.priority]) >= self.options.max_batch
                )
            ):
                self._wake_at = now
                self._work.notify()
            if not self._high and len(self._items) >= self._high_mark:
                self._high = True
                self._emit("health.high", pending=len(self._items))

    def _make_room(self, priority: Priority, now: float) -> None:
        """Called with the lock held when a new entity would join a full pending set."""
        limit = self.options.max_pending
        policy = self.options.policy
        if policy is Policy.SHED_LOW and self._queues[Priority.LOW]:
            key = next(iter(self._queues[Priority.LOW]))
            self._shed_item(key)
            return
        if policy is Policy.BLOCK and self._changed.wait_for(
            lambda: len(self._items) < limit or self._state != "running",
            self.options.block_timeout,
        ):
            if self._state != "running":
                raise StoreClosedError("the store closed while enqueue waited for room")
            return
        raise QueueFullError(f"{len(self._items)} writes are pending (max_pending={limit})")

    def _shed_item(self, key: Key) -> None:
        item = self._items.pop(key)
        del self._queues[item.priority][key]
        self._unjournaled.pop(key, None)
        self._shed += 1
        error = QueueFullError(
            f"{key[0]} {key[1]!r}: shed to make room (policy shed_low, "
            f"max_pending={self.options.max_pending})"
        )
        for callback in self._resolve(item, error=error):
            callback()
        self._unresolved.extend(item.journal_ids)  # marked by a background thread: no I/O here
        self._work.notify()
        self._emit("shed", collection=key[0], id=key[1])

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every write enqueued so far is stored (or failed for good).

        DeadlockError on the engine's own thread (an event handler of a
        write-behind write): that wait could never end."""
        check_not_own(self._threads, "store.flush()")
        with self._lock:
            if self._state == "new":
                return True
            target = self._seq
            self._flushing += 1
            self._work.notify()
            try:
                return self._changed.wait_for(lambda: self._settled(target), timeout)
            finally:
                self._flushing -= 1

    def _settled(self, target: int) -> bool:
        return not any(
            item.first_seq <= target
            for items in (self._items, self._in_flight)
            for item in items.values()
        )

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
            self._journal_work.notify_all()
            self._changed.notify_all()
            drained = self._changed.wait_for(
                lambda: self._settled(self._seq),
                self.options.drain_timeout if timeout is None else timeout,
            )
            self._state = "closed"
            self._work.notify_all()
            self._journal_work.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()
        if not own:  # else this thread's batch is still in flight: it settles it
            self._leave_pending()
        if own:  # this thread still marks its batch done: it lets go of the journal as it ends
            self._closer = threading.current_thread()
        else:
            self._finish_close()
        return drained

    def _leave_pending(self) -> None:
        """Completes the receipts of the writes close() did not store: they
        are left in the journal for the next open (lost without one)."""
        callbacks: list[Callable[[], None]] = []
        with self._lock:
            for items in (self._items, self._in_flight):
                for item in items.values():
                    for receipt in item.receipts:
                        callbacks.extend(receipt._leave(item.key))
            self._changed.notify_all()
        for callback in callbacks:
            callback()

    def _finish_close(self) -> None:
        self._mark_resolved([])  # what a shed or a journal error left unmarked
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
        claim, self._claim = self._claim, None
        if claim is not None:
            os.close(claim)  # the parent's descriptor keeps the lock

    def _close_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()
        claim, self._claim = self._claim, None
        if claim is not None:
            os.close(claim)  # the directory is free for the next engine

    def stats(self) -> Stats:
        with self._lock:
            now = time.monotonic()
            oldest = min((i.since for i in self._items.values()), default=now)
            return Stats(
                pending={p.name: len(q) for p, q in self._queues.items()},
                in_flight=len(self._in_flight),
                stored=self._stored,
                retried=self._retried,
                dead_lettered=self._dead,
                shed=self._shed,
                last_error=self._last_error,
                oldest_pending_age=now - oldest,
            )

    def dead_letters(self) -> list[DeadLetter]:
        with self._lock:
            return list(self._dead_letters)

    def requeue(self, letter: DeadLetter) -> Receipt:
        """Tries a dead-lettered write again; it stops being dead once enqueued."""
        record = letter.journal_record
        receipt = self.enqueue(
            spec_of(record),
            tuple(record["r"]),
            delete=record["o"] == "delete",
            priority=Priority(record["p"]),
            expect=record["e"],
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
            except Exception:  # noqa: BLE001 - the application's callback must not stop us
                _log.exception("statekeep write-behind: the on_event callback failed on %s", name)

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

    def _journal_loop(self) -> None:
        while True:
            with self._lock:
                self._journal_idle = True
                self._journal_work.wait_for(
                    lambda: bool(self._unjournaled) or self._state == "closed"
                )
                self._journal_idle = False
                if not self._unjournaled:
                    return
            time.sleep(_GATHER)  # let a batch gather (enqueue does not wake a busy thread)
            with self._lock:
                keys, self._unjournaled = self._unjournaled, {}
                items = [self._items.get(k) or self._in_flight.get(k) for k in keys]
                batch = [
                    (item, list(item.receipts), journal_content(item)) for item in items if item
                ]
            # outside the lock: building records is the costly part
            records = [journal_record(*content, run=self._run) for _, _, content in batch]
            assert self._journal is not None
            try:
                segment = self._journal.append(records) if records else 0
            except BackendError as exc:
                with self._lock:
                    self._last_error = str(exc)
                    self._unjournaled.update(dict.fromkeys(keys))
                time.sleep(self.options.retry_base)
                continue
            resolved = []
            with self._lock:
                for item, receipts, content in batch:
                    written = (segment, (self._run, content[-1]))
                    while item.merged_into is not None:  # put back under a newer write
                        item = item.merged_into
                    if item.resolved:  # stored while being journaled
                        resolved.append(written)
                        continue
                    item.journal_ids.append(written)
                    for receipt in receipts:
                        receipt.durable = True
                self._changed.notify_all()
            self._mark_resolved(resolved)

    def _flush_loop(self) -> None:
        while True:
            with self._lock:
                batch = self._next_batch()
                if batch is None:
                    return
            outcome = store_batch(self._backend, batch, self._hooks)
            self._settle(batch, outcome)

    def _next_batch(self) -> list[Item] | None:
        """Waits (lock held) until a batch is due; None when it is time to stop."""
        while True:
            now = time.monotonic()
            if self._state == "closed":
                return None
            if now >= self._retry_at:
                batch = self._take(now)
                if batch:
                    return batch
                wake = self._next_due(now)
            else:
                wake = self._retry_at
            self._wake_at = wake
            self._work.wait(None if wake is None else max(wake - now, 0.0005))
            self._wake_at = time.monotonic()  # awake: enqueue need not wake it

    def _take(self, now: float) -> list[Item]:
        o = self.options
        everything = self._flushing > 0 or self._state == "closing"
        keys: dict[Key, None] = {}
        critical = self._queues[Priority.CRITICAL]
        normal, low = self._queues[Priority.NORMAL], self._queues[Priority.LOW]
        keys.update(dict.fromkeys(first(critical, o.max_batch)))
        while self._deadlines and self._deadlines[0][0] - o.window / 2 <= now:
            _, _, key = heapq.heappop(self._deadlines)
            if key in self._items and len(keys) < o.max_batch:
                keys[key] = None
        if normal and (
            everything
            or len(normal) >= o.max_batch
            or self._items[next(iter(normal))].since + o.window <= now
        ):
            keys.update(dict.fromkeys(first(normal, o.max_batch - len(keys))))
        if low and (
            everything
            or self._items[next(iter(low))].since + (o.window if not normal else o.low_max_age)
            <= now
        ):
            keys.update(dict.fromkeys(first(low, o.max_batch - len(keys))))
        batch = []
        for key in keys:
            item = self._items.pop(key)
            del self._queues[item.priority][key]
            self._in_flight[key] = item
            batch.append(item)
        return batch

    def _due(self, item: Item, now: float) -> float:
        """When the flusher should take this pending write."""
        o = self.options
        if item.priority is Priority.CRITICAL:
            due = now
        elif item.priority is Priority.NORMAL:
            due = item.since + o.window
        else:
            wait = o.low_max_age if self._queues[Priority.NORMAL] else o.window
            due = item.since + wait
        if item.deadline is not None:
            due = min(due, item.deadline - o.window / 2)
        return due

    def _next_due(self, now: float) -> float | None:
        o = self.options
        times = []
        if self._queues[Priority.CRITICAL]:
            return now
        normal, low = self._queues[Priority.NORMAL], self._queues[Priority.LOW]
        if normal:
            times.append(self._items[next(iter(normal))].since + o.window)
        if low:
            wait = o.low_max_age if normal else o.window
            times.append(self._items[next(iter(low))].since + wait)
        if self._deadlines:
            times.append(self._deadlines[0][0] - o.window / 2)
        return min(times) if times else None

    # -- storing -------------------------------------------------------------
    def _settle(self, batch: list[Item], outcome: dict[Key, int | StatekeepError]) -> None:
        resolved: list[JournalId] = []
        callbacks: list[Callable[[], None]] = []
        dead: list[tuple[Item, StatekeepError]] = []
        with self._lock:
            transient = None
            for item in batch:
                del self._in_flight[item.key]
                result = outcome[item.key]
                if type(result) is int:  # stored
                    self._stored += 1
                    resolved.extend(item.journal_ids)
                    callbacks.extend(self._resolve(item, version=result))
                elif isinstance(result, TransientBackendError):
                    transient = result
                    self._put_back(item)
                else:
                    assert isinstance(result, StatekeepError)
                    dead.append((item, result))
                    resolved.extend(item.journal_ids)
                    callbacks.extend(self._resolve(item, error=result))
            if transient is not None:
                self._attempt += 1
                self._retried += 1
                self._last_error = str(transient)
                delay = self._backoff.delay(self._attempt)
                self._retry_at = time.monotonic() + delay
                self._emit("retry", attempt=self._attempt, delay=delay, error=str(transient))
            else:
                self._attempt = 0
            for item, error in dead:
                self._dead += 1
                self._last_error = str(error)
                letter = DeadLetter(
                    item.key[0],
                    item.key[1],
                    item.delete,
                    f"{type(error).__name__}: {error}",
                    journal_record(
                        item.spec,
                        item.row,
                        item.delete,
                        item.expect,
                        item.priority,
                        None,
                        item.seq,
                        run=self._run,
                    ),
                )
                self._dead_letters.append(letter)
                if self._dead_file is not None:
                    self._dead_file.append(letter)
                self._emit("dead_letter", collection=item.key[0], id=item.key[1], error=str(error))
            if self._high and len(self._items) < 0.7 * self.options.max_pending:
                self._high = False
                self._emit("health.ok", pending=len(self._items))
        self._mark_resolved(resolved)
        for callback in callbacks:
            callback()
        self._deliver()  # before waking flush(): its events are out when it returns
        with self._lock:
            self._changed.notify_all()

    def _mark_resolved(self, ids: list[JournalId]) -> None:
        """Writes the journal marker for these records (and any a journal error
        held up before); on an error they wait for the next try."""
        if self._journal is None:
            return
        with self._lock:
            if self._unresolved:
                ids, self._unresolved = [*self._unresolved, *ids], []
        if not ids:
            return
        try:
            self._journal.resolve(ids)
        except BackendError as exc:
            with self._lock:
                self._last_error = str(exc)
                self._unresolved.extend(ids)

    def _put_back(self, item: Item) -> None:
        newer = self._items.get(item.key)
        if newer is not None:  # a later write of the entity waits: it wins
            newer.receipts[:0] = item.receipts
            newer.journal_ids.extend(item.journal_ids)
            newer.first_seq = min(newer.first_seq, item.first_seq)
            item.merged_into = newer  # a journal write of item in progress lands on newer
            if self._journal is not None:  # journal newer again: its receipts then all
                self._unjournaled[item.key] = None  # become durable, moved ones included
                if self._journal_idle:
                    self._journal_idle = False
                    self._journal_work.notify()
            return
        self._items[item.key] = item
        queue = self._queues[item.priority]
        queue[item.key] = None
        if item.deadline is not None:
            heapq.heappush(self._deadlines, (item.deadline, item.seq, item.key))

    def _resolve(
        self, item: Item, *, version: int | None = None, error: StatekeepError | None = None
    ) -> list[Callable[[], None]]:
        """Completes the receipts of a write (lock held); returns their await callbacks."""
        item.resolved = True
        if item.key not in self._items:  # else a newer write of it still needs journaling
            self._unjournaled.pop(item.key, None)
        callbacks = []
        for receipt in item.receipts:
            if error is None:
                receipt.version, receipt.stored, receipt.durable = version, True, True
            else:
                receipt.error = error
            if receipt._callbacks:  # only awaited receipts have any
                callbacks.extend(receipt._settle())
        return callbacks

    # -- recovery ------------------------------------------------------------
    def _recover(self, journal: Journal) -> None:
        now = time.monotonic()
        self._items = recovered(journal.recover(), now)
        for key, item in self._items.items():
            self._seq += 1
            item.seq = item.first_seq = self._seq
            self._queues[item.priority][key] = None
            if item.deadline is not None:
                heapq.heappush(self._deadlines, (item.deadline, self._seq, key))
        if self._items:
            with self._lock:
                self._start()
                self._work.notify()
