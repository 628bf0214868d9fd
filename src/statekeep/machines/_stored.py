"""Transitions a store keeps: sent and saved in one transaction.

`send_stored` moves one entity and saves it (and its history record) in one
transaction, with the version check: a stale entity raises ConflictError, or
with retry=True is read again and sent again, as long as the event is still
allowed from the state it is in now (else TransitionError). Either way the
caller's entity is left as it was when the send failed.

`transition_many` moves every entity that matches, a chunk at a time, each
chunk in a transaction of its own (a chunk that meets a concurrent writer is
read again and moved again), and reports the ones that did not qualify.

The store is the Store facade, given as an argument: this package sits below
it (store.send and store.transition_many are its thin accessors).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TypeVar

from .. import _arguments as check
from ..conditions import Condition
from ..entity import Entity, drop_recorded
from ..errors import ConfigurationError, ConflictError, TransitionError
from ._binding import Binding, Machine
from ._define import TransitionSpec
from ._moves import mark, moves_since
from ._records import TransitionRecord
from ._send import _restore, _save, asend_bound, send_bound

E = TypeVar("E", bound=Entity)

# how many times retry=True reads a stale entity again before it gives up
ATTEMPTS = 10
# how many times transition_many tries a chunk in one transaction before it
# moves the chunk's entities one at a time (each with retry=True)
CHUNK_ATTEMPTS = 3


@dataclass
class TransitionReport:
    """What transition_many did: how many entities moved, and why each one
    that matched did not."""

    event: str
    moved: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # id -> reason
    retried_chunks: int = 0

    @property
    def matched(self) -> int:
        return self.moved + len(self.skipped)

    def __str__(self) -> str:
        return f"{self.event}: {self.moved} moved, {len(self.skipped)} skipped" + (
            f", {self.retried_chunks} chunks read again" if self.retried_chunks else ""
        )


def _bound(target: Entity, field_name: str | None) -> tuple[Machine, Binding]:
    if not isinstance(target, Entity):
        raise ConfigurationError(f"a store sends events to entities, not {target!r}")
    binding: Binding = target._sender(field_name).binding
    return binding.machine, binding


def _count(store: Any, binding: Binding, event: str, moved: int = 1) -> None:
    """Counts stored moves into the store's metrics (an AsyncStore's through its sync store)."""
    getattr(store, "sync", store)._transitioned(binding.machine.__name__, event, moved)


def send_stored(
    store: Any,
    entity: E,
    event: str | Callable[..., Any],
    *,
    field: str | None = None,
    retry: bool = False,
    data: dict[str, Any],
) -> E:
    check.flag(retry, "retry")
    event = _name_of(event)
    _, binding = _bound(entity, field)
    saved = _save(entity)  # what a failure leaves the entity as, whatever retries read
    for attempt in range(ATTEMPTS if retry else 1):
        stored, before = False, entity.version
        try:
            if binding.keeps_history or _acts(binding, entity, event):
                # what the actions write, the save and the history: one transaction
                with store.transaction():
                    at = mark(binding, entity)
                    send_bound(binding, entity, event, data)
                    store.save(entity)
                    records = _records(binding, entity, at)
                    if records:
                        _stamp(records, entity)
                        store.save_many(records)
            else:  # a move alone: the save is a transaction of its own
                send_bound(binding, entity, event, data)
                store.save(entity)
            stored = True
            store.on_rollback(functools.partial(_restore, binding, entity, saved))  # an outer one's
            _count(store, binding, event)
            return entity
        except ConflictError:
            _restore(binding, entity, saved)
            if not retry or attempt == ATTEMPTS - 1:
                raise
            _take(entity, store.get(type(entity), entity.id))
        except TransitionError:
            if attempt:  # a retry read the entity again: back to the caller's
                _restore(binding, entity, saved)
            raise  # else the send changed nothing
        except BaseException:
            if not stored and not _committed(entity, before):  # committed: it stays as stored
                _restore(binding, entity, saved)
            raise
    raise AssertionError("unreachable")  # pragma: no cover


async def asend_stored(
    store: Any,
    entity: E,
    event: str | Callable[..., Any],
    *,
    field: str | None = None,
    retry: bool = False,
    data: dict[str, Any],
) -> E:
    """send_stored() for an AsyncStore, awaiting async guards and actions."""
    check.flag(retry, "retry")
    event = _name_of(event)
    _, binding = _bound(entity, field)
    saved = _save(entity)
    for attempt in range(ATTEMPTS if retry else 1):
        stored, before = False, entity.version
        try:
            async with store.transaction() as block:
                at = mark(binding, entity)
                await asend_bound(binding, entity, event, data)
                records = _records(binding, entity, at)
                await store.save(entity)
                if records:
                    _stamp(records, entity)
                    await store.save_many(records)
                block.on_rollback(functools.partial(_restore, binding, entity, saved))
            stored = True
            _count(store, binding, event)
            return entity
        except ConflictError:
            _restore(binding, entity, saved)
            if not retry or attempt == ATTEMPTS - 1:
                raise
            _take(entity, await store.get(type(entity), entity.id))
        except TransitionError:
            if attempt:
                _restore(binding, entity, saved)
            raise
        except BaseException:
            if not stored and not _committed(entity, before):
                _restore(binding, entity, saved)
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def _name_of(event: Any) -> str:
    """An event by name, or the event itself (store.send(job, Flow.start))."""
    found: str = event.name if isinstance(event, TransitionSpec) and event.name else event
    return found


def _acts(binding: Binding, entity: Entity, event: str) -> bool:
    """Does event from the entity's state run actions (which may write)?"""
    source = entity.__dict__.get(binding.field)
    steps = binding.steps.get(source, {}).get(event, ()) if isinstance(event, str) else ()
    return any(step.has_actions for step in steps)


