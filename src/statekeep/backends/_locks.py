"""Waiting for a backend's write lock: up to its timeout, or until the store closes.

`take` is how every backend's begin queues its writers: it holds the lock on
return, or raises TransientBackendError after the timeout (the message is
`timed_out`'s, the same for every backend).

Once the store's close() has begun (the closing event is set), a writer
still waiting for the lock gives up with StoreClosedError: it had not
started, so it wrote nothing, and close() need not wait out its timeout.
"""

from __future__ import annotations

import threading
import time

from ..errors import StoreClosedError, TransientBackendError

_SLICE = 0.05  # seconds between looks at the closing event while waiting


def acquire(lock: threading.Lock, timeout: float, closing: threading.Event) -> bool:
    """True once lock is held; False after timeout; StoreClosedError on close."""
    if lock.acquire(blocking=False):
        return True
    deadline = time.monotonic() + timeout
    while not closing.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        if lock.acquire(timeout=min(left, _SLICE)):
            if not closing.is_set():
                return True
            lock.release()
            break
    raise StoreClosedError(
        "the store is closing: this write was still waiting for the write lock, "
        "so it did not start and wrote nothing"
    )


def take(lock: threading.Lock, timeout: float, closing: threading.Event) -> None:
    """Holds lock on return; TransientBackendError after timeout; StoreClosedError on close."""
    if not acquire(lock, timeout, closing):
        raise timed_out(timeout)


def timed_out(timeout: float, of: str | None = None) -> TransientBackendError:
    """The error of a writer that waited `timeout` seconds for the write lock
    (of: the store whose cross-process lock another process holds)."""
    if of is None:
        return TransientBackendError(f"timed out after {timeout}s waiting for the write lock")
    return TransientBackendError(
        f"timed out after {timeout}s waiting for the write lock of {of} "
        "(another process is writing)"
    )
