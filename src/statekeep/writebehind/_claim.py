"""Which journal directory a write-behind engine may use: one it holds a lock on.

Several stores may write behind into one database at the same time (other
processes, or other Store objects in one process). Each needs a journal of
its own: a store that opened another's live journal would take its pending
writes for a crashed run's and store them a second time. So an engine holds
an exclusive lock (flock) on a journal directory for as long as it runs: the
database's `<db>.writebehind/` if it is free, else a free (or new)
`<db>.writebehind/more-<n>/`. A lock that is free means its owner is gone
(the OS releases it when a process dies), so the records left in that
directory are a crashed run's: the engine that claims it recovers them. Free
directories with leftovers are claimed first.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import BackendError, ConfigurationError

LOCK = "lock"
_MORE = "more-"


def _candidates(base: Path) -> list[Path]:
    extra = sorted(
        (p for p in base.glob(f"{_MORE}*") if p.is_dir()),
        key=lambda p: int(p.name[len(_MORE) :]) if p.name[len(_MORE) :].isdigit() else 0,
    )
    return [base, *extra]


def _try_lock(directory: Path) -> int | None:
    fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _has_leftovers(directory: Path) -> bool:
    return any(directory.glob("segment-*.log"))


def claim(base: Path) -> tuple[Path, int]:
    """A journal directory under base that this engine now holds, and the
    descriptor whose lock it holds (close it to let go)."""
    try:
        base.mkdir(parents=True, exist_ok=True)
        free: list[tuple[Path, int]] = []
        for directory in _candidates(base):
            fd = _try_lock(directory)
            if fd is None:
                continue
            if _has_leftovers(directory):
                for _, other in free:
                    os.close(other)
                return directory, fd
            free.append((directory, fd))
        if free:
            for _, other in free[1:]:
                os.close(other)
            return free[0]
        number = len(_candidates(base))
        while True:
            directory = base / f"{_MORE}{number}"
            directory.mkdir(exist_ok=True)
            fd = _try_lock(directory)
            if fd is not None:
                return directory, fd
            number += 1
    except OSError as exc:
        raise BackendError(f"cannot use journal directory {base}: {exc}") from exc


def journal_directories(base: Path) -> list[Path]:
    """The journal directories under base, in claim order ([] if base is none)."""
    return _candidates(base) if base.is_dir() else []


@contextmanager
def holding(directory: Path) -> Iterator[None]:
    """Holds a journal directory (as an engine would) for the block, so that no
    engine claims it meanwhile; ConfigurationError if a running engine holds it."""
    try:
        fd = _try_lock(directory)
    except OSError as exc:
        raise BackendError(f"cannot use journal directory {directory}: {exc}") from exc
    if fd is None:
        raise ConfigurationError(
            f"a running store holds the journal {directory}: stop it first, or act from "
            "within it (store.writebehind.dead_letters(), requeue(), discard())"
        )
    try:
        yield
    finally:
        os.close(fd)


def held(directory: Path) -> bool:
    """Does a running engine hold the directory? (Tried with a lock let go at once.)"""
    if not (directory / LOCK).exists():
        return False
    try:
        fd = _try_lock(directory)
    except OSError:
        return True
    if fd is None:
        return True
    os.close(fd)
    return False


def claimable_leftovers(base: Path) -> bool:
    """Are there records of a crashed run under base (in a directory nobody holds)?"""
    try:
        for directory in _candidates(base) if base.is_dir() else []:
            if not _has_leftovers(directory):
                continue
            fd = _try_lock(directory)
            if fd is not None:
                os.close(fd)
                return True
    except OSError:
        return False
    return False


def free_with_leftovers(base: Path, own: Path) -> list[tuple[Path, int]]:
    """The directories under base (other than own) that nobody holds and that
    hold segments: a dead engine's. Each comes locked (the descriptor); the
    caller adopts its segments, then closes the descriptor."""
    found = []
    try:
        for directory in _candidates(base) if base.is_dir() else []:
            if directory == own or not _has_leftovers(directory):
                continue
            fd = _try_lock(directory)
            if fd is not None:
                found.append((directory, fd))
    except OSError:
        pass  # looked again in a second
    return found
