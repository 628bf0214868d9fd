"""Stores with write-behind work are closed (drained) at interpreter exit and
on SIGTERM, when the application did not close them itself."""

from __future__ import annotations

import atexit
import os
import signal
import threading
import weakref
from types import FrameType
from typing import Protocol


class Closable(Protocol):
    def close(self) -> None: ...


_open: weakref.WeakSet[Closable] = weakref.WeakSet()
_installed = False
_guard = threading.Lock()


def watch(store: Closable) -> None:
    """Close this store at exit or on SIGTERM if it is still open then."""
    global _installed
    with _guard:
        _open.add(store)
        if _installed:
            return
        _installed = True
    atexit.register(close_all)
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _on_sigterm)


def close_all() -> None:
    for store in list(_open):
        store.close()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    close_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # then die of SIGTERM, as without us
    os.kill(os.getpid(), signal.SIGTERM)