def _committed(entity: Entity, before: int) -> bool:
    """Did the save commit (the version moved on from the attempt's) though
    the caller was then interrupted (an interrupt in a handler after the
    commit, a cancelled task whose block ran to its end)?"""
    return bool(entity.__dict__.get("version", 0) > before)


def _take(entity: Entity, fresh: Entity) -> None:
    """The caller's entity becomes what is stored (before a retry), without
    the moves recorded on it, which described the entity as it was."""
    entity.__dict__.update(fresh.__dict__)
    object.__setattr__(entity, "__pydantic_fields_set__", set(fresh.__pydantic_fields_set__))
    drop_recorded(entity)


def _records(binding: Binding, entity: Entity, at: Any) -> list[TransitionRecord]:
    """A history record per move the send made (an action may have sent on)."""
    if not binding.keeps_history:
        return []
    cls = binding.history_class()
    return [
        cls.model_construct(
            entity_id=entity.id,
            machine=binding.machine.__name__,
            field=binding.field,
            event=event,
            source=source,
            target=target,
            at=datetime.fromtimestamp(when, UTC),
        )
        for event, source, target, when in moves_since(binding, entity, at)
    ]


def _stamp(records: list[TransitionRecord], entity: Entity) -> None:
    """The records carry the version the entity's save gave it."""
    for record in records:
        record.__dict__["entity_version"] = entity.version


def transition_many(
    store: Any,
    cls: type[Entity],
    event: str | Callable[..., Any],
    conditions: tuple[Condition, ...],
    equals: dict[str, Any],
    field: str | None = None,
    chunk_size: int = 500,
    data: dict[str, Any] | None = None,
) -> TransitionReport:
    event = _name_of(event)
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"data= takes a dict of keywords for guards and actions, not {data!r}"
        )
    if not (isinstance(cls, type) and issubclass(cls, Entity)):
        raise ConfigurationError(f"transition_many takes an entity class, not {cls!r}")
    check.chunk_size(chunk_size)
    binding: Binding = cls._sender(field).binding
    machine: Machine = binding.machine
    if not isinstance(event, str) or event not in machine._events_:
        raise TransitionError(
            machine.__name__,
            "",
            str(event),
            f"no such event (events: {', '.join(machine._events_)})",
        )
    report = TransitionReport(event)

    def reread(ids: list[str]) -> list[Entity]:
        """A chunk as stored now, of what still matches, in id order."""
        where = (*conditions, cls.f.id.in_(ids))
        return list(store.find(cls, *where, order_by="id", **equals))

    # one query read as it goes (a page per chunk would sort what still matches each time);
    # what other writers change meanwhile meets the version check, and is read again
    matching = store.find(cls, *conditions, order_by="id", **equals)
    while chunk := list(islice(matching, chunk_size)):
        _move_chunk(store, binding, chunk, event, data, report, reread)
    return report


