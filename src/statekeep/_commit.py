"""The one commit sequence of every writer: save and delete, transaction
blocks, save_many's chunks and write-behind batches.

    commit = Commit(backend, hooks)
    with commit as events:          # begin
        ...                         # the writes; events.extend(the events they make)
        # on leaving: hooks.before_commit(events) (the outbox, in the transaction), commit
    ...                             # the caller makes its objects reflect the commit
    commit.deliver()                # hooks.after_commit(events): the in-process handlers

Anything raised in the block, or by before_commit, KeyboardInterrupt
included, rolls the transaction back and goes on up: nothing was written,
the outbox entries neither. A commit that fails has rolled back (the
backend's commit() says so). Events are delivered only after the commit,
and only when the caller says: the store first makes the entity reflect the
commit (its version, the events taken from it), so that a handler raising
KeyboardInterrupt or SystemExit cannot make a committed write look undone.

This is backends.base.atomic with an outbox, as an object rather than a
generator: a transaction block (statekeep._transaction) begins in one call
and ends in another, and may never end in its thread (a forked child leaving
its parent's block, a store closed under it). A suspended generator would
then roll back from the garbage collector, on whichever thread that runs;
an object left alone leaves the backend alone.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol

from .backends.base import Backend


class CommitHooks(Protocol):
    """What happens to a transaction's events: written with it, delivered after it."""

    def before_commit(self, events: list[Any]) -> None: ...
    def after_commit(self, events: list[Any]) -> None: ...


class Commit:
    """begin; on success before_commit(events) and commit; on anything raised,
    rollback (and re-raise). `deliver()` afterwards hands the events on."""

    __slots__ = ("_backend", "_hooks", "events")

    def __init__(
        self, backend: Backend, hooks: CommitHooks | None, events: list[Any] | None = None
    ) -> None:
        self._backend = backend
        self._hooks = hooks
        self.events: list[Any] = [] if events is None else events

    def begin(self) -> None:
        self._backend.begin()

    def commit(self) -> None:
        """Writes the events to the outbox, then commits; rolls back if the
        outbox write fails."""
        events = self.events
        if events and self._hooks is not None:
            try:
                self._hooks.before_commit(events)
            except BaseException:
                self._backend.rollback()
                raise
        self._backend.commit()

    def rollback(self) -> None:
        self._backend.rollback()

    def deliver(self) -> None:
        """After the commit: the events to the in-process handlers."""
        events = self.events
        if events and self._hooks is not None:
            self._hooks.after_commit(events)

    def __enter__(self) -> list[Any]:
        self._backend.begin()
        return self.events

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self._backend.rollback()
