"""Write-behind engines are closed (drained) at interpreter exit and on
SIGTERM, when the application did not close its store, or dropped it."""

from __future__ import annotations

import atexit
import os
import signal
import threading
from types import FrameType
from typing import Protocol


class Closable(Protocol):
    def close(self) -> object: ...


_open: set[Closable] = set()  # strong: a dropped store's engine still drains
_installed = False
_guard = threading.Lock()


def watch(engine: Closable) -> None:
    """Close this engine at exit or on SIGTERM if it is still open then."""
    global _installed
    with _guard:
        _open.add(engine)
        if _installed:
            return
        _installed = True
    atexit.register(close_all)
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    ):
        signal.signal(signal.SIGTERM, _on_sigterm)


def unwatch(engine: Closable) -> None:
    with _guard:
        _open.discard(engine)


def _forget_all() -> None:
    """In a forked child: the engines are the parent's (see WriteBehind.forget)."""
    global _guard
    _guard = threading.Lock()
    _open.clear()


os.register_at_fork(after_in_child=_forget_all)


def close_all() -> None:
    with _guard:
        engines = list(_open)
    for engine in engines:
        engine.close()


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # The handler runs on the main thread, which may hold an engine's lock at
    # this very moment: drain on a thread of its own, then die of SIGTERM (a
    # second SIGTERM meanwhile ends the process at once).
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_drain_then_die, name="statekeep-sigterm").start()


def _drain_then_die() -> None:
    close_all()
    os.kill(os.getpid(), signal.SIGTERM)
