"""The files backend: a folder per collection, a JSON document per entity.

`files:///data/app` keeps each entity in `app/<collection>/<id>.json`, which
people, `jq` and other tools can read (the layout: _files_layout.py). Writes
are staged in files of their own as a transaction goes and committed all at
once through a manifest (the protocol: _files_commit.py), so a crash at any
moment leaves every entity in its old or its new state and every transaction
whole.

One writer at a time: threads of a process queue on a lock, then take an
flock that excludes the writers of other processes, each waiting up to
`timeout` seconds in all (TransientBackendError after that). Readers take no
lock and never wait: each document is replaced by an atomic rename, so a
reader sees it whole, old or new. A transaction's own reads see its staged
changes (an overlay, with a journal for savepoints, as in the memory backend).

find reads every document of the collection and filters and orders them in
Python (_matching.py); parsed documents are cached by file identity (inode,
size, times), so a repeated find reads only the files that changed.

The outbox is a file of events per transaction, committed with its documents.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import (
    BackendError,
    ConfigurationError,
    ConflictError,
    NotFoundError,
)
from . import _matching
from ._claims import Claim, FileClaims
from ._files_catalog import FilesCatalog, Listings
from ._files_commit import Delete, Put, Staging, WriterLock, failure, sync_path
from ._files_layout import (
    LAST,
    META,
    OUTBOX,
    SUFFIX,
    Names,
    document,
    event_files,
    events_name,
    events_text,
    format_text,
    parse,
    probe_folding,
    read_events,
    read_file,
    read_format,
)
from ._locks import take, timed_out
from ._overlay import Overlay, OverlayTransactions
from ._owner import current_task
from .base import CHUNK_ROWS, CollectionSpec, Filter, Index, Query, Row, atomic, conflict_detail

_Key = tuple[str, str]  # (collection, id)
_Change = tuple[int, str] | None  # (version, staged file) or None: deleted
_Stamp = tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns
_GAP_LISTINGS = 5  # listings of the outbox before a gap in it counts as pruned
_RACY_NS = 1_000_000_000  # files changed this recently are read again (coarse clocks)


@dataclass
class _Transaction(Overlay[_Change]):
    token: str = ""
    staged: int = 0  # files staged so far (they are named <token>-<n>.json)
    events: list[str] = field(default_factory=list)
    # files of the outbox committed with the documents (prune_events rewrites them)
    outbox_puts: list[Put] = field(default_factory=list)
    outbox_deletes: list[Delete] = field(default_factory=list)


@dataclass
class _Cache:
    """One collection's parsed documents by file name, for one set of indexes."""

    indexes: tuple[Index, ...]
    rows: dict[str, tuple[_Stamp, Row]] = field(default_factory=dict)


