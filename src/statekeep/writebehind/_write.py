"""One entity's pending write, as the engine keeps it, and the journal's
records of it (format 2: a tuple per record, see _journal)."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..backends.base import CollectionSpec, Row
from ..errors import StatekeepError
from ._journal import JournalId, Record, RecordId
from ._options import Priority

Key = tuple[str, str]  # (collection, id)


class Write:
    """The latest content of one entity's coalesced writes. Receipts point at
    it with the sequence number of their enqueue: the write is durable up to
    `durable_seq`, and its outcome (`version` or `error`) is every receipt's."""

    # what a new write starts with, as class attributes: the caller sets only
    # what it has (enqueue is the hot path; no __slots__, so that these can be)
    seq = durable_seq = 0
    row: Row = ()
    delete = False
    base: int | None = None  # the version it is based on (None: any)
    expect: int | None = None
    deadline: float | None = None
    events: tuple[str, ...] = ()  # domain events recorded on the entity (outbox JSON)
    jids: tuple[JournalId, ...] = ()  # its journal records not yet marked done
    jbase: int | None = None  # the base its last journal record says
    # the record the journal thread is writing of it (a batch's note names it too)
    jnext: RecordId | None = None
    # in a batch whose note is written: durable once it commits, so not journaled
    sealed = False
    version: int | None = None  # stored as this version
    error: StatekeepError | None = None
    left = False  # close() left it pending
    merged_into: Write | None = None  # put back under a newer write of the entity
    callbacks: list[Callable[[], None]] | None = None  # awaiting receipts

    def __init__(
        self, key: Key, spec: CollectionSpec, since: float, priority: Priority = Priority.LOW
    ) -> None:
        self.key = key
        self.spec = spec
        self.since = since
        self.priority = priority

    @property
    def done(self) -> bool:
        return self.version is not None or self.error is not None

    def final(self) -> Write:
        write = self
        while write.merged_into is not None:
            write = write.merged_into
        return write

    def record(self, run: int, jseq: int, base: int | None) -> Record:
        """The journal record of its content now."""
        wall = None if self.deadline is None else time.time() + self.deadline - time.monotonic()
        row = self.row
        return (
            run,
            jseq,
            self.key[0],
            self.key[1],
            row[1],
            None if self.delete else row[2],
            self.expect,
            int(self.priority),
            wall,
            base,
            self.events,
        )


def recovered(
    records: list[tuple[int, Record]], noted: dict[tuple[int, int], tuple[Key, int]], now: float
) -> tuple[dict[Key, Write], list[JournalId]]:
    """The pending writes crashed runs left in the journal, one per entity
    (the last content wins; the most urgent priority and deadline hold), and
    the records already stored (a note in the database says so: committed
    before their run could mark them done) to mark done now.

    A record's base is the version its run had stored last of the entity
    when a later batch of that run was committed but not marked."""
    wall = time.time()
    last: dict[tuple[int, Key], int] = {}  # (run, key) -> the version that run stored
    for (run, _), (key, version) in noted.items():
        last[(run, key)] = max(last.get((run, key), 0), version)
    writes: dict[Key, Write] = {}
    runs: dict[Key, int] = {}  # the run of each key's last record
    done: list[JournalId] = []
    for segment, record in records:
        run, seq, collection, id, version, body, expect, priority, deadline, base, events = record
        key = (collection, id)
        if (run, seq) in noted:
            done.append((segment, (run, seq)))
            continue
        stored = last.get((run, key))
        if base is not None and stored is not None and stored > base:
            base = stored  # its own run stored the entity since: no conflict with itself
        write = writes.get(key)
        if write is not None and runs[key] == run:
            # a later record of the same pending write: its events include the earlier's
            write.events = ()
        runs[key] = run
        if write is None:
            # written as id, version and body only: the columns of the spec
            # it was enqueued with may have been rebuilt in another kind
            # since (a deploy), and ensuring that spec would build them back;
            # the database fills the columns it keeps from the body
            write = writes[key] = Write(key, CollectionSpec(collection), now)
            write.priority = Priority(priority)
        write.row = (id, version) if body is None else (id, version, body)
        write.delete, write.expect, write.base = body is None, expect, base
        write.jbase = base
        write.events = write.events + tuple(events)
        write.jids += ((segment, (run, seq)),)
        write.priority = max(write.priority, Priority(priority))
        if deadline is not None:
            due = now + max(0.0, deadline - wall)
            write.deadline = due if write.deadline is None else min(write.deadline, due)
    return writes, done
