"""Transactions: atomic blocks, nested ones as savepoints.

Saving an entity moves its version forward at once (so saving it twice in one
transaction works); when a block rolls back, the versions it moved go back
too, so the entity can be saved again. The block keeps weak references only,
so `save_many` over a generator stays in bounded memory.
"""

from __future__ import annotations

import threading
import weakref
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .backends.base import Backend

if TYPE_CHECKING:
    from .entity import Entity


class Frame:
    """One open block: its savepoint name (None for the outermost) and undo records."""

    __slots__ = ("name", "refs", "versions")

    def __init__(self, name: str | None) -> None:
        self.name = name
        self.refs: list[weakref.ref[Any]] = []
        self.versions: list[int] = []

    def note(self, entity: Entity, old_version: int) -> None:
        self.refs.append(weakref.ref(entity))
        self.versions.append(old_version)

    def absorb(self, inner: Frame) -> None:
        self.refs.extend(inner.refs)
        self.versions.extend(inner.versions)

    def undo(self) -> None:
        for ref, version in zip(reversed(self.refs), reversed(self.versions)):
            entity = ref()
            if entity is not None:
                entity.__dict__["version"] = version


class Frames(threading.local):
    """The open blocks of the current thread, outermost first."""

    def __init__(self) -> None:
        self.stack: list[Frame] = []


class Transaction:
    """`with store.transaction():` — commits on success, rolls back on an exception."""

    def __init__(self, backend: Backend, frames: Frames) -> None:
        self._backend = backend
        self._frames = frames

    def __enter__(self) -> Transaction:
        stack = self._frames.stack
        if stack:
            name = f"statekeep_{len(stack)}"
            self._backend.savepoint(name)
        else:
            name = None
            self._backend.begin()
        stack.append(Frame(name))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack = self._frames.stack
        frame = stack.pop()
        if exc_type is not None:
            frame.undo()
            if frame.name is None:
                self._backend.rollback()
            else:
                self._backend.rollback_to(frame.name)
            return
        try:
            if frame.name is None:
                self._backend.commit()
            else:
                self._backend.release(frame.name)
        except BaseException:
            frame.undo()
            raise
        if stack:
            stack[-1].absorb(frame)
