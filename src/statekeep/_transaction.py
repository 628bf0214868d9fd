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

from ._calls import OPEN, Calls
from ._commit import Commit, CommitHooks
from .backends import owner as _owner
from .backends.base import Backend
from .entity import put_back_recorded
from .errors import ConfigurationError, TransactionError

if TYPE_CHECKING:
    from ._metering import Meter
    from .entity import Entity

# (entities or weak references to them, their versions before the block, weak?)
_Undo = tuple[Sequence[Any], Sequence[int], bool]


class Frame:
    """One open block: its savepoint name (None for the outermost), its undo
    log (the versions to put back if it rolls back), and the events of its
    changes (delivered only once the outermost block commits; dropped with
    the block if it rolls back). It belongs to the process, thread and
    asyncio task that opened it (see _owner), and is closed once it has
    ended: a context copied while it was open (a task or thread started
    inside the block) still holds it, closed or not."""

    __slots__ = ("events", "is_open", "later", "name", "outer", "owner", "taken", "undo_log")

    def __init__(self, name: str | None, outer: Frame | None = None) -> None:
        self.name = name
        self.outer = outer  # the block this one is a savepoint of
        self.owner = _owner.current()
        self.is_open = True
        self.undo_log: list[_Undo] = []
        self.events: list[Any] = []
        # domain events taken from entities by their saves: back to them on undo
        self.taken: list[tuple[Entity, list[Any]]] = []
        # write-behind enqueues made in it: (run at the outermost commit, run on rollback)
        self.later: list[tuple[Callable[[], None], Callable[[], None]]] = []

    def note(self, entity: Entity, old_version: int) -> None:
        self.undo_log.append(((weakref.ref(entity),), (old_version,), True))

    def note_many(self, entities: list[Entity], old_versions: list[int], *, weak: bool) -> None:
        if not weak:
            self.undo_log.append((entities, old_versions, False))
            return
        self._compact_last()
        self.undo_log.append((list(map(weakref.ref, entities)), old_versions, True))

    def _compact_last(self) -> None:
        """Drops the gone entities of the last weak entry, so that save_many
        over a generator holds about one chunk of entries, not one per entity."""
        if not self.undo_log or not self.undo_log[-1][2]:
            return
        refs, versions, _ = self.undo_log.pop()
        live = [(ref, v) for ref, v in zip(refs, versions, strict=True) if ref() is not None]
        if live:
            self.undo_log.append(([r for r, _ in live], [v for _, v in live], True))

    def absorb(self, inner: Frame) -> None:
        self.undo_log.extend(inner.undo_log)
        self.events.extend(inner.events)
        self.taken.extend(inner.taken)
        self.later.extend(inner.later)

    def undo(self) -> None:
        """Puts back what the block took from its entities (domain events)
        and their versions, then runs its roll-backs, last first
        (write-behind enqueues called off, on_rollback callbacks: these see
        the entities as the block found them, and have the last word)."""
        later, self.later = self.later, []
        for entity, taken in reversed(self.taken):
            put_back_recorded(entity, taken)
        for held, versions, weak in reversed(self.undo_log):
            for item, version in zip(reversed(held), reversed(versions), strict=True):
                entity = item() if weak else item
                if entity is not None:
                    entity.__dict__["version"] = version
        for _, roll_back in reversed(later):
            roll_back()


class Frames:
    """The blocks of the current context, outermost first.

    Held in a ContextVar: each thread, and each asyncio task, sees its own
    stack. A task or thread started inside a block (asyncio.create_task,
    asyncio.to_thread, contextvars.copy_context) holds a copy of the stack:
    while the block is open, its writes are refused (they could neither join
    the block's transaction, which is another thread's or task's, nor commit
    on their own without escaping its rollback); once the block has ended,
    it is no transaction any more and they run in transactions of their own."""

    def __init__(self) -> None:
        self._var: ContextVar[tuple[Frame, ...]] = ContextVar("statekeep_frames", default=())
        self.read = self._var.get  # the stack, in one C call (enqueue's hot path)

    @property
    def stack(self) -> tuple[Frame, ...]:
        return self._var.get()

    def current(self) -> Frame | None:
        """The caller's own innermost open block; None outside any.

        Raises TransactionError when the innermost open block of this
        context belongs to another thread, task or process."""
        stack = self._var.get()
        for frame in reversed(stack):
            if frame.is_open:
                owner = _owner.current()
                if frame.owner != owner:
                    raise TransactionError(_foreign_block(frame.owner))
                return frame
        return None

    def push(self, frame: Frame) -> Token[tuple[Frame, ...]]:
        return self._var.set((*self._var.get(), frame))

    def pop(self, token: Token[tuple[Frame, ...]]) -> None:
        # ended in another context (an async generator's finalizer): the frame,
        # closed, stays on the stack of the context that opened it
        with contextlib.suppress(ValueError):
            self._var.reset(token)


