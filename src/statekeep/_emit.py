"""The events of a store's changes: made, written to the outbox, delivered.

The store calls `saved`/`deleted` inside the write transaction; the events
wait in the transaction's frame, are appended to the outbox just before the
commit (when the store keeps one), and go to the in-process handlers just
after it. Nothing is made when nobody listens and there is no outbox.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import pydantic

from ._ids import new_id
from .backends.base import Backend
from .entity import Entity, drop_recorded, entity_class, has_recorded, take_recorded, view_of
from .errors import BackendError
from .events import (
    LIFECYCLE,
    Bus,
    Created,
    Event,
    UnknownEvent,
    domain_class,
    outbox_entry,
)
from .writebehind import Change

# an event, or (when no handler of this process wants it) just its outbox JSON
Pending = Event | str
# a save's events, and the domain events it took from the entity
Saved = tuple[list[Pending], list[Event]]


class Emitter:
    def __init__(self, backend: Backend, outbox: bool) -> None:
        self.bus = Bus()
        self.outbox = outbox
        self._backend = backend

    @property
    def active(self) -> bool:
        return self.outbox or bool(self.bus)

    # -- making events -------------------------------------------------------
    def saved(self, entity: Entity, old_version: int, body: str) -> Saved:
        """The events of one save (created or updated, made from the body the
        save stored, then what the entity recorded), and the recorded events
        taken from the entity (to put back if the save does not last). With
        nobody listening and no outbox, recorded events are dropped."""
        if not self.active:
            if has_recorded():
                drop_recorded(entity)  # not even made: nobody would get them
            return [], []
        recorded = take_recorded(entity) if has_recorded() else []
        cls = type(entity)
        collection = cls.__statekeep__.spec.name
        version = entity.version
        kind = "created" if old_version == 0 else "updated"
        events: list[Pending] = []
        if self._kept(collection, kind):
            events.append(self._lifecycle(cls, kind, collection, entity.id, version, body))
        update = {"collection": collection, "entity_id": entity.id, "version": version}
        events.extend(event.model_copy(update=update) for event in recorded)
        return events, recorded

    def deleted(self, cls: type[Entity], id: str, version: int) -> list[Pending]:
        if not self.active:
            return []
        collection = cls.__statekeep__.spec.name
        if not self._kept(collection, "deleted"):
            return []
        return [self._lifecycle(cls, "deleted", collection, id, version, None)]

    def _kept(self, collection: str, kind: str) -> bool:
        """Whether a lifecycle event goes anywhere: the outbox, or a handler
        of this process that wants it (a handler of other events only, such as
        the dashboard's of transitions, must not make every save build one)."""
        return self.outbox or self.bus.wants(collection, kind)

    def batch_events(self, changes: Sequence[Change]) -> list[Pending]:
        """The events of a write-behind batch (writebehind.BatchHooks): the
        same lifecycle events as save and delete make."""
        if not self.active:
            return []
        events: list[Pending] = []
        for spec, id, before, version, body, recorded in changes:
            collection = spec.name
            kind = "deleted" if version == 0 else "created" if before == 0 else "updated"
            if self._kept(collection, kind):
                owner = entity_class(collection)
                stamp = before if body is None else version
                events.append(self._lifecycle(owner, kind, collection, id, stamp, body))
            if recorded:  # domain events recorded on the entity, stamped with the write's version
                update = {"collection": collection, "entity_id": id, "version": version or before}
                events.extend(
                    decode(event, collection).model_copy(update=update) for event in recorded
                )
        return events

    def _lifecycle(
        self,
        owner: type[Entity] | None,
        kind: str,
        collection: str,
        id: str,
        version: int,
        body: str | None,
    ) -> Pending:
        """A lifecycle event; only its outbox JSON when no handler in this
        process wants it (no pydantic model to make, no entity to parse)."""
        if not self.bus.wants(collection, kind):
            return _outbox_entry(kind, collection, id, version, body)
        base = LIFECYCLE[kind]
        cls: Any = getattr(owner, base.__name__) if owner is not None else base
        if body is None:
            return cast(Event, cls.made(collection, id, version))
        # the entity as stored, an object of its own: later changes do not leak in
        entity = owner.model_validate_json(body) if owner is not None else json.loads(body)
        return cast(Event, cls.made(collection, id, version, entity=entity))

    # -- commit hooks (statekeep._commit.CommitHooks) ---------------------------
    def before_commit(self, events: list[Any]) -> None:
        if self.outbox and events:
            self._backend.append_events(
                [event if isinstance(event, str) else encode(event) for event in events]
            )

    def after_commit(self, events: list[Any]) -> None:
        if self.bus:
            self.bus.dispatch(event for event in events if not isinstance(event, str))


class Later:
    """Commit hooks that write the outbox with the transaction but keep its
    events for the caller to deliver once the entities reflect the commit."""

    def __init__(self, emitter: Emitter) -> None:
        self._emitter = emitter
        self.events: list[Pending] = []

    def before_commit(self, events: list[Any]) -> None:
        self._emitter.before_commit(events)

    def after_commit(self, events: list[Any]) -> None:
        self.events = events


def encode(event: Event) -> str:
    """An event as outbox JSON: its kind and collection, then its fields."""
    return outbox_entry(event)


def _outbox_entry(kind: str, collection: str, id: str, version: int, body: str | None) -> str:
    """The outbox JSON of a lifecycle event, as encode() would write it, made
    straight from the stored body."""
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    entity = "" if body is None else f',"entity":{body}'
    return (
        f'{{"kind":"{kind}","event":{{"event_id":"{new_id()}","at":"{at}",'
        f'"collection":"{collection}","entity_id":{json.dumps(id)},"version":{version}'
        f"{entity}}}}}"
    )


def decode(body: str, collection: str | None = None) -> Event:
    """An event read back from the outbox, as the class it was made as, as far
    as this process knows that class (else as an Event keeping its fields).
    BackendError only for an entry that is not an event at all. collection:
    the event's, when the entry was written before it was stamped with it
    (a write-behind journal's recorded events)."""
    try:
        document = json.loads(body)
        kind, fields = str(document["kind"]), dict(document["event"])
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendError(f"an outbox entry is not an event: {body[:200]!r}") from exc
    cls: type[Event] | None
    if kind in LIFECYCLE:
        owner = entity_class(str(fields.get("collection", "")))
        cls = getattr(owner, LIFECYCLE[kind].__name__) if owner is not None else LIFECYCLE[kind]
    else:
        cls = domain_class(kind, document.get("topic"))
        view = view_of(collection or str(fields.get("collection", "")), kind)
        if cls is not None and view is not None and issubclass(view, cls):
            cls = view  # one entity class's view of it (Session.Transitioned)
    for attempt in (cls, LIFECYCLE.get(kind)):  # the class as it is now, then the generic one
        if attempt is None:
            continue
        try:
            return attempt.model_validate(fields)
        except pydantic.ValidationError:
            continue  # the class changed since the event was stored
    try:
        return UnknownEvent.model_validate({**fields, "unknown_kind": kind})
    except pydantic.ValidationError:
        return UnknownEvent.model_validate({"unknown_kind": kind, "raw": body})


__all__ = ["Created", "Emitter", "Later", "decode", "encode"]
