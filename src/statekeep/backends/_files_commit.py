"""Committing many files as one: the writers' lock, the staging folder and
the manifest that makes a transaction's documents appear all or none.

A transaction writes each new document into the staging folder as it goes
(`<token>-<n>.json`). Commit then

1. syncs those files, and makes the folders of new collections (syncing the root);
   a transaction of one change goes to step 3 at once: its rename (or unlink)
   is atomic by itself, and a crash before it leaves nothing but staged files;
2. writes `manifest.tmp` (a line per change: `put <folder>/<file> <staged>` or
   `delete <folder>/<file>`, then `end <count>`), syncs it and renames it to
   `manifest`, then syncs the staging folder: the transaction is committed;
3. renames the staged files into place and unlinks the deleted ones, then syncs
   every collection folder it touched;
4. unlinks what is left in the staging folder, the manifest last, and syncs
   the staging folder (a manifest must not come back after a power loss and
   repeat its deletes over what later transactions wrote).

A crash before the rename of step 2 leaves no manifest: the staged files are
discarded. A crash after it leaves the manifest: the steps 3 and 4 run again
(a staged file that is gone was already renamed into place), by the next
writer, under the lock, before it does anything else.

With fsync off, no step syncs: a process crash still leaves every entity old or
new and every transaction whole, but a power loss may lose the last
transactions, apply part of one, or leave a document empty.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from ..errors import BackendError

MANIFEST = "manifest"
_HEADER = "statekeep-files manifest 1\n"
_PARALLEL = 32  # files to sync from which syncs run on threads (file systems batch them)
_SYNC_THREADS = 16

# (folder relative to the root, file name, staged file name): a file to move into place
Put = tuple[str, str, str]
# (folder relative to the root, file name): a file to remove
Delete = tuple[str, str]


def failure(action: str, path: str, exc: OSError) -> BackendError:
    error = BackendError(f"cannot {action} {path}: {exc.strerror or exc}")
    error.__cause__ = exc
    return error


def sync_path(path: str, *, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_each(paths: Sequence[str]) -> None:
    for path in paths:
        sync_path(path)


def sync_files(paths: Sequence[str]) -> None:
    """fsync every file: on a few threads when there are many, so that the
    file system can write them out in one journal commit instead of one each."""
    if len(paths) < _PARALLEL:
        _sync_each(paths)
        return
    step = -(-len(paths) // _SYNC_THREADS)
    parts = [paths[start : start + step] for start in range(0, len(paths), step)]
    try:
        with ThreadPoolExecutor(len(parts), thread_name_prefix="statekeep-fsync") as pool:
            synced = pool.map(_sync_each, parts)
    except RuntimeError:  # the interpreter is shutting down: no new threads
        _sync_each(paths)
        return
    for _ in synced:
        pass


class WriterLock:
    """An exclusive flock on one file: one writer at a time across processes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)

    def acquire(self, timeout: float) -> bool:
        """Waits up to timeout seconds (polling); False if the lock stayed taken."""
        deadline = time.monotonic() + timeout
        pause = 0.0005
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
            except OSError as exc:
                raise failure("lock", self.path, exc) from exc
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.02)

    def release(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        os.close(self._fd)


class Staging:
    """The staging folder of one store. Every method runs under the writers' lock."""

    def __init__(self, root: str, directory: str, *, fsync: bool) -> None:
        self.root = root
        self.directory = directory
        self.fsync = fsync

    def path(self, staged: str) -> str:
        return f"{self.directory}/{staged}"

    def write(self, staged: str, data: bytes) -> None:
        """Writes one staged file (a new name: staged names are never reused)."""
        path = self.path(staged)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            try:
                written = os.write(fd, data)
                if written < len(data):  # rare: a signal, a full disk
                    _write_rest(fd, data, written)
            finally:
                os.close(fd)
        except OSError as exc:
            raise failure("write", path, exc) from exc

    def commit(self, puts: Sequence[Put], deletes: Sequence[Delete]) -> None:
        """Steps 1 to 4. A BackendError before the commit point means nothing
        was committed (and nothing is left staged); after it, the commit is
        completed by the next writer."""
        single = len(puts) + len(deletes) == 1
        try:
            self._make_folders({folder for folder, _, _ in puts})
            if self.fsync:
                sync_files([self.path(staged) for _, _, staged in puts])
            if single:  # one rename or unlink is atomic by itself
                self._apply(puts, deletes)
            else:
                self._write_manifest(puts, deletes)
        except OSError as exc:
            error = failure("commit in", self.directory, exc)
            with contextlib.suppress(OSError):  # else the next writer discards it
                self._clear()
            raise error from exc
        try:
            if single:
                self._clear()
            else:
                self._apply(puts, deletes)
                self._clear()
                if self.fsync:
                    sync_path(self.directory, directory=True)
        except OSError as exc:
            raise BackendError(
                f"the transaction is committed, but completing it failed ({exc}); "
                f"the next writer on {self.root} completes it"
            ) from exc

    def _make_folders(self, folders: Iterable[str]) -> None:
        for folder in folders:
            path = os.path.join(self.root, folder)
            try:
                os.mkdir(path)
            except FileExistsError:
                continue
            if self.fsync:  # the new folder's entry, before anything moves into it
                sync_path(os.path.dirname(path), directory=True)

    def _write_manifest(self, puts: Sequence[Put], deletes: Sequence[Delete]) -> None:
        lines = [_HEADER]
        lines.extend(f"put {folder}/{name} {staged}\n" for folder, name, staged in puts)
        lines.extend(f"delete {folder}/{name}\n" for folder, name in deletes)
        lines.append(f"end {len(puts) + len(deletes)}\n")
        temporary = self.path(MANIFEST + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        try:
            data = "".join(lines).encode()
            _write_rest(fd, data, os.write(fd, data))
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(temporary, self.path(MANIFEST))
        if self.fsync:
            sync_path(self.directory, directory=True)

    def _apply(self, puts: Sequence[Put], deletes: Sequence[Delete]) -> None:
        """Step 3; repeating it is harmless."""
        touched: set[str] = set()
        for folder, name, staged in puts:
            try:
                os.rename(self.path(staged), f"{self.root}/{folder}/{name}")
            except FileNotFoundError:
                if os.path.exists(self.path(staged)):  # the folder is gone: make it again
                    self._make_folders([folder])
                    os.rename(self.path(staged), f"{self.root}/{folder}/{name}")
                # else moved into place before a crash
            touched.add(folder)
        for folder, name in deletes:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.root}/{folder}/{name}")
            touched.add(folder)
        if self.fsync:
            for folder in touched:
                with contextlib.suppress(FileNotFoundError):  # deletes in a folder that is gone
                    sync_path(os.path.join(self.root, folder), directory=True)

    def _clear(self) -> None:
        """Step 4 (and the discarding of an uncommitted transaction)."""
        with os.scandir(self.directory) as entries:
            names = [entry.name for entry in entries if entry.name != MANIFEST]
        for name in names:
            os.unlink(self.path(name))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(MANIFEST))

    def discard(self) -> None:
        """Removes an uncommitted transaction's staged files."""
        try:
            self._clear()
        except OSError as exc:
            raise failure("clear", self.directory, exc) from exc

    def recover(self) -> None:
        """Completes a commit a crash interrupted, or discards what a crash
        left uncommitted; nothing to do (one listing) in the usual case."""
        try:
            with os.scandir(self.directory) as entries:
                if next(entries, None) is None:
                    return
        except FileNotFoundError:  # removed by hand: nothing to recover
            try:
                os.makedirs(self.directory, exist_ok=True)
            except OSError as exc:
                raise failure("make", self.directory, exc) from exc
            return
        except OSError as exc:
            raise failure("list", self.directory, exc) from exc
        try:
            manifest = self._read_manifest()
            if manifest is not None:
                self._apply(*manifest)
            self._clear()
            if self.fsync:
                sync_path(self.directory, directory=True)
        except OSError as exc:
            raise failure("recover the transaction in", self.directory, exc) from exc

    def _read_manifest(self) -> tuple[list[Put], list[Delete]] | None:
        """The changes of a committed manifest; None if there is none (or, after
        a power loss with fsync off, only part of one: nothing to roll forward)."""
        try:
            with open(self.path(MANIFEST), "rb") as file:
                text = file.read().decode(errors="replace")
        except FileNotFoundError:
            return None
        lines = text.split("\n")
        if lines[0] + "\n" != _HEADER or lines[-1] != "" or not lines[-2].startswith("end "):
            return None
        puts: list[Put] = []
        deletes: list[Delete] = []
        for line in lines[1:-2]:
            kind, _, rest = line.partition(" ")
            target, _, staged = rest.partition(" ")
            folder, _, name = target.rpartition("/")
            if not (all(map(_plain, folder.split("/"))) and _plain(name)):
                return None  # not a manifest this module wrote
            if kind == "put" and _plain(staged):
                puts.append((folder, name, staged))
            elif kind == "delete" and not staged:
                deletes.append((folder, name))
            else:
                return None
        if lines[-2] != f"end {len(puts) + len(deletes)}":
            return None
        return puts, deletes


def _plain(name: str) -> bool:
    """A name inside one folder (so that a manifest never reaches outside the store)."""
    return name not in ("", ".", "..") and "/" not in name


def _write_rest(fd: int, data: bytes, written: int) -> None:
    view = memoryview(data)[written:]
    while view:
        view = view[os.write(fd, view) :]
