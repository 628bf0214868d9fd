"""The events of a store's changes: made, written to the outbox, delivered.

The store calls `saved`/`deleted` inside the write transaction; the events
wait in the transaction's frame, are appended to the outbox just before the
commit (when the store keeps one), and go to the in-process handlers just
after it. Nothing is made when nobody listens and there is no outbox.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, ClassVar

from .backends.base import Backend
from .entity import Entity, entity_class, put_back_recorded, take_recorded
from .errors import BackendError
from .events import LIFECYCLE, Bus, Event, domain_class
from .events._event import Created
from .writebehind._storing import Change


class Emitter:
    def __init__(self, backend: Backend, outbox: bool) -> None:
        self.bus = Bus()
        self.outbox = outbox
        self._backend = backend

    @property
    def active(self) -> bool:
        return self.outbox or bool(self.bus)

    # -- making events -------------------------------------------------------
    def saved(self, entity: Entity, old_version: int) -> list[Event]:
        """The events of one save: created or updated, then what it recorded
        (with nobody listening and no outbox, recorded events are dropped)."""
        recorded = take_recorded(entity)
        if not self.active:
            return []
        cls = type(entity)
        kind = cls.Created if old_version == 0 else cls.Updated
        collection = cls.__statekeep__.spec.name
        version = entity.version
        events: list[Event] = [kind.made(collection, entity.id, version, entity=entity.__copy__())]
        update = {"collection": collection, "entity_id": entity.id, "version": version}
        events.extend(event.model_copy(update=update) for event in recorded)
        return events

    def deleted(self, cls: type[Entity], id: str, version: int) -> list[Event]:
        if not self.active:
            return []
        collection = cls.__statekeep__.spec.name
        return [cls.Deleted.made(collection, id, version)]

    def batch_events(self, changes: Sequence[Change]) -> list[Event]:
        """The events of a write-behind batch (writebehind.BatchHooks): the
        same lifecycle events as save and delete make."""
        if not self.active:
            return []
        events: list[Event] = []
        for spec, id, before, version, body in changes:
            collection = spec.name
            owner = entity_class(collection)
            kind = "deleted" if version == 0 else "created" if before == 0 else "updated"
            if not self.outbox and not self.bus.wants(collection, kind):
                continue
            base = LIFECYCLE[kind]
            cls: Any = getattr(owner, base.__name__) if owner is not None else base
            if body is None:
                events.append(
                    cls.model_construct(collection=collection, entity_id=id, version=before)
                )
                continue
            entity = owner.model_validate_json(body) if owner is not None else json.loads(body)
            events.append(
                cls.model_construct(
                    collection=collection, entity_id=id, version=version, entity=entity
                )
            )
        return events

    @staticmethod
    def restore(entity: Entity, events: Sequence[Event]) -> None:
        """Puts an unsaved entity's recorded events back (its save failed)."""
        put_back_recorded(entity, [e for e in events[1:] if e.entity_id == entity.id])

    # -- commit hooks (statekeep._transaction.CommitHooks) ----------------------
    def before_commit(self, events: list[Any]) -> None:
        if self.outbox and events:
            self._backend.append_events([encode(event) for event in events])

    def after_commit(self, events: list[Any]) -> None:
        if self.bus:
            self.bus.dispatch(events)


def encode(event: Event) -> str:
    """An event as outbox JSON: its kind and collection, then its fields."""
    return f'{{"kind":{json.dumps(event.kind)},"event":{event.model_dump_json()}}}'


def decode(body: str) -> Event:
    """An event read back from the outbox, as the class it was made as, as far
    as this process knows that class (else as a plain Event with its fields)."""
    try:
        document = json.loads(body)
        kind, fields = document["kind"], document["event"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BackendError(f"an outbox entry is not an event: {body[:200]!r}") from exc
    cls: type[Event] | None
    if kind in LIFECYCLE:
        owner = entity_class(fields.get("collection", ""))
        cls = getattr(owner, LIFECYCLE[kind].__name__) if owner is not None else LIFECYCLE[kind]
    else:
        cls = domain_class(kind)
    if cls is None:
        return _Unknown.model_validate({**fields, "unknown_kind": kind})
    try:
        return cls.model_validate(fields)
    except Exception:  # noqa: BLE001 - the class changed since: keep what was stored
        if kind in LIFECYCLE:
            return LIFECYCLE[kind].model_validate({**fields, "entity": fields.get("entity")})
        return _Unknown.model_validate({**fields, "unknown_kind": kind})


class _Unknown(Event, extra="allow"):
    """An event whose class this process does not define."""

    kind: ClassVar[str] = "statekeep_unknown"
    unknown_kind: str = ""

    @property
    def name(self) -> str:
        return f"{self.collection}.{self.unknown_kind}"


__all__ = ["Created", "Emitter", "decode", "encode"]
