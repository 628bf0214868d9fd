"""store.enqueue: the write an entity makes, and its enqueue now or at the
commit of the transaction it is made in."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ._core import State
from ._emit import encode
from ._transaction import Frames
from .backends.base import CollectionSpec, Row
from .entity import Entity, has_recorded, put_back_recorded, take_recorded
from .errors import StatekeepError, TransactionError
from .writebehind import (
    Priority,
    Receipt,
    WriteBehind,
    WriteBehindOptions,
    check_deadline,
    check_expect_version,
    check_priority,
    journal_dir,
)

# WriteBehind.enqueue's arguments after spec and row, in order: delete,
# priority, deadline, expect, base, events
Options = tuple[bool, Priority, float | None, int | None, int | None, tuple[str, ...]]

if TYPE_CHECKING:
    from ._core import Core


def enqueue_entity(
    core: Core,
    engine: Callable[[], WriteBehind],
    entity: Entity,
    priority: Priority,
    deadline: float | None,
    expect_version: int | None,
) -> Receipt:
    """store.enqueue(entity, ...): the write the entity makes (its row, for
    the version it will most likely get; the version it is based on, none
    for a last_write_wins class; the domain events recorded on it, which
    travel with the write), its arguments checked, then enqueue()."""
    info = getattr(type(entity), "__statekeep__", None)
    if core.state is not State.OPEN or info is None or not isinstance(entity, Entity):
        info = core.entity_info(entity)  # raises, but for an entity the hot path would miss
    if priority is not Priority.NORMAL:  # the checks of the defaults cost a call each
        priority = check_priority(priority)
    if deadline is not None:
        deadline = check_deadline(deadline)
    if expect_version is not None:
        expect_version = check_expect_version(expect_version)
    row = info.next_row(entity)
    base = None if entity.__last_write_wins__ else entity.__dict__["version"]
    recorded = take_recorded(entity) if has_recorded() else []
    events = tuple(map(encode, recorded)) if recorded else ()
    try:
        if not core.frames.read():  # no block open: enqueue()'s first case, inlined
            return engine().enqueue(
                info.spec, row, False, priority, deadline, expect_version, base, events
            )
        options = (False, priority, deadline, expect_version, base, events)
        return enqueue(core.frames, engine(), info.spec, row, options)
    except StatekeepError:  # refused (closed, full, another task's block): the events stay
        if recorded:
            put_back_recorded(entity, recorded)
        raise


def enqueue(
    frames: Frames,
    engine: WriteBehind,
    spec: CollectionSpec,
    row: Row,
    options: Options,
) -> Receipt:
    """Enqueues now, or (inside a transaction) once its outermost block
    commits; a block that rolls back drops it (its receipt fails with
    TransactionError). options: WriteBehind.enqueue's, after spec and row."""
    frame = frames.current()
    if frame is None:
        return engine.enqueue(spec, row, *options)
    receipt = engine.unbound()

    def commit() -> None:
        try:
            engine.enqueue(spec, row, *options, receipt)
        except StatekeepError as exc:  # closed meanwhile, or no room
            engine.drop(receipt, exc)

    def roll_back() -> None:
        engine.drop(receipt, TransactionError("the transaction rolled back: not enqueued"))

    frame.later.append((commit, roll_back))
    return receipt


def make_engine(core: Core, options: WriteBehindOptions) -> WriteBehind:
    """A store's write-behind engine: its events go out through the store's
    emitter, and waiting for it inside one of the store's transactions is a
    DeadlockError (the batch would wait for that transaction's locks)."""
    backend, frames = core.backend, core.frames
    engine = WriteBehind(backend, options, journal_dir(options, backend.location), core.emitter)

    def in_transaction() -> bool:
        try:
            return frames.current() is not None
        except TransactionError:  # another task of this thread holds one open: it would
            return True  # wait for this blocked thread as well

    engine.waits.in_transaction = in_transaction
    meter = core.meter
    engine.on_batch = meter.batch_timers()  # its Stats are read through the store (_metering.watch)
    meter.patterns.batch_limits = (engine.window, engine.options.max_batch)
    return engine