class FilesBackend(OverlayTransactions[_Transaction], FilesCatalog):
    chunk_rows = CHUNK_ROWS  # rows per save_many chunk: the default

    def __init__(self, path: str, *, timeout: float = 5.0, fsync: bool = True) -> None:
        self._root = os.path.abspath(path)
        self.location: str | None = self._root
        self.embedded = False
        self.claims_on_host = True  # its claims are flocks (or in-process)
        self._timeout = timeout
        self._fsync = fsync
        meta = os.path.join(self._root, META)
        try:
            os.makedirs(os.path.join(meta, "staging"), exist_ok=True)
            os.makedirs(os.path.join(self._root, OUTBOX), exist_ok=True)
            self._names = Names(folded=self._format(meta))
            self._lock = WriterLock(os.path.join(meta, "lock"))
        except (OSError, ValueError) as exc:
            raise ConfigurationError(f"cannot open a files store at {path!r}: {exc}") from exc
        self._staging = Staging(self._root, os.path.join(meta, "staging"), fsync=fsync)
        self._write_lock = threading.Lock()
        self._closing = threading.Event()
        self._local = threading.local()
        self._cache: dict[str, _Cache] = {}
        self._folders: dict[str, str] = {}  # collection: its folder's path
        self._listings = Listings(self._names)  # for scan (_files_catalog)
        self._outbox = os.path.join(self._root, OUTBOX)
        self._new_events = threading.Condition()  # commits of this process that added events
        self._event_commits = 0
        self._claims = FileClaims(os.path.join(meta, "subscriptions"))
        self._closed = False
        if self._lock.acquire(0):  # else a live writer has recovered (at its begin)
            try:
                self._staging.recover()
            finally:
                self._lock.release()

    def _format(self, meta: str) -> bool:
        """Whether names are folded: as format.json says, or as the file system
        needs it (written once, when the store is made)."""
        path = os.path.join(meta, "format.json")
        try:
            with open(path, "rb") as file:
                return read_format(file.read())
        except FileNotFoundError:
            pass
        folded = probe_folding(meta)
        temporary = f"{path}.{secrets.token_hex(8)}.tmp"
        with open(temporary, "wb") as file:
            file.write(format_text(folded=folded))
            if self._fsync:
                os.fsync(file.fileno())
        os.replace(temporary, path)
        if self._fsync:
            sync_path(meta, directory=True)
        return folded

    def close(self) -> None:
        if self._closed:
            return
        if self._mine() is not None:
            self.rollback()
        self._closed = True
        self._lock.close()  # a transaction of another thread can no longer commit
        self._cache = {}

    def closing(self) -> None:
        self._closing.set()

    def after_fork(self) -> None:
        """In a forked child: the writers' lock is opened anew (a copy of the
        parent's descriptor shares the parent's flock, so both would think
        they held it); a transaction open at the fork stays the parent's."""
        if not self._closed:
            self._lock = WriterLock(self._lock.path)
        self._write_lock = threading.Lock()
        self._closing = threading.Event()
        self._local = threading.local()
        self._new_events = threading.Condition()

    # -- collections ---------------------------------------------------------
    def ensure_collection(self, spec: CollectionSpec, *, create: bool = True) -> None:
        """Nothing to do: a collection's folder is made by the first commit
        that writes to it, and indexed values are read from the documents."""

    def _folder(self, collection: str) -> str:
        folder = self._folders.get(collection)
        if folder is None:
            folder = self._folders[collection] = f"{self._root}/{self._names.encode(collection)}"
        return folder

    def _path(self, collection: str, id: str) -> str:
        return f"{self._folder(collection)}/{self._names.file(id)}"

    # -- transactions --------------------------------------------------------
    def _txn(self) -> _Transaction:
        txn = super()._txn()
        if self._closed:
            raise BackendError(f"the files store {self._root} is closed")
        return txn

    def begin(self) -> None:
        self._check_none_open()
        if self._closed:
            raise BackendError(f"the files store {self._root} is closed")
        deadline = time.monotonic() + self._timeout
        take(self._write_lock, self._timeout, self._closing)
        try:
            if not self._lock.acquire(max(0.0, deadline - time.monotonic())):
                raise timed_out(self._timeout, of=self._root)
            try:
                self._staging.recover()  # what a writer that crashed left behind
            except BaseException:
                self._lock.release()
                raise
        except BaseException:  # KeyboardInterrupt too: never keep a lock
            self._write_lock.release()
            raise
        self._local.txn = _Transaction(task=current_task(), token=secrets.token_hex(4))

    def commit(self) -> None:
        txn = self._txn()
        try:
            puts: list[Put] = []
            deletes: list[Delete] = []
            for (collection, id), change in txn.changes.items():
                folder, name = self._names.encode(collection), self._names.file(id)
                if change is None:
                    deletes.append((folder, name))
                else:
                    puts.append((folder, name, change[1]))
            if txn.events:  # last: the data is in place before its events show
                puts.extend(self._stage_events(txn))
            puts.extend(txn.outbox_puts)
            deletes.extend(txn.outbox_deletes)
            if puts or deletes:
                self._staging.commit(puts, deletes)
        finally:  # a failed commit cleans up after itself, or leaves a recovery
            self._end(txn, discard=False)
        if txn.events:
            with self._new_events:
                self._event_commits += 1
                self._new_events.notify_all()

    def rollback(self) -> None:
        txn = self._mine()
        if txn is not None:
            self._end(txn, discard=True)

    def _end(self, txn: _Transaction, *, discard: bool) -> None:
        """Discards what was staged (on rollback) and lets the next writer in."""
        self._local.txn = None
        try:
            if discard and txn.staged and not self._closed:
                self._staging.discard()
        finally:
            try:
                if not self._closed:
                    self._lock.release()
            finally:
                self._write_lock.release()

    # -- documents -----------------------------------------------------------
    def _read(self, path: str, id: str | None) -> tuple[str, int, str] | None:
        """(id, version, body) of the document at path, or None if there is none.

        id: the id it must hold; None: whatever id it holds, whose file name
        must be the file's (a copied or renamed file is an error, not an entity)."""
        try:
            data = read_file(path)
        except OSError as exc:
            raise failure("read", path, exc) from exc
        if data is None:
            return None
        try:
            found = parse(data)
        except ValueError as exc:
            raise BackendError(f"{path} is not a statekeep document: {exc}") from exc
        held = found[0]
        if held != id if id is not None else self._names.file(held) != os.path.basename(path):
            raise BackendError(f"{path} holds the document of id {held!r}, which belongs elsewhere")
        return found

    def _staged(self, collection: str, id: str, staged: str) -> tuple[str, int, str]:
        found = self._read(self._staging.path(staged), id)
        if found is None:
            raise BackendError(f"the staged document of {collection} {id!r} is gone")
        return found

    def _stored(self, txn: _Transaction | None, collection: str, id: str) -> tuple[int, str] | None:
        """(version, body) as the calling thread sees it, or None."""
        if txn is not None and (collection, id) in txn.changes:
            change = txn.changes[(collection, id)]
            found = None if change is None else self._staged(collection, id, change[1])
        else:
            found = self._read(self._path(collection, id), id)
        return None if found is None else (found[1], found[2])

    def _version(self, txn: _Transaction | None, collection: str, id: str) -> int:
        if txn is not None and (collection, id) in txn.changes:
            change = txn.changes[(collection, id)]
            return 0 if change is None else change[0]
        found = self._read(self._path(collection, id), id)
        return 0 if found is None else found[1]

    # -- rows ----------------------------------------------------------------
    def put(self, spec: CollectionSpec, rows: Sequence[Row]) -> None:
        """Checks every row's version first, then stages them all: a put that
        raises has changed nothing."""
        txn = self._txn()
        collection = spec.name
        expected: dict[str, int] = {}  # versions as this batch leaves them
        for row in rows:
            id, version = row[0], row[1]
            stored = expected.get(id)
            if stored is None:
                stored = self._version(txn, collection, id)
            if stored != version - 1:
                raise ConflictError(collection, id, conflict_detail(stored, version - 1))
            expected[id] = version
        staged = []
        for row in rows:
            txn.staged += 1
            name = f"{txn.token}-{txn.staged}{SUFFIX}"
            self._staging.write(name, document(row[0], row[1], row[2]))
            staged.append(((collection, row[0]), (row[1], name)))
        for key, change in staged:
            txn.change(key, change)

    def delete(self, collection: str, id: str, version: int | None) -> None:
        txn = self._txn()
        stored = self._version(txn, collection, id)
        if stored == 0:
            raise NotFoundError(collection, id)
        if version is not None and stored != version:
            raise ConflictError(collection, id, conflict_detail(stored, version))
        txn.change((collection, id), None)

    def versions(self, collection: str, ids: Sequence[str]) -> dict[str, int]:
        txn = self._mine()
        found = {id: self._version(txn, collection, id) for id in ids}
        return {id: version for id, version in found.items() if version}

    def get(self, collection: str, id: str) -> str | None:
        found = self._stored(self._mine(), collection, id)
        return None if found is None else found[1]

    def get_many(self, collection: str, ids: Sequence[str]) -> dict[str, str]:
        txn = self._mine()
        found = {id: self._stored(txn, collection, id) for id in ids}
        return {id: stored[1] for id, stored in found.items() if stored is not None}

    def select(self, spec: CollectionSpec, query: Query) -> Iterator[str]:
        yield from _matching.select(spec, self._visible(spec), query)

    def count(self, spec: CollectionSpec, filters: tuple[Filter, ...]) -> int:
        if not filters:  # a listing is enough: no document read, none checked
            return self._count_all(spec.name)
        return _matching.count(spec, self._visible(spec), filters)

    def count_by(
        self, spec: CollectionSpec, column: str, filters: tuple[Filter, ...]
    ) -> dict[Any, int]:
        return _matching.count_by(spec, self._visible(spec), column, filters)

    def explain(self, spec: CollectionSpec, query: Query) -> list[str]:
        return _matching.explain(spec, query)

    def _count_all(self, collection: str) -> int:
        folder = self._folder(collection)
        try:
            names = {n for n in os.listdir(folder) if n.endswith(SUFFIX) and n[0] != "."}
        except FileNotFoundError:
            names = set()
        except OSError as exc:
            raise failure("list", folder, exc) from exc
        txn = self._mine()
        if txn is not None:
            for (changed, id), change in txn.changes.items():
                if changed == collection:
                    (names.discard if change is None else names.add)(self._names.file(id))
        return len(names)

    def _visible(self, spec: CollectionSpec) -> list[Row]:
        """Every row of the collection as the calling thread sees it."""
        rows = self._scan(spec)
        txn = self._mine()
        if txn is not None:
            for (collection, id), change in txn.changes.items():
                if collection != spec.name:
                    continue
                if change is None:
                    rows.pop(id, None)
                    continue
                found = self._staged(collection, id, change[1])
                rows[id] = (id, found[1], found[2], *_matching.indexed_values(spec, found[2]))
        return list(rows.values())

    def _scan(self, spec: CollectionSpec) -> dict[str, Row]:
        """The committed rows of a collection by id, read through the cache."""
        folder = self._folder(spec.name)
        cache = self._cache.get(spec.name)
        if cache is None or cache.indexes != spec.indexes:
            cache = self._cache[spec.name] = _Cache(spec.indexes)
        cached, fresh = cache.rows, {}
        racy = time.time_ns() - _RACY_NS
        rows: dict[str, Row] = {}
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    name = entry.name
                    if not name.endswith(SUFFIX) or name.startswith("."):
                        continue
                    try:
                        info = entry.stat()
                    except FileNotFoundError:  # deleted since the listing
                        continue
                    stamp = (info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
                    hit = cached.get(name)
                    if hit is not None and hit[0] == stamp:
                        row = hit[1]
                    else:
                        found = self._read(entry.path, None)
                        if found is None:
                            continue
                        id, version, body = found
                        row = (id, version, body, *_matching.indexed_values(spec, body))
                    if info.st_ctime_ns < racy:  # else it may change within the same stamp
                        fresh[name] = (stamp, row)
                    rows[row[0]] = row
        except FileNotFoundError:
            pass  # no folder: nothing was ever committed to the collection
        except OSError as exc:
            raise failure("list", folder, exc) from exc
        cache.rows = fresh
        return rows

    # -- the outbox: a file of events per transaction, positions never reused --
    def append_events(self, bodies: Sequence[str]) -> None:
        self._txn().events.extend(bodies)

    def _stage_events(self, txn: _Transaction) -> list[Put]:
        """Stages the transaction's events and the new last position (under the lock)."""
        try:
            data = read_file(f"{self._outbox}/{LAST}")
            last = int(data) if data else self._last_in_files()
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot read the last event position in {self._outbox}") from exc
        events, counter = f"{txn.token}-events{SUFFIX}", f"{txn.token}-last"
        self._staging.write(events, events_text(txn.events))
        self._staging.write(counter, f"{last + len(txn.events)}\n".encode())
        return [(OUTBOX, events_name(last + 1), events), (OUTBOX, LAST, counter)]

    def _last_in_files(self) -> int:
        """The last position, from the events files (when `last` is missing)."""
        files = event_files(self._outbox)
        if not files:
            return 0
        first, name = files[-1]
        data = read_file(f"{self._outbox}/{name}") or b""
        return first + data.count(b"\n") - 1

    def read_events(self, after: int, limit: int) -> list[tuple[int, str]]:
        """Events up to the committed last position, read before the listing
        (see _files_layout.read_events). A gap is listed again: a prune
        rewriting the first file can hide it from one listing; a gap that
        stays is events pruned before this reader got to them."""
        try:
            last = int(read_file(f"{self._outbox}/{LAST}") or 0) or self._last_in_files()
            if last <= after:
                return []
            found: list[tuple[int, str]] = []  # no listing held a whole stretch: read again
            for _ in range(_GAP_LISTINGS):
                read = read_events(self._outbox, after, limit, last)
                if read is None:  # pruned while read: list again
                    continue
                found, whole = read
                if whole:
                    return found
        except (OSError, ValueError) as exc:
            raise BackendError(f"cannot read the events in {self._outbox}: {exc}") from exc
        return found

    def unsettled_events(self, after: int) -> bool:
        return False  # read_events returns every committed event

    def wait_events(self, after: int, timeout: float) -> None:
        """Wakes at once for this process's commits; other processes' are
        seen when the caller reads again after timeout (it polls)."""
        with self._new_events:
            seen = self._event_commits
            try:
                if int(read_file(f"{self._outbox}/{LAST}") or 0) > after:
                    return
            except (OSError, ValueError):
                pass  # the caller's read reports it
            self._new_events.wait_for(lambda: self._event_commits != seen, timeout)

    def prune_events(self, upto: int, keep: int = 0) -> int:
        """Deletes the files of events up to `upto` (but the last `keep`: the
        positions have no gaps), and rewrites the one that holds `upto` and
        later events, in a transaction of its own."""
        upto -= keep
        if upto <= 0:
            return 0
        pruned = 0
        try:
            with atomic(self):
                txn = self._txn()
                for first, name in event_files(self._outbox):
                    if first > upto:
                        break
                    data = read_file(f"{self._outbox}/{name}") or b""
                    bodies = data.decode().split("\n")[:-1]
                    txn.outbox_deletes.append((OUTBOX, name))
                    kept = bodies[upto - first + 1 :]
                    pruned += len(bodies) - len(kept)
                    if kept:
                        txn.staged += 1
                        self._staging.write(f"{txn.token}-kept", events_text(kept))
                        txn.outbox_puts.append((OUTBOX, events_name(upto + 1), f"{txn.token}-kept"))
        except OSError as exc:
            raise failure("prune the events in", self._outbox, exc) from exc
        return pruned

    def claim(self, name: str) -> Claim | None:
        """An flock on a file of the name in .statekeep/subscriptions/."""
        return self._claims.claim(name)
