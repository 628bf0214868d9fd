"""Storing a batch of pending writes: one transaction, last write wins (or the
expected version), and on a permanent failure the batch narrowed down to the
writes that cause it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

from .._commit import Commit, CommitHooks
from ..backends.base import Backend, CollectionSpec, Row
from ..errors import BackendError, NotFoundError, StatekeepError, TransientBackendError
from ._item import Item, Key
from ._records import restamp

_log = logging.getLogger("statekeep.writebehind")

# (spec, id, stored version before, version now (0: deleted), body or None)
Change = tuple[CollectionSpec, str, int, int, str | None]


class BatchHooks(CommitHooks, Protocol):
    """What the store does with a stored batch's changes: the events they make
    (batch_events), written with the batch and delivered once it commits (the
    commit hooks every writer has, statekeep._commit)."""

    def batch_events(self, changes: Sequence[Change]) -> list[Any]: ...


def store_batch(
    backend: Backend, batch: list[Item], hooks: BatchHooks | None = None
) -> dict[Key, int | StatekeepError]:
    """Stores the batch in one transaction; on a permanent failure, narrows
    it down one write at a time. Returns each key's stored version, or the
    error that stopped it (a TransientBackendError: try again later)."""
    try:
        return _write(backend, batch, hooks)
    except TransientBackendError as exc:
        return dict.fromkeys((item.key for item in batch), exc)
    except StatekeepError as exc:
        if len(batch) == 1:
            return {batch[0].key: exc}
    except Exception as exc:  # noqa: BLE001 - a bug must not stop the flusher
        failure = BackendError(f"unexpected failure while storing: {exc!r}")
        failure.__cause__ = exc
        if len(batch) == 1:
            return {batch[0].key: failure}
    outcome: dict[Key, int | StatekeepError] = {}
    for item in batch:
        outcome.update(store_batch(backend, [item], hooks))
    return outcome


def _write(
    backend: Backend, batch: list[Item], hooks: BatchHooks | None
) -> dict[Key, int | StatekeepError]:
    commit = Commit(backend, hooks)
    with commit as events:  # written to the outbox with the batch, before its commit
        stored = _stored_versions(backend, batch)
        versions: dict[Key, int | StatekeepError] = {}
        rows: dict[str, tuple[CollectionSpec, list[Row]]] = {}
        changes: list[Change] = []
        for item in batch:
            collection, id = item.key
            if item.delete:
                try:
                    backend.delete(collection, id, item.expect)
                except NotFoundError:
                    if item.expect is not None:
                        raise
                else:
                    changes.append((item.spec, id, stored.get(item.key, 0), 0, None))
                versions[item.key] = 0
                continue
            base = item.expect if item.expect is not None else stored.get(item.key, 0)
            version = base + 1
            row = item.row
            body = row[2]  # written for body_version, usually the version it gets
            if version != item.body_version:
                body = restamp(body, item.body_version, version)
            rows.setdefault(collection, (item.spec, []))[1].append((id, version, body, *row[3:]))
            versions[item.key] = version
            changes.append((item.spec, id, version - 1, version, body))
        for spec, spec_rows in rows.values():
            backend.put(spec, spec_rows)
        if hooks is not None and changes:
            events.extend(hooks.batch_events(changes))
    try:
        commit.deliver()
    except BaseException:  # noqa: BLE001 - a handler's KeyboardInterrupt or SystemExit:
        # no caller to reach on the write-behind thread, which must go on storing
        _log.exception("statekeep write-behind: an event handler stopped (the batch is stored)")
    return versions


def _stored_versions(backend: Backend, batch: list[Item]) -> dict[Key, int]:
    found: dict[Key, int] = {}
    by_collection: dict[str, tuple[CollectionSpec, list[str]]] = {}
    for item in batch:
        by_collection.setdefault(item.key[0], (item.spec, []))[1].append(item.key[1])
    for collection, (spec, ids) in by_collection.items():
        backend.ensure_collection(spec)
        for id, version in backend.versions(collection, ids).items():
            found[(collection, id)] = version
    return found
