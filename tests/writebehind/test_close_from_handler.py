"""A handler on the write-behind thread that closes the store: that thread
still marks its batch done in the journal, so the journal directory stays
claimed until the thread stops writing to it (a store opened meanwhile takes
another directory, not one whose files are still being written and deleted)."""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from typing import Any

import statekeep

from .models import Doc


def _held(lock: Path) -> bool:
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_the_journal_stays_claimed_until_the_closing_thread_is_done(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    store = statekeep.open(f"sqlite:///{path}")
    lock = Path(f"{path}.writebehind") / "lock"
    seen: dict[str, Any] = {}
    done = threading.Event()

    def close_it(event: Any) -> None:
        store.close()
        seen["held after close"] = _held(lock)  # this thread has yet to mark its batch
        seen["thread"] = threading.current_thread()
        done.set()

    store.on(Doc.Created, close_it)
    store.enqueue(Doc(id="queued", title="queued"), statekeep.Priority.CRITICAL)
    assert done.wait(30)
    assert seen["held after close"] is True
    seen["thread"].join(10)
    assert not seen["thread"].is_alive()
    assert not _held(lock)  # released once the thread ended
    with statekeep.open(f"sqlite:///{path}") as again:
        assert again.get(Doc, "queued").title == "queued"
        assert again.writebehind.stats().total_pending == 0
    assert sorted(p.name for p in lock.parent.iterdir()) == ["lock"]  # nothing left to recover
