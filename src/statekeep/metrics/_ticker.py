"""One thread a process that ticks every metered store once a second: it
closes the second of every histogram and evaluates the alerts.

It runs while something is registered (a store that is open, with metrics
on) and ends by itself when the last one leaves; a forked child starts its
own on its first registration. Nothing runs at import time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Protocol

log = logging.getLogger("statekeep.metrics")

INTERVAL = 1.0


class Ticked(Protocol):
    def tick(self, now: float) -> None: ...


class Ticker:
    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._members: weakref.WeakSet[Ticked] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def add(self, member: Ticked) -> None:
        with self._lock:
            self._members.add(member)
            self._start()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="statekeep-metrics", daemon=True)
            self._thread.start()

    def forked(self) -> None:
        """In a forked child: the parent's thread is not here (and its lock may
        have been held by it); what was ticked in the parent is ticked here."""
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread = None
        if self._members:
            self._start()

    def remove(self, member: Ticked) -> None:
        with self._lock:
            self._members.discard(member)
            if not self._members:
                self._wake.set()

    def _run(self) -> None:
        wake = self._wake
        while True:
            wake.wait(self.interval)
            with self._lock:
                if wake.is_set():
                    wake.clear()
                members = list(self._members)
                if not members:
                    self._thread = None
                    return
            now = time.monotonic()
            for member in members:
                try:
                    member.tick(now)
                except Exception as exc:  # one store's failure must not stop the others' ticks
                    log.exception(
                        "statekeep.metrics: a tick of %r failed",
                        member,
                        extra={
                            "statekeep": {
                                "event": "metrics.tick_failed",
                                "member": repr(member),
                                "error_type": type(exc).__name__,
                                "error": str(exc),
                            }
                        },
                    )


TICKER = Ticker()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=TICKER.forked)
