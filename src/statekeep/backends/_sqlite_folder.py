"""The private folder of a `sqlite://:memory:` database, and its removal.

The folder is made in /dev/shm (memory) where there is one, else in the
temporary directory, and holds an `owned` file that its process (and any
forked child, through its copy of the descriptor) keeps flocked while it uses
the database. The folder is removed when the last of them lets go (close(),
or the process exiting); the folders of processes killed without either (kill
-9, a crash) are swept by the next sqlite://:memory: store opened, since
/dev/shm is memory until a reboot.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import weakref


def private_folder(owner: object) -> tuple[str, weakref.finalize[[str, int], object]]:
    """A new folder held for owner, and what lets go of it (and removes it
    unless another process holds it still): call it at close; it runs by
    itself when owner is collected or the process exits."""
    shm = "/dev/shm"
    where = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()
    _remove_orphans(where)
    folder = tempfile.mkdtemp(prefix=_PREFIX, dir=where)
    return folder, weakref.finalize(owner, _remove_folder, folder, _hold(folder))


_PREFIX = "statekeep-memory-"
_OWNED = "owned"  # a file in the folder, flocked by its process (and forked children) while used


def _hold(folder: str) -> int:
    """Takes the folder's flock (made under another name, then renamed: an
    `owned` file is always locked by a living owner, or its owner is gone)."""
    making = os.path.join(folder, f"{_OWNED}.new")
    fd = os.open(making, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.rename(making, os.path.join(folder, _OWNED))
    return fd


def _remove_orphans(where: str) -> None:
    """Removes the folders of sqlite://:memory: stores whose processes died
    without close() (kill -9, a crash): /dev/shm is memory until a reboot."""
    try:
        names = [n for n in os.listdir(where) if n.startswith(_PREFIX)]
    except OSError:
        return
    for name in names:
        folder = os.path.join(where, name)
        try:
            fd = os.open(os.path.join(folder, _OWNED), os.O_RDWR | os.O_CLOEXEC)
        except OSError:  # being made, removed meanwhile, or not ours to open
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # its owner lives
            continue
        else:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            os.close(fd)


def _remove_folder(folder: str, held: int) -> None:
    """Lets go of the folder, and removes it unless another process uses it
    still: a forked child holds the flock too (its copy of the descriptor),
    so the parent's close() leaves the database to its children, and the
    last of them to close removes it (or, if it is killed, the sweep)."""
    os.close(held)
    try:
        fd = os.open(os.path.join(folder, _OWNED), os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:  # another process uses it
        return
    else:
        shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(fd)
