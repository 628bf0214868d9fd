"""The files backend's Catalog (see base.Catalog): what a store's folder
holds, and its documents moved as they are, for statekeep's operating commands.

A collection is a folder of the root whose name is a collection's name as
_files_layout encodes it (not `.statekeep`, nor a name of statekeep's own,
`statekeep_`: subscription checkpoints, write-behind notes); it is listed once
a commit has made it. It maintains no indexed columns (queries read the
documents), so its spec has none; its bytes are its documents' sizes.

`scan` pages in id order, Python's order of str (code points, as SQLite's
BINARY collation orders them): each page lists the folder (only names are
held: the listing is kept, sorted, while the folder does not change) and
reads no more documents than it returns. It reads as get() does: the calling
thread's transaction, or what is committed. A listing is no snapshot: a
document committed meanwhile after the page's last id is met by a later page.

`load` stages documents as put() does, without the version check; versions
must be what a document holds (an int >= 1) and bodies JSON, or nothing of
the load is staged (ValidationError).
"""

from __future__ import annotations

import bisect
import heapq
import json
import os
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import BackendError, ValidationError
from ._files_commit import Staging, failure
from ._files_layout import SUFFIX, VERSION, Names, document
from ._layout import internal
from .base import CollectionInfo, CollectionSpec

_RACY_NS = 1_000_000_000  # folders changed this recently are listed again (coarse clocks)
_Stamp = tuple[int, int, int]  # the folder's inode, mtime_ns, ctime_ns


class Listings:
    """The sorted ids of a collection's folder, listed again when it changed."""

    def __init__(self, names: Names) -> None:
        self._names = names
        self._hashed: dict[str, str] = {}  # file name: id, for names cut and hashed
        self._last: tuple[str, _Stamp, list[str]] | None = None  # folder, its stamp, its ids

    def ids(self, folder: str, reader: FilesCatalog) -> list[str]:
        """The ids of the documents in folder, sorted ([] for no folder)."""
        try:
            info = os.stat(folder)
        except FileNotFoundError:
            return []
        stamp = (info.st_ino, info.st_mtime_ns, info.st_ctime_ns)
        last = self._last
        if last is not None and last[0] == folder and last[1] == stamp:
            return last[2]
        ids = []
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    name = entry.name
                    if name.endswith(SUFFIX) and not name.startswith("."):
                        id = self._id(entry.path, name, reader)
                        if id is not None:
                            ids.append(id)
        except FileNotFoundError:  # removed meanwhile
            return []
        ids.sort()
        if max(info.st_mtime_ns, info.st_ctime_ns) < time.time_ns() - _RACY_NS:
            self._last = (folder, stamp, ids)  # else it may change within the same stamp
        return ids

    def _id(self, path: str, name: str, reader: FilesCatalog) -> str | None:
        """The id a document's file name stands for (read from the document
        where the name does not hold it); None if the file is gone."""
        id = Names.decode(name[: -len(SUFFIX)])
        if id is not None and self._names.file(id) == name:
            return id
        known = self._hashed.get(name)
        if known is not None:
            return known
        found = reader._read(path, None)  # checks that the name is the id's
        if found is None:
            return None
        self._hashed[name] = found[0]  # the name is the id's hash: it stays the id's
        return found[0]


