"""A process that leaves write-behind journals behind, for the tests that kill it.

python _child.py pending URL READY
    opens URL with a flusher that never reaches the database (its begin()
    waits forever, as on a database that hangs), enqueues CRITICAL, NORMAL
    and LOW writes of Docs (ids c0.., n0.., l0..; 2, 3 and 4 of them), waits
    until all are durable in the journal, writes READY and sleeps (the
    parent kills it with SIGKILL).
python _child.py hold URL READY
    opens URL, enqueues one Doc and waits until it is stored (so its engine
    holds a journal directory), writes READY and sleeps.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import statekeep
from cli.models import Doc
from statekeep import Priority
from statekeep.backends import open_backend

COUNTS = {Priority.CRITICAL: 2, Priority.NORMAL: 3, Priority.LOW: 4}
PREFIX = {Priority.CRITICAL: "c", Priority.NORMAL: "n", Priority.LOW: "l"}


class Hanging:
    """A real backend whose write-behind flusher never gets a transaction."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def begin(self) -> None:
        if threading.current_thread().name == "statekeep-flusher":
            threading.Event().wait()
        self._inner.begin()


def pending(url: str, ready: str) -> None:
    store = statekeep.open(url, backend=Hanging(open_backend(url, {})))
    receipts = [
        store.enqueue(Doc(id=f"{PREFIX[priority]}{n}", title=priority.name, n=n), priority)
        for priority, count in COUNTS.items()
        for n in range(count)
    ]
    for receipt in receipts:
        if not receipt.wait_durable(60):
            raise SystemExit("a write did not become durable within 60 s")
    assert not any(receipt.stored for receipt in receipts)
    Path(ready).write_text("ready")
    time.sleep(3600)


def hold(url: str, ready: str) -> None:
    store = statekeep.open(url)
    if not store.enqueue(Doc(id="holder", title="holds the journal")).wait_stored(60):
        raise SystemExit("not stored within 60 s")
    Path(ready).write_text("ready")
    time.sleep(3600)


def main(argv: list[str]) -> None:
    mode, url, ready = argv
    if mode == "pending":
        pending(url, ready)
    elif mode == "hold":
        hold(url, ready)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