def _move_chunk(
    store: Any,
    binding: Binding,
    chunk: list[Entity],
    event: str,
    data: dict[str, Any],
    report: TransitionReport,
    reread: Callable[[list[str]], list[Entity]],
) -> None:
    for _ in range(CHUNK_ATTEMPTS):
        moved: list[Entity] = []
        records: list[TransitionRecord] = []
        skipped: dict[str, str] = {}
        try:
            # the sends inside the chunk's transaction: what their actions write goes with it
            with store.transaction():
                for entity in chunk:
                    at = mark(binding, entity)
                    try:
                        send_bound(binding, entity, event, data)
                    except TransitionError as exc:
                        skipped[entity.id] = exc.reason
                        continue
                    moved.append(entity)
                    records += _records(binding, entity, at)
                store.save_many(moved)
                if records:
                    by_id = {entity.id: entity for entity in moved}
                    for record in records:
                        record.__dict__["entity_version"] = by_id[record.entity_id].version
                    store.save_many(records)
        except ConflictError:
            report.retried_chunks += 1
            chunk = _again(chunk, reread, report)
            continue
        report.moved += len(moved)
        _count(store, binding, event, len(moved))
        report.skipped.update(skipped)
        return
    # the chunk kept meeting other writers: one entity at a time, read again (with the
    # conditions) until it holds
    for entity in chunk:
        _move_one(store, binding, entity, event, data, report, reread)


def _again(
    chunk: list[Entity],
    reread: Callable[[list[str]], list[Entity]],
    report: TransitionReport,
) -> list[Entity]:
    """The chunk read again: what still matches, the rest reported."""
    ids = [entity.id for entity in chunk]
    fresh = reread(ids)
    for gone in set(ids).difference(entity.id for entity in fresh):
        report.skipped[gone] = "changed or deleted meanwhile: it no longer matches"
    return fresh


def _move_one(
    store: Any,
    binding: Binding,
    entity: Entity,
    event: str,
    data: dict[str, Any],
    report: TransitionReport,
    reread: Callable[[list[str]], list[Entity]],
) -> None:
    for _ in range(ATTEMPTS):
        try:
            send_stored(store, entity, event, field=binding.field, data=data)
        except TransitionError as exc:
            report.skipped[entity.id] = exc.reason
        except ConflictError:
            fresh = _again([entity], reread, report)
            if fresh:
                entity = fresh[0]
                continue
        else:
            report.moved += 1
        return
    report.skipped[entity.id] = f"changed by other writers {ATTEMPTS} times running"


def history(store: Any, target: Entity | type[Entity], id: str | None = None) -> list[Any]:
    """The stored transitions of an entity (of a machine declared with
    history=True), oldest first."""
    from ._records import history_class

    if isinstance(target, Entity):
        cls, id = type(target), target.id
    elif isinstance(target, type) and issubclass(target, Entity) and isinstance(id, str):
        cls = target
    else:
        raise ConfigurationError("history() takes an entity, or an entity class and an id")
    if not any(machine._history_ for machine in cls.__statekeep_machines__.values()):
        raise ConfigurationError(
            f"{cls.__name__} has no machine that keeps history (declare it with "
            "class ...(statekeep.Machine, history=True))"
        )
    found = store.find(history_class(cls), entity_id=id)
    # in the order of the versions the moves made (record ids of two processes'
    # moves within a millisecond need not be in that order)
    return sorted(found, key=lambda record: (record.entity_version, record.at, record.id))
