"""Helpers of the event tests: a recorder, waiting, reading the outbox."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import statekeep
from statekeep import Event, NotFoundError

OUTBOX_METHODS = ("append_events", "read_events", "wait_events", "prune_events")


def has_outbox(store: statekeep.Store) -> bool:
    return all(callable(getattr(store.backend, name, None)) for name in OUTBOX_METHODS)


def close_store(store: statekeep.Store) -> None:
    """Closes a store; its bus's own event loop closes with it (a loop left
    open would warn "unclosed" when garbage-collected, failing a later test)."""
    loop = store.bus._own_loop
    store.close()
    assert loop is None or loop.is_closed()


class Recorder:
    """A handler that keeps what it was given (thread-safe)."""

    def __init__(self, action: Callable[[Event], Any] | None = None) -> None:
        self.events: list[Event] = []
        self.threads: list[str] = []
        self._lock = threading.Lock()
        self._action = action

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)
            self.threads.append(threading.current_thread().name)
        if self._action is not None:
            self._action(event)

    @property
    def seen(self) -> list[tuple[str, str, int]]:
        """(name, entity_id, version) of each event, in delivery order."""
        with self._lock:
            return [(e.name, e.entity_id, e.version) for e in self.events]

    def __len__(self) -> int:
        with self._lock:
            return len(self.events)

    def clear(self) -> None:
        with self._lock:
            self.events.clear()
            self.threads.clear()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "it") -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"waited {timeout}s for {what}")
        time.sleep(0.002)


def read_elsewhere(store: statekeep.Store, cls: type[statekeep.Entity], id: str) -> int | None:
    """The stored version of (cls, id) as another thread reads it (None: absent).

    Another thread sees committed data only; a reader that cannot get in
    within 5 s (the writer still holds the database) fails the test."""
    found: dict[str, int | None] = {}

    def read() -> None:
        try:
            found["version"] = store.get(cls, id).version
        except NotFoundError:
            found["version"] = None

    reader = threading.Thread(target=read)
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "a reader could not get at the store while a handler ran"
    return found["version"]


def outbox(store: statekeep.Store, after: int = 0) -> list[tuple[int, str]]:
    """Every committed outbox entry after position `after`."""
    entries: list[tuple[int, str]] = []
    while True:
        batch = store.backend.read_events(after, 1000)
        if not batch:
            return entries
        entries.extend(batch)
        after = batch[-1][0]


def outbox_events(store: statekeep.Store) -> list[Event]:
    from statekeep._emit import decode

    return [decode(body) for _, body in outbox(store)]


def names(events: list[Event]) -> list[tuple[str, str, int]]:
    return [(e.name, e.entity_id, e.version) for e in events]


_children: list[subprocess.Popen[bytes]] = []


def start_child(args: list[str], output: Path) -> subprocess.Popen[bytes]:
    """A child process whose output goes to a file; killed (if still running)
    and reaped when its test ends (the events conftest's no_child_left)."""
    with output.open("ab") as out:
        child = subprocess.Popen(args, stdout=out, stderr=out)
    _children.append(child)
    return child


def reap_children() -> None:
    while _children:
        child = _children.pop()
        if child.poll() is None:
            child.kill()
        child.wait()
