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
from typing import Any

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
    lifecycle_entry,
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
        # the lifecycle event class of an entity class (None: none known) and kind: Todo.Created
        self._classes: dict[tuple[type[Entity] | None, str], Any] = {}

    @property
    def active(self) -> bool:
        return self.outbox or self.bus.listening

    # -- making events -------------------------------------------------------
    def saved(self, entity: Entity, old_version: int, body: str) -> Saved:
        """The events of one save (created or updated, made from the body the
        save stored, then what the entity recorded), and the recorded events
        taken from the entity (to put back if the save does not last). With
        nobody listening and no outbox, recorded events are dropped."""
        bus = self.bus
        if not (self.outbox or bus.listening):
            if has_recorded():
                drop_recorded(entity)  # not even made: nobody would get them
            return [], []
        recorded = take_recorded(entity) if has_recorded() else []
        cls = type(entity)
        collection = cls.__statekeep__.spec.name
        fields = entity.__dict__
        id, version = fields["id"], fields["version"]
        kind = "created" if old_version == 0 else "updated"
        events: list[Pending] = []
        if bus.handlers(collection, kind):  # what _pending does, inlined (the hot path)
            events.append(self._lifecycle(cls, kind, collection, id, version, body))
        elif self.outbox:
            events.append(_outbox_entry(kind, collection, id, version, body))
        if recorded:
            update = {"collection": collection, "entity_id": id, "version": version}
            events.extend(event.model_copy(update=update) for event in recorded)
        return events, recorded

    def deleted(self, cls: type[Entity], id: str, version: int) -> list[Pending]:
        if not self.active:
            return []
        collection = cls.__statekeep__.spec.name
        made = self._pending(cls, "deleted", collection, id, version, None)
        return [] if made is None else [made]

    def batch_events(self, changes: Sequence[Change]) -> list[Pending]:
        """The events of a write-behind batch (writebehind.BatchHooks): the
        same lifecycle events as save and delete make."""
        if not self.active:
            return []
        events: list[Pending] = []
        for spec, id, before, version, body, recorded in changes:
            collection = spec.name
            kind = "deleted" if version == 0 else "created" if before == 0 else "updated"
            if self.outbox or self.bus.wants(collection, kind):
                owner = entity_class(collection)
                stamp = before if body is None else version
                made = self._pending(owner, kind, collection, id, stamp, body)
                if made is not None:
                    events.append(made)
            if recorded:  # domain events recorded on the entity, stamped with the write's version
                update = {"collection": collection, "entity_id": id, "version": version or before}
                events.extend(
                    decode(event, collection).model_copy(update=update) for event in recorded
                )
        return events

    def _pending(
        self,
        owner: type[Entity] | None,
        kind: str,
        collection: str,
        id: str,
        version: int,
        body: str | None,
    ) -> Pending | None:
        """A lifecycle event, if it goes anywhere: only its outbox JSON when
        no handler in this process wants it (a handler of other events only,
        such as the dashboard's of transitions, must not make every save
        build one), nothing when there is no outbox either."""
        if self.bus.handlers(collection, kind):
            return self._lifecycle(owner, kind, collection, id, version, body)
        return _outbox_entry(kind, collection, id, version, body) if self.outbox else None

    def _lifecycle(
        self,
        owner: type[Entity] | None,
        kind: str,
        collection: str,
        id: str,
        version: int,
        body: str | None,
    ) -> Event:
        """A lifecycle event for this process's handlers. A Created or Updated
        event makes its entity from the body on first read (events.Carrying):
        a handler that reads only ids and versions parses nothing."""
        cls = self._classes.get((owner, kind)) or self._class_of(owner, kind)
        if body is None:
            return cls.made(collection, id, version)  # type: ignore[no-any-return]
        return cls.from_body(collection, id, version, owner, body)  # type: ignore[no-any-return]

    def _class_of(self, owner: type[Entity] | None, kind: str) -> Any:
        """The class of owner's lifecycle events of kind (Todo.Created), or
        the generic one (owner None: a collection no class of this process
        stores)."""
        base = LIFECYCLE[kind]
        found = getattr(owner, base.__name__) if owner is not None else base
        self._classes[(owner, kind)] = found
        return found

    # -- commit hooks (statekeep._commit.CommitHooks) ---------------------------
    def before_commit(self, events: list[Any]) -> None:
        if self.outbox and events:
            self._backend.append_events(
                [event if isinstance(event, str) else encode(event) for event in events]
            )

    def after_commit(self, events: list[Any]) -> None:
        if self.bus.listening:
            self.bus.dispatch(events)  # (it passes over the outbox entries no handler wanted)


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
    return lifecycle_entry(kind, collection, id, version, body, new_id(), datetime.now(UTC))


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
