"""Storing a batch of pending writes: one transaction, the conflict rule (or
the expected version), a note of the journal records it stores, and on a
permanent failure the batch narrowed down to the writes that cause it."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any, Protocol

from .._commit import Commit, CommitHooks
from ..backends.base import Backend, CollectionSpec, Row
from ..errors import (
    BackendError,
    ConflictError,
    StatekeepError,
    TransientBackendError,
)
from ._chains import Chains
from ._journal import RecordId
from ._notes import delete_notes, write_note
from ._records import restamp
from ._write import Key, Write

_log = logging.getLogger("statekeep.writebehind")
_RACES = 5  # tries of a batch whose versions another writer changed meanwhile

# (spec, id, stored version before, version now (0: deleted), body or None,
#  domain events recorded on the entity, as outbox JSON)
Change = tuple[CollectionSpec, str, int, int, str | None, tuple[str, ...]]
Outcome = dict[Key, int | StatekeepError]
Allowed = Callable[[Write, int], bool]  # may this write be stored over that version?
# the journal records of each write, which no longer journals them (its batch's note names them)
# (returns each of their records, with its write)
Seal = Callable[[list[Write]], list[tuple[Write, RecordId]]]


class BatchHooks(CommitHooks, Protocol):
    """What the store does with a stored batch's changes: the events they make
    (batch_events, built only when `active`), written with the batch and
    delivered once it commits (the commit hooks every writer has)."""

    @property
    def active(self) -> bool: ...

    def batch_events(self, changes: Sequence[Change]) -> list[Any]: ...


class Batch:
    """What one batch carries besides its writes: the note it writes (run and
    number) and the notes of earlier batches it deletes."""

    __slots__ = ("allowed", "chained", "hooks", "run", "seal", "stale", "tries", "written")

    def __init__(
        self,
        hooks: BatchHooks | None,
        chains: Chains,
        seal: Seal,
        note: tuple[int, int],
        stale: list[str],
    ) -> None:
        self.hooks, self.seal, self.stale = hooks, seal, stale
        self.allowed: Allowed = chains.allowed
        self.chained: Callable[[Key], bool] = chains.has
        self.run, number = note
        self.tries = iter(f"{self.run}-{number}-{k}" for k in range(1 << 30))
        self.written: list[str] = []  # the notes of its committed transactions


def store_batch(backend: Backend, writes: list[Write], batch: Batch) -> Outcome:
    """Stores the writes in one transaction; on a permanent failure, narrows
    it down one write at a time. Returns each key's stored version, or the
    error that stopped it (a TransientBackendError: try again later)."""
    # a batch whose every write is a new entity or an update of the version it
    # was based on (and this engine stored none of them since) is put without
    # reading versions first: put checks them, and if one is not what its row
    # says the batch fails whole and is written again reading them
    blind = all(map(_as_based, writes, repeat(batch.chained)))
    try:
        for attempt in range(_RACES):
            try:
                return _write(backend, writes, batch, blind)
            except ConflictError:  # another writer changed a version after it was read
                blind = False
                if attempt == _RACES - 1:
                    raise TransientBackendError(
                        "writes raced other writers; trying again"
                    ) from None
    except TransientBackendError as exc:
        return dict.fromkeys((write.key for write in writes), exc)
    except StatekeepError as exc:
        if len(writes) == 1:
            return {writes[0].key: exc}
    except Exception as exc:  # noqa: BLE001 - a bug must not stop the flusher
        failure = BackendError(f"unexpected failure while storing: {exc!r}")
        failure.__cause__ = exc
        if len(writes) == 1:
            return {writes[0].key: failure}
    outcome: Outcome = {}
    for write in writes:
        outcome.update(store_batch(backend, [write], batch))
    return outcome


def _as_based(write: Write, chained: Callable[[Key], bool]) -> bool:
    """Is the write's row (version base + 1, or 1 for a new entity) what it
    is most likely stored as, its expected version (if any) being its base?"""
    if write.delete:
        return False
    version, base, expect = write.row[1], write.base, write.expect
    if version == 1:
        return base in (0, None) and expect in (0, None)
    return base == version - 1 and expect in (None, base) and not chained(write.key)


def _write(backend: Backend, writes: list[Write], batch: Batch, blind: bool) -> Outcome:
    hooks = batch.hooks
    build = hooks is not None and hooks.active
    commit = Commit(backend, hooks)
    with commit as events:  # written to the outbox with the batch, before its commit
        if blind:
            outcome, rows, changes = _put_as_based(backend, writes, build)
        else:
            stored = _stored_versions(backend, writes)
            outcome, rows, changes = _checked(backend, writes, batch, stored, build)
        for spec, spec_rows in rows.values():
            backend.put(spec, spec_rows)
        kept = {key: version for key, version in outcome.items() if isinstance(version, int)}
        sealed = batch.seal([write for write in writes if write.key in kept])
        noted = [(record_id, write.key, kept[write.key]) for write, record_id in sealed]
        note = write_note(backend, next(batch.tries), batch.run, noted) if noted else None
        if batch.stale:
            delete_notes(backend, batch.stale)
        if build and changes:
            assert hooks is not None
            events.extend(hooks.batch_events(changes))
    if note is not None:
        batch.written.append(note)
    _pause_after_commit()
    try:
        commit.deliver()
    except BaseException as exc:  # noqa: BLE001 - a handler's KeyboardInterrupt or SystemExit:
        # no caller to reach on the write-behind thread, which must go on storing
        _log.exception(
            "statekeep write-behind: an event handler stopped (the batch is stored)",
            extra={
                "statekeep": {
                    "event": "writebehind.handler_stopped",
                    "writes": len(writes),
                    "error_type": type(exc).__name__,
                    "error": str(exc),
                }
            },
        )
    return outcome


Rows = dict[str, tuple[CollectionSpec, list[Row]]]  # by collection


def _put_as_based(
    backend: Backend, writes: list[Write], build: bool
) -> tuple[Outcome, Rows, list[Change]]:
    """A batch of writes stored as their rows say (see _as_based): new
    entities as version 1, updates over the version they were based on; the
    put fails whole if one is not."""
    specs = {write.spec.name: write.spec for write in writes}
    for spec in specs.values():
        backend.ensure_collection(spec)
    rows: Rows
    if len(specs) == 1:
        ((name, spec),) = specs.items()
        rows = {name: (spec, [write.row for write in writes])}
    else:
        rows = {name: (spec, []) for name, spec in specs.items()}
        for write in writes:
            rows[write.key[0]][1].append(write.row)
    changes: list[Change] = []
    if build:
        changes = [(w.spec, w.key[1], w.row[1] - 1, w.row[1], w.row[2], w.events) for w in writes]
    return {write.key: write.row[1] for write in writes}, rows, changes


def _checked(
    backend: Backend,
    writes: list[Write],
    batch: Batch,
    stored: dict[Key, int],
    build: bool,
) -> tuple[Outcome, Rows, list[Change]]:
    """Each write against its entity's stored version: the conflict rule or
    its expected version, then its row at the version it gets."""
    outcome: Outcome = {}
    rows: Rows = {}
    changes: list[Change] = []
    for write in writes:
        key = write.key
        collection, id = key
        before = stored.get(key, 0)
        if write.expect is not None and write.expect != before:
            outcome[key] = ConflictError(
                collection, id, f"expected version {write.expect}, stored {before}"
            )
            continue
        if write.expect is None and not batch.allowed(write, before):
            outcome[key] = ConflictError(
                collection,
                id,
                f"the write was based on version {write.base} and version {before} "
                "was stored since by another writer",
            )
            continue
        if write.delete:
            if before:
                backend.delete(collection, id, before)
            version = 0
            if build and before:
                changes.append((write.spec, id, before, 0, None, write.events))
        else:
            version = before + 1
            row = write.row
            body = row[2]  # written for row[1], usually the version it gets
            if version != row[1]:
                body = restamp(body, row[1], version)
            rows.setdefault(collection, (write.spec, []))[1].append((id, version, body, *row[3:]))
            if build:
                changes.append((write.spec, id, before, version, body, write.events))
        outcome[key] = version
    return outcome, rows, changes


def _pause_after_commit() -> None:
    """A test hook: STATEKEEP_TEST_PAUSE_AFTER_COMMIT=seconds widens the
    window between a batch's commit and its journal marker."""
    pause = os.environ.get("STATEKEEP_TEST_PAUSE_AFTER_COMMIT")
    if pause:
        time.sleep(float(pause))


def _stored_versions(backend: Backend, writes: list[Write]) -> dict[Key, int]:
    """The stored versions of the writes' entities."""
    found: dict[Key, int] = {}
    by_collection: dict[str, tuple[CollectionSpec, list[str]]] = {}
    for write in writes:
        by_collection.setdefault(write.key[0], (write.spec, []))[1].append(write.key[1])
    for collection, (spec, ids) in by_collection.items():
        backend.ensure_collection(spec)
        for id, version in backend.versions(collection, ids).items():
            found[(collection, id)] = version
    return found
