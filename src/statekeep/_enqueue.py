"""store.enqueue: the write an entity makes, and its enqueue now or at the
commit of the transaction it is made in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._emit import encode
from ._transaction import Frames
from .backends.base import CollectionSpec, Row
from .entity import Entity, has_recorded, take_recorded
from .errors import StatekeepError, TransactionError
from .writebehind import Receipt, WriteBehind, WriteBehindOptions, journal_dir

if TYPE_CHECKING:
    from ._core import Core
    from ._schema import EntityInfo


def entity_write(info: EntityInfo, entity: Entity) -> tuple[Row, dict[str, Any]]:
    """The row of the entity's content (its body for the version it will
    most likely get), and what the write carries: the version it is based
    on (none for a last_write_wins class) and the domain events recorded on
    the entity (taken off it: they travel with the write)."""
    fields = entity.__dict__
    version = fields["version"]
    fields["version"] = version + 1
    try:
        row = info.row(entity)
    finally:
        fields["version"] = version
    arguments: dict[str, Any] = {"base": None if entity.__last_write_wins__ else version}
    if has_recorded():
        recorded = take_recorded(entity)
        if recorded:
            arguments["events"] = tuple(map(encode, recorded))
    return row, arguments


def enqueue(
    frames: Frames, engine: WriteBehind, spec: CollectionSpec, row: Row, arguments: dict[str, Any]
) -> Receipt:
    """Enqueues now, or (inside a transaction) once its outermost block
    commits; a block that rolls back drops it (its receipt fails with
    TransactionError)."""
    frame = frames.current()
    if frame is None:
        return engine.enqueue(spec, row, **arguments)
    receipt = engine.unbound()

    def commit() -> None:
        try:
            engine.enqueue(spec, row, receipt=receipt, **arguments)
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
    return engine
