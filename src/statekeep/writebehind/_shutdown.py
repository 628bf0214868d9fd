"""Write-behind engines are closed (drained) at interpreter exit and on
SIGTERM, when the application did not close its store, or dropped it.

The SIGTERM handler is installed when a store is opened on the main thread
(WriteBehindOptions.drain_on_sigterm, True by default), never behind the
application's back otherwise: a store opened on another thread logs one
warning naming install_sigterm_handler(), which the application calls from
its main thread. A handler the application installed itself is left alone."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
from types import FrameType
from typing import Protocol


class Closable(Protocol):
    def close(self) -> object: ...


_open: set[Closable] = set()  # strong: a dropped store's engine still drains
_installed = False
_warned = False
_guard = threading.Lock()
_log = logging.getLogger("statekeep.writebehind")


def watch(engine: Closable) -> None:
    """Close this engine at exit (or on SIGTERM, once installed) if it is still open then."""
    global _installed
    with _guard:
        _open.add(engine)
        if _installed:
            return
        _installed = True
    atexit.register(close_all)


def at_open(drain_on_sigterm: bool) -> None:
    """A store with write-behind is being opened: installs the SIGTERM drain
    handler on the main thread, or warns once that it cannot."""
    global _warned
    if not drain_on_sigterm:
        return
    if threading.current_thread() is threading.main_thread():
        install_sigterm_handler()
        return
    if signal.getsignal(signal.SIGTERM) is _on_sigterm:  # installed already (statekeep.aio.open)
        return
    with _guard:
        if _warned:
            return
        _warned = True
    _log.warning(
        "statekeep: a store was opened off the main thread, so no SIGTERM handler drains "
        "its write-behind queue; call statekeep.writebehind.install_sigterm_handler() "
        "from the main thread (or pass WriteBehindOptions(drain_on_sigterm=False))",
        extra={
            "statekeep": {
                "event": "writebehind.no_sigterm_handler",
                "thread": threading.current_thread().name,
            }
        },
    )


def install_sigterm_handler() -> bool:
    """Makes SIGTERM store what write-behind holds (draining every open
    store, then dying of SIGTERM). Call it from the main thread; a handler
    already installed by the application is kept (False)."""
    current = signal.getsignal(signal.SIGTERM)
    if current is _on_sigterm:
        return True
    if current is not signal.SIG_DFL:
        return False
    signal.signal(signal.SIGTERM, _on_sigterm)
    return True


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
