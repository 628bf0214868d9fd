"""Claims on durable subscription names: one consumer per name at a time.

A consumer claims its subscription's name before it reads the outbox and
holds the claim until it stops; the others wait in standby, trying again. A
claim ends with its holder: an flock goes with the process's file
descriptors, a PostgreSQL advisory lock with its session, so when a holder
is killed, a standby takes over. (postgres.py makes its own claims.)

FileClaims keeps a lock file per name (named by a hash: names are any text)
in a folder beside the database; LocalClaims is for a database that lives in
one process (memory://, sqlite://:memory:).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import threading
from typing import Protocol

from ..errors import BackendError


class Claim(Protocol):
    def held(self) -> bool:
        """Whether the claim still holds (a lost connection loses it)."""

    def release(self) -> None: ...


class _FileClaim:
    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        watch(self)

    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        unwatch(self)
        if fd is not None:
            os.close(fd)  # the flock goes with the file description

    def forget(self) -> None:
        """In a forked child: closes its copy (the parent's lock stays)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class _Forgettable(Protocol):
    def forget(self) -> None: ...


# The claims this process holds. A forked child gets copies of their
# descriptors (a lock file's, a PostgreSQL session's socket), and a claim
# lasts while any copy is open: the child lets go of its copies (which leaves
# the parent's claim alone), so that a child living on does not keep a name
# from the standbys once the parent stops or dies.
_held: set[_Forgettable] = set()
_held_lock = threading.Lock()
_watching_forks = False


def watch(claim: _Forgettable) -> None:
    global _watching_forks
    with _held_lock:
        if not _watching_forks:
            os.register_at_fork(after_in_child=_forget_in_child)
            _watching_forks = True
        _held.add(claim)


def unwatch(claim: _Forgettable) -> None:
    with _held_lock:
        _held.discard(claim)


def _forget_in_child() -> None:
    global _held_lock
    _held_lock = threading.Lock()  # another thread may have held it at the fork
    for claim in list(_held):
        claim.forget()
    _held.clear()


class FileClaims:
    def __init__(self, folder: str) -> None:
        self._folder = folder

    def claim(self, name: str) -> Claim | None:
        path = os.path.join(self._folder, hashlib.sha256(name.encode()).hexdigest()[:40] + ".lock")
        try:
            os.makedirs(self._folder, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise BackendError(f"cannot claim subscription {name!r} at {path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        except OSError as exc:
            os.close(fd)
            raise BackendError(f"cannot claim subscription {name!r} at {path}: {exc}") from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {name}\n".encode()[:4096])  # for people looking
        return _FileClaim(fd)


class _LocalClaim:
    def __init__(self, claims: LocalClaims, name: str) -> None:
        self._claims: LocalClaims | None = claims
        self._name = name

    def held(self) -> bool:
        return self._claims is not None

    def release(self) -> None:
        claims, self._claims = self._claims, None
        if claims is not None:
            with claims.lock:
                claims.held.discard(self._name)


class LocalClaims:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.held: set[str] = set()

    def claim(self, name: str) -> Claim | None:
        with self.lock:
            if name in self.held:
                return None
            self.held.add(name)
        return _LocalClaim(self, name)