def _foreign_block(owner: _owner.Owner) -> str:
    who = _owner.describe(owner)
    if owner[0] != _owner.current()[0]:
        return (
            f"the transaction open around this write belongs to {who}: the write can "
            "neither join it nor commit apart from it, so nothing was written. Fork "
            "outside `with store.transaction():` blocks."
        )
    return (
        f"the transaction open around this write belongs to {who} (this task or thread "
        "was started inside `with store.transaction():`, e.g. by asyncio.create_task or "
        "asyncio.to_thread): the write can neither join it nor commit apart from it, so "
        "nothing was written. Write in the task that opened the block, or start this "
        "task or thread after the block."
    )


class Parts(Protocol):
    """What a transaction block needs of the store's core (statekeep._core.Core)."""

    @property
    def backend(self) -> Backend: ...
    @property
    def calls(self) -> Calls: ...
    @property
    def frames(self) -> Frames: ...
    @property
    def meter(self) -> Meter: ...


class Transaction:
    """`with store.transaction():` — commits on success, rolls back on an exception.

    The outermost block is a Commit (statekeep._commit): its events are
    written to the outbox before the commit and delivered after it; a nested
    block is a savepoint whose events join the outer block's."""

    def __init__(self, core: Parts, hooks: CommitHooks) -> None:
        self._core = core
        self._hooks = hooks
        self._frame: Frame | None = None
        self._commit: Commit | None = None
        self._token: Token[tuple[Frame, ...]] | None = None

    def __enter__(self) -> Transaction:
        if self._frame is not None:
            raise ConfigurationError(
                "this transaction block is already open; call transaction() again"
            )
        core = self._core
        frames = core.frames
        with core.calls:
            outer = frames.current()
            name = None if outer is None else f"statekeep_{len(frames.stack)}"
            frame = Frame(name, outer)
            if frame.name is None:
                commit = Commit(core.backend, self._hooks, frame.events)
                commit.begin()
                self._commit = commit
            else:
                core.backend.savepoint(frame.name)
        self._frame, self._token = frame, frames.push(frame)
        return self

    def on_rollback(self, undo: Callable[[], None]) -> None:
        """Calls undo if this block rolls back, or the block it is part of
        does (after it commits as a savepoint): the callbacks run last first.
        (store.send uses it to put the caller's entity back as it was.)"""
        frame = self._frame
        if frame is None or not frame.is_open:
            raise ConfigurationError("on_rollback() is for a transaction block that is open")
        frame.later.append((nothing, undo))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        frame, token, commit = self._frame, self._token, self._commit
        if frame is None or token is None:
            raise ConfigurationError("this transaction block was not entered: use `with`")
        self._frame = self._token = self._commit = None
        frame.is_open = False
        calls = self._core.calls
        self._core.frames.pop(token)
        if frame.owner[0] != _owner.current()[0]:  # a forked child leaving its parent's block
            frame.undo()
            raise TransactionError(
                "this block was opened before the process forked: its transaction is the "
                "parent's, so nothing of it is committed here. Fork outside "
                "`with store.transaction():` blocks."
            )
        if not calls.enter_to_finish():  # closed: the backend is gone with the transaction
            frame.undo()
            raise calls.closed_error()
        try:
            if frame.owner[1:] == _owner.current()[1:]:
                self._finish(frame, commit, exc_type)
            else:  # ended by another task of its thread (e.g. an async generator's finalizer)
                with _owner.acting_for(frame.owner[2]):
                    self._finish(frame, commit, exc_type)
        finally:
            calls.leave()

    def _finish(
        self, frame: Frame, commit: Commit | None, exc_type: type[BaseException] | None
    ) -> None:
        backend, calls = self._core.backend, self._core.calls
        if exc_type is not None or calls.state != OPEN:
            frame.undo()
            if commit is not None:
                commit.rollback()
                self._core.meter.transaction(False)
            else:
                assert frame.name is not None
                backend.rollback_to(frame.name)
            if exc_type is None:  # closing: nothing more is committed
                raise calls.closed_error()
            return
        try:
            if commit is not None:
                commit.commit()
            else:
                assert frame.name is not None
                try:
                    backend.release(frame.name)
                except BaseException:  # what the block did is undone, as for an exception in it
                    with contextlib.suppress(Exception):
                        backend.rollback_to(frame.name)
                    raise
        except BaseException:
            frame.undo()
            if commit is not None:  # its commit failed: nothing of it is stored
                self._core.meter.transaction(False)
            raise
        if frame.outer is not None:
            frame.outer.absorb(frame)
        elif commit is not None:
            self._core.meter.transaction(True)
            later, frame.later = frame.later, []
            try:
                commit.deliver()
            finally:  # the writes enqueued in the block are enqueued now it committed
                for enqueue, _ in later:
                    enqueue()


def nothing() -> None:
    """What an on_rollback callback does when its block commits."""
