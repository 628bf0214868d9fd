"""Saving: save's (one entity, a commit of its own outside a block) and
save_many's engine: any number of entities, in chunks, one backend put per
collection per chunk.

Memory stays bounded by a chunk: an iterable is read chunk by chunk, and the
undo log of the block keeps weak references to the entities of a generator
(a list's are held by the caller anyway, so they are held directly: cheaper).
atomic=True runs every chunk in the caller's transaction block (the Store
opens one); atomic=False gives each chunk a transaction of its own, whose
events are written with it and delivered once its entities carry their new
versions.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from itertools import islice
from time import perf_counter_ns
from typing import TYPE_CHECKING

from ._core import State
from ._emit import Later, Pending
from .backends.base import CollectionSpec, Row
from .entity import Entity, drop_recorded, has_recorded, put_back_recorded
from .events import Event

if TYPE_CHECKING:
    from ._core import Core
    from ._schema import EntityInfo


def save_one(core: Core, entity: Entity) -> str:
    """Store.save: its version moves forward by one (back again, with the events
    it recorded, if the write fails); its events are delivered once it carries
    the new version. Returns the entity's collection.

    Its events are made from the body before it is written (they wait in
    the transaction, for the outbox and the handlers, until it commits).
    Outside a block, with no outbox to write with it, a backend that can
    (`put_alone`) writes the row in one statement of its own."""
    # core.entity_info's checks, inlined (a hot path); it raises their errors
    info = getattr(type(entity), "__statekeep__", None)
    if info is None or not isinstance(entity, Entity) or core.state is not State.OPEN:
        info = core.entity_info(entity)
    fields = entity.__dict__
    old = fields["version"]
    fields["version"] = old + 1
    emitter = core.emitter
    spec = info.spec
    taken: list[Event] = []
    events: list[Pending] = []
    try:
        row = info.row(entity)
        active = emitter.outbox or emitter.bus.listening
        if active:
            events, taken = emitter.saved(entity, old, row[2])
        alone = core.put_alone
        if alone is not None and not emitter.outbox and not core.frames.read() and alone(spec, row):
            committed = None  # stored, outside any block
        else:
            backend = core.backend
            rows = (row,)
            committed = core.write(spec, lambda: backend.put(spec, rows), events)
    except BaseException:
        fields["version"] = old
        put_back_recorded(entity, taken)
        raise
    if not active and has_recorded():
        drop_recorded(entity)  # nobody to make them for, once the write holds
    if committed is None:
        core.deliver(events)
    else:
        core.note(entity, old, taken)
        core.deliver(committed)
    return spec.name


def save_all(core: Core, entities: Iterable[Entity], chunk_size: int, atomic: bool) -> int:
    """Store.save_many: every chunk in one transaction block (atomic) or a
    block each; timed into the store's metrics by call and by entity."""
    start = perf_counter_ns()
    if atomic:
        with core.transaction():
            saved = save_chunks(core, entities, chunk_size, atomic)
    else:
        saved = save_chunks(core, entities, chunk_size, atomic)
    core.meter.saved_many(saved, perf_counter_ns() - start)
    return saved


def save_chunks(core: Core, entities: Iterable[Entity], chunk_size: int, atomic: bool) -> int:
    """Saves every entity, chunk_size at a time; returns how many. With
    atomic=True the caller has opened a transaction block around this."""
    held = isinstance(entities, (list, tuple))  # the caller holds every entity
    saved = 0
    iterator = iter(entities)
    while chunk := list(islice(iterator, chunk_size)):
        saved += _save_chunk(core, chunk, atomic, held)
    return saved


def _save_chunk(core: Core, chunk: list[Entity], atomic: bool, held: bool) -> int:
    olds: list[int] = []
    emitter = core.emitter
    backend = core.backend
    later = Later(emitter)  # a chunk's own transaction: delivered after the versions hold
    try:
        groups = _rows_by_collection(core, chunk, olds)
        block: AbstractContextManager[object] = nullcontext() if atomic else core.transaction(later)
        with block:
            for spec, rows in groups:
                backend.ensure_collection(spec)
                backend.put(spec, rows)
            if emitter.active or has_recorded():
                frame = core.frames.current()
                assert frame is not None  # save_many always runs in a transaction block
                bodies = _bodies_in_order(chunk, groups)
                for entity, old, body in zip(chunk, olds, bodies, strict=True):
                    made, took = emitter.saved(entity, old, body)
                    frame.events.extend(made)
                    if took:  # the block puts them back if it rolls back
                        frame.taken.append((entity, took))
    except BaseException:
        for entity, old in reversed(list(zip(chunk, olds, strict=False))):
            entity.__dict__["version"] = old  # last first: an entity may repeat
        raise
    frame = core.frames.current()
    if frame is not None:
        frame.note_many(chunk, olds, weak=not held)
    core.deliver(later.events)
    return len(chunk)


def _rows_by_collection(
    core: Core, chunk: list[Entity], olds: list[int]
) -> list[tuple[CollectionSpec, list[Row]]]:
    """Moves each version forward (noting the old one in olds) and makes
    the rows, grouped by class."""
    if len(set(map(type, chunk))) == 1:  # the usual case: one class
        info = core.entity_info(chunk[0])
        return [(info.spec, info.advance(chunk, olds))]
    groups: dict[type, tuple[EntityInfo, list[Row]]] = {}
    for entity in chunk:
        group = groups.get(type(entity))
        if group is None:
            group = groups[type(entity)] = (core.entity_info(entity), [])
        group[1].extend(group[0].advance([entity], olds))
    return [(info.spec, rows) for info, rows in groups.values()]


def _bodies_in_order(
    chunk: list[Entity], groups: list[tuple[CollectionSpec, list[Row]]]
) -> Iterator[str]:
    """The stored body of each entity of chunk, in chunk order (rows are grouped by class)."""
    if len(groups) == 1:
        return (row[2] for row in groups[0][1])
    by_collection = {spec.name: iter(rows) for spec, rows in groups}
    return (next(by_collection[type(e).__statekeep__.spec.name])[2] for e in chunk)