class FilesCatalog:
    """Catalog for FilesBackend, which inherits it after OverlayTransactions
    (whose _mine it uses) and has every method stubbed here."""

    location: str | None
    _root: str
    _names: Names
    _staging: Staging
    _listings: Listings

    if TYPE_CHECKING:  # what the backend class gives the mixin

        def _mine(self) -> Any: ...
        def _folder(self, collection: str) -> str: ...
        def _read(self, path: str, id: str | None) -> tuple[str, int, str] | None: ...
        def _stored(self, txn: Any, collection: str, id: str) -> tuple[int, str] | None: ...
        def begin(self) -> None: ...
        def commit(self) -> None: ...
        def rollback(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "files",
            "server": None,
            "location": self.location,
            "bytes": _folder_bytes(self._root),
            "layout": VERSION,  # the format of the folder (_files_layout)
        }

    def collections(self) -> list[CollectionInfo]:
        try:
            with os.scandir(self._root) as entries:
                folders = [(e.name, e.path) for e in entries if e.name[0] != "." and e.is_dir()]
        except OSError as exc:
            raise failure("list", self._root, exc) from exc
        found = []
        for name, path in folders:
            collection = Names.decode(name)
            if collection is None or self._names.encode(collection) != name:
                continue  # no name of a collection's (or cut and hashed: not one of 1-63 bytes)
            if internal(collection):
                continue
            counted = _documents(path)
            if counted is not None:
                found.append(CollectionInfo(CollectionSpec(collection), *counted))
        return sorted(found, key=lambda info: info.spec.name)

    def scan(self, collection: str, after: str | None, limit: int) -> list[tuple[str, int, str]]:
        if limit <= 0:
            return []
        folder = self._folder(collection)
        try:
            listed = self._listings.ids(folder, self)
        except OSError as exc:
            raise failure("list", folder, exc) from exc
        txn = self._mine()
        written: set[str] = set()  # by the calling thread's transaction
        changed: set[str] = set()
        if txn is not None:
            for (name, id), change in txn.changes.items():
                if name == collection:
                    changed.add(id)
                    if change is not None:
                        written.add(id)
        start = 0 if after is None else bisect.bisect_right(listed, after)
        committed = (listed[n] for n in range(start, len(listed)) if listed[n] not in changed)
        own = sorted(id for id in written if after is None or id > after)
        found = []
        for id in heapq.merge(committed, own):
            stored = self._stored(txn, collection, id)
            if stored is None:  # deleted since the listing
                continue
            found.append((id, stored[0], stored[1]))
            if len(found) == limit:
                break
        return found

    def load(
        self, spec: CollectionSpec, rows: Sequence[tuple[str, int, str]], *, replace: bool = True
    ) -> None:
        """Outside a transaction: in one of its own."""
        txn = self._mine()
        if txn is None:
            self.begin()
            try:
                self.load(spec, rows)
            except BaseException:
                self.rollback()
                raise
            self.commit()
            return
        for id, version, body in rows:
            _check(spec.name, id, version, body)
        staged = []
        for id, version, body in rows:
            txn.staged += 1
            name = f"{txn.token}-{txn.staged}{SUFFIX}"
            self._staging.write(name, document(id, version, body))
            staged.append(((spec.name, id), (version, name)))
        for key, change in staged:
            txn.change(key, change)


def _check(collection: str, id: str, version: int, body: str) -> None:
    """A row a document can hold (parse() reads it back), or ValidationError."""
    if not isinstance(id, str) or type(version) is not int or version < 1:
        raise ValidationError(
            f"{collection} {id!r}: a document's id is text and its version an int >= 1, "
            f"not {version!r}"
        )
    try:
        json.loads(body)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{collection} {id!r}: the body is not JSON ({exc})") from exc


def _documents(folder: str) -> tuple[int, int] | None:
    """How many documents a folder holds and their bytes; None if it is gone."""
    count = size = 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if not entry.name.endswith(SUFFIX) or entry.name.startswith("."):
                    continue
                try:
                    size += entry.stat().st_size
                except FileNotFoundError:  # deleted since the listing
                    continue
                count += 1
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise failure("list", folder, exc) from exc
    return count, size


def _folder_bytes(root: str) -> int:
    """The sizes of every file under root (documents, the outbox, the staging)."""
    total = 0
    for path in _files(root):
        try:
            total += os.lstat(path).st_size
        except FileNotFoundError:  # removed meanwhile
            continue
        except OSError as exc:
            raise BackendError(f"cannot read the size of {path}: {exc}") from exc
    return total


def _files(root: str) -> Iterator[str]:
    for folder, _, names in os.walk(root):
        for name in names:
            yield os.path.join(folder, name)
