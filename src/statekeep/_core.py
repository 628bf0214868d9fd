"""The core of one Store: what its parts share, built once per Store.

The backend, the transaction blocks of each context (frames), the calls in
flight (so that close() lets them finish), the emitter of events and its
bus, the lifecycle state, and an exit stack of what close() releases. The
Store is a facade over it; every part of the store layer (transactions,
save_many, a package built on the store) gets the core, never the Store.
The layers below the store get the one piece their layer may know: the
write-behind engine and the durable subscriptions get the backend and the
emitter's hooks.

`write()` is the write path of save and delete: inside the caller's open
block the write joins it; outside, it is a Commit of its own (statekeep._commit).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from ._calls import Calls
from ._commit import Commit, CommitHooks
from ._emit import Emitter, Pending
from ._metering import Meter
from ._transaction import Frames, Transaction, nothing
from .backends import redacted
from .backends.base import Backend, CollectionSpec, Row
from .entity import Entity
from .errors import ConfigurationError, StoreClosedError, ValidationError

if TYPE_CHECKING:
    from ._schema import EntityInfo
    from .events import Event


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Core:
    __slots__ = (
        "backend",
        "bus",
        "calls",
        "emitter",
        "exits",
        "frames",
        "meter",
        "put_alone",
        "state",
        "url",
    )

    def __init__(self, url: str, backend: Backend, *, outbox: bool, meter: Meter) -> None:
        self.url = url
        self.meter = meter
        self.backend = backend
        # a write of one row in one statement of its own, where the backend has one
        self.put_alone: Callable[[CollectionSpec, Row], bool] | None = getattr(
            backend, "put_alone", None
        )
        self.emitter = Emitter(backend, outbox)
        self.bus = self.emitter.bus
        self.frames = Frames()
        self.calls = Calls(self.closed_error)
        self.state = State.OPEN
        self.exits = ExitStack()  # what close() releases, the last registered first

    # -- lifecycle -----------------------------------------------------------
    def check_open(self) -> None:
        if self.state is not State.OPEN:
            raise self.closed_error()

    def closed_error(self) -> StoreClosedError:
        return StoreClosedError(f"the store {redacted(self.url)} is closed")

    def mark_closed(self) -> None:
        self.state = State.CLOSED

    def after_fork(self) -> None:
        """In a forked child (see _fork): what the parent owns stays the parent's."""
        self.calls.after_fork()
        self.bus.after_fork()
        self.backend.after_fork()

    # -- entities ------------------------------------------------------------
    def info(self, cls: Any) -> EntityInfo:
        """The EntityInfo of an entity class; StoreClosedError once closing."""
        self.check_open()
        info: EntityInfo | None = getattr(cls, "__statekeep__", None)
        if info is None or not isinstance(cls, type):
            raise ConfigurationError(f"expected an Entity subclass, got {cls!r}")
        return info

    def entity_info(self, entity: Any) -> EntityInfo:
        if not isinstance(entity, Entity):
            self.check_open()
            raise ValidationError(f"expected an entity, got {entity!r}")
        return self.info(type(entity))

    # -- transactions --------------------------------------------------------
    def transaction(self, hooks: CommitHooks | None = None) -> Transaction:
        """A block whose events go to hooks (by default: the outbox, then the handlers)."""
        self.check_open()
        return Transaction(self, self.emitter if hooks is None else hooks)

    def write(
        self, spec: CollectionSpec, work: Callable[[], None], events: list[Pending]
    ) -> list[Pending]:
        """Runs work inside the caller's open transaction, or in a Commit of its own.

        work may add to events; they are written to the outbox with the
        transaction. Returns the events to deliver now (none inside a block:
        they wait for it): the caller delivers them (deliver()) once the
        entity reflects the commit. TransactionError (nothing written) when a
        transaction of another thread or task is in the way."""
        frame = self.frames.current()
        self.backend.ensure_collection(spec)
        if frame is not None:
            work()
            if events:
                frame.events.extend(events)
            return []
        with Commit(self.backend, self.emitter, events):
            work()
        return events

    def note(self, entity: Entity, old_version: int, taken: list[Event] | None = None) -> None:
        """What the caller's open block puts back if it rolls back."""
        frame = self.frames.current()
        if frame is not None:
            frame.note(entity, old_version)
            if taken:
                frame.taken.append((entity, taken))

    def after_commit(self, done: Callable[[], None]) -> None:
        """Calls done once the caller's open block commits (outside one: now;
        never if it rolls back)."""
        frame = self.frames.current()
        if frame is None:
            done()
        else:
            frame.later.append((done, nothing))

    def on_rollback(self, undo: Callable[[], None]) -> None:
        """Calls undo if the caller's open block rolls back (see Store.on_rollback)."""
        frame = self.frames.current()
        if frame is not None:
            frame.later.append((nothing, undo))

    def deliver(self, committed: list[Pending]) -> None:
        if committed:
            self.emitter.after_commit(committed)
