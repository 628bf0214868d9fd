"""Room in a full pending set (a part of WriteBehind, which holds the state
it shares: see _engine): policy "block" waits for it (up to block_timeout; on a thread running an
event loop, which it would block, it refuses instead),
"shed_low" drops the oldest pending LOW write (its receipt fails with
QueueFullError, once its journal records are marked done), "raise" refuses
the write with QueueFullError."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from ..errors import BackendError, QueueFullError, StoreClosedError
from ._journal import Journal
from ._options import Policy, Priority, WriteBehindOptions
from ._write import Key, Write


class Room:
    """What enqueue does when a new entity would join a full pending set."""

    options: WriteBehindOptions
    _changed: threading.Condition
    _journal: Journal | None
    _pending: dict[Key, Write]
    _lanes: dict[Priority, dict[Key, Write]]
    _unjournaled: dict[Write, float]
    _rejournal: dict[Write, None]
    _state: str
    _shed: int
    _last_error: str | None

    _finish: Callable[[Write], list[Callable[[], None]]]

    def _emit(self, name: str, **info: Any) -> None: ...

    def _make_room(self, now: float) -> None:
        """Called with the lock held when a new entity would join a full pending set."""
        limit = self.options.max_pending
        policy = self.options.policy
        if policy is Policy.SHED_LOW:
            # the oldest LOW write; one being journaled right now is waited for
            victim = next(iter(self._lanes[Priority.LOW].values()), None)
            if victim is not None and victim.jnext is not None:
                oldest = victim
                self._changed.wait_for(lambda: oldest.jnext is None, self.options.block_timeout)
                if len(self._pending) < limit:
                    return
                victim = next(iter(self._lanes[Priority.LOW].values()), None)
            if victim is not None and victim.jnext is None and self._shed_write(victim):
                return
        if policy is Policy.BLOCK and asyncio._get_running_loop() is not None:
            raise QueueFullError(
                f"{len(self._pending)} writes are pending (max_pending={limit}) and this "
                "thread runs an event loop, which waiting for room would block: "
                "`await store.enqueue_wait(...)` of a statekeep.aio.AsyncStore waits without "
                "blocking it"
            )
        if policy is Policy.BLOCK and self._changed.wait_for(
            lambda: len(self._pending) < limit or self._state != "running",
            self.options.block_timeout,
        ):
            if self._state != "running":
                raise StoreClosedError("the store closed while enqueue waited for room")
            return
        raise QueueFullError(f"{len(self._pending)} writes are pending (max_pending={limit})")

    def _shed_write(self, write: Write) -> bool:
        """Drops a pending LOW write; its journal records are marked done
        first, so that its receipt fails only once a crash cannot store it."""
        if write.jids:
            assert self._journal is not None
            try:
                self._journal.write([], list(write.jids))
            except BackendError as exc:
                self._last_error = str(exc)
                return False
            write.jids = ()
        key = write.key
        del self._pending[key]
        del self._lanes[write.priority][key]
        self._unjournaled.pop(write, None)
        self._rejournal.pop(write, None)
        self._shed += 1
        write.error = QueueFullError(
            f"{key[0]} {key[1]!r}: shed to make room (policy shed_low, "
            f"max_pending={self.options.max_pending})"
        )
        for callback in self._finish(write):
            callback()
        self._changed.notify_all()
        self._emit("shed", collection=key[0], id=key[1])
        return True
