"""Transactions: atomic blocks, nested ones as savepoints.

Saving an entity moves its version forward at once (so saving it twice in one
transaction works); when a block rolls back, the versions it moved go back
too, so the entity can be saved again. A block holds entities weakly, except
those of a list given to save_many, which the caller holds anyway: holding them
costs a pointer each, where a weak reference is an object the garbage
collector has to visit.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Sequence
from contextvars import ContextVar, Token
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from .backends.base import Backend
from .entity import put_back_recorded
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .entity import Entity

# (entities or weak references to them, their versions before the block, weak?)
_Record = tuple[Sequence[Any], Sequence[int], bool]


class Frame:
    """One open block: its savepoint name (None for the outermost), undo
    records, and the events of its changes (delivered only once the outermost
    block commits; dropped with the block if it rolls back)."""

    __slots__ = ("events", "name", "records", "taken")

    def __init__(self, name: str | None) -> None:
        self.name = name
        self.records: list[_Record] = []
        self.events: list[Any] = []
        # domain events taken from entities by their saves: back to them on undo
        self.taken: list[tuple[Entity, list[Any]]] = []

    def note(self, entity: Entity, old_version: int) -> None:
        self.records.append(((weakref.ref(entity),), (old_version,), True))

    def note_many(self, entities: list[Entity], old_versions: list[int], *, weak: bool) -> None:
        if not weak:
            self.records.append((entities, old_versions, False))
            return
        self._compact_last()
        self.records.append((list(map(weakref.ref, entities)), old_versions, True))

    def _compact_last(self) -> None:
        """Drops the gone entities of the last weak record, so that save_many
        over a generator holds about one chunk of records, not one per entity."""
        if not self.records or not self.records[-1][2]:
            return
        refs, versions, _ = self.records.pop()
        live = [(ref, v) for ref, v in zip(refs, versions, strict=True) if ref() is not None]
        if live:
            self.records.append(([r for r, _ in live], [v for _, v in live], True))

    def absorb(self, inner: Frame) -> None:
        self.records.extend(inner.records)
        self.events.extend(inner.events)
        self.taken.extend(inner.taken)

    def undo(self) -> None:
        for entity, taken in reversed(self.taken):
            put_back_recorded(entity, taken)
        for held, versions, weak in reversed(self.records):
            for item, version in zip(reversed(held), reversed(versions), strict=True):
                entity = item() if weak else item
                if entity is not None:
                    entity.__dict__["version"] = version


class Frames:
    """The open blocks of the current context, outermost first.

    Held in a ContextVar: each thread, and each asyncio task, sees its own
    stack (a task started inside a block sees that block as open)."""

    def __init__(self) -> None:
        self._var: ContextVar[tuple[Frame, ...]] = ContextVar("statekeep_frames", default=())

    @property
    def stack(self) -> tuple[Frame, ...]:
        return self._var.get()

    def innermost(self) -> Frame | None:
        stack = self._var.get()
        return stack[-1] if stack else None

    def push(self, frame: Frame) -> Token[tuple[Frame, ...]]:
        return self._var.set((*self._var.get(), frame))

    def pop(self, token: Token[tuple[Frame, ...]]) -> None:
        self._var.reset(token)


class CommitHooks(Protocol):
    """What happens to a transaction's events: written with it, delivered after it."""

    def before_commit(self, events: list[Any]) -> None: ...
    def after_commit(self, events: list[Any]) -> None: ...


class Transaction:
    """`with store.transaction():` — commits on success, rolls back on an exception."""

    def __init__(
        self,
        backend: Backend,
        frames: Frames,
        check_open: Callable[[], None],
        hooks: CommitHooks,
    ) -> None:
        self._backend = backend
        self._frames = frames
        self._check_open = check_open
        self._hooks = hooks
        self._frame: Frame | None = None
        self._token: Token[tuple[Frame, ...]] | None = None

    def __enter__(self) -> Transaction:
        if self._frame is not None:
            raise ConfigurationError(
                "this transaction block is already open; call transaction() again"
            )
        depth = len(self._frames.stack)
        frame = Frame(f"statekeep_{depth}" if depth else None)
        if frame.name is None:
            self._backend.begin()
        else:
            self._backend.savepoint(frame.name)
        self._frame, self._token = frame, self._frames.push(frame)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        frame, token = self._frame, self._token
        if frame is None or token is None:
            raise ConfigurationError("this transaction block was not entered: use `with`")
        self._frame = self._token = None
        self._frames.pop(token)
        try:
            self._check_open()  # closed inside the block: nothing was committed
        except BaseException:
            frame.undo()
            raise
        if exc_type is not None:
            frame.undo()
            if frame.name is None:
                self._backend.rollback()
            else:
                self._backend.rollback_to(frame.name)
            return
        try:
            if frame.name is None:
                if frame.events:
                    try:
                        self._hooks.before_commit(frame.events)
                    except BaseException:
                        self._backend.rollback()
                        raise
                self._backend.commit()
            else:
                try:
                    self._backend.release(frame.name)
                except BaseException:  # what the block did is undone, as for an exception in it
                    with contextlib.suppress(Exception):
                        self._backend.rollback_to(frame.name)
                    raise
        except BaseException:
            frame.undo()
            raise
        outer = self._frames.innermost()
        if outer is not None:
            outer.absorb(frame)
        elif frame.events:
            self._hooks.after_commit(frame.events)
