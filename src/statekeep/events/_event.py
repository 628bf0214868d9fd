"""Events: what happened to an entity, as an immutable record.

Every event has a unique id (ordered by time, for idempotent handlers), the
moment it happened, and the entity it is about: its collection, id and the
version the change produced. Its name is `<collection>.<kind>`:
`todo.created`, `todo.updated`, `todo.deleted` for the lifecycle events the
store emits, `session.session_completed` for a domain event an entity records
(`session.record(SessionCompleted(...))`).

Domain events are subclasses of Event with fields of their own:

    class SessionCompleted(statekeep.Event):
        minutes: int

A domain event class may have views, one per collection, that subscribe to
its events of that collection only (`Session.Transitioned` of
statekeep.machines' Transitioned): a subclass that sets
`__statekeep_collection__` in its body; it has its base's kind and is read
back from an outbox as its base.

A kind belongs to one domain event class: a second class of the same kind (a
`Completed` in billing and another in sessions) is refused when it is
defined, since both would be named `<collection>.completed` and an outbox
entry of one could be read back as the other. Defining the same class again
(see statekeep._naming: a reload, a test run twice) replaces it.

An outbox entry is `{"kind": ..., "topic": ..., "event": {fields}}`; `topic`
(`module:qualname`) only for a domain event, and only in entries written since
it was added. Reading one back finds the class by its topic, else (an older
entry, or a class since moved or run as `__main__`) by its kind.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

import pydantic
from pydantic import ConfigDict, Field

from .._ids import new_id
from .._naming import file_of, redefines, snake_case, topic_of
from ..errors import ConfigurationError

# domain event classes, to read them back from an outbox: by topic, and by
# kind (with the file that defines the class, to tell a redefinition)
_BY_TOPIC: dict[str, type[Event]] = {}
_BY_KIND: dict[str, tuple[type[Event], str | None]] = {}
# the start of an outbox entry of each event class: {"kind":...[,"topic":...],"event":
_HEADS: dict[type[Event], str] = {}
_RESERVED_KINDS = frozenset(
    {"created", "updated", "deleted", "lifecycle", "event", "statekeep_unknown"}
)


def _is_domain(cls: type[Event]) -> bool:
    """A domain event class: not one of the store's own (defined here, or a lifecycle class)."""
    return cls.__module__ != __name__ and not issubclass(cls, globals().get("Lifecycle", ()))


def _now() -> datetime:
    return datetime.now(UTC)


class Event(pydantic.BaseModel):
    """Something that happened to an entity; subclass it for domain events."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # the part after the dot of the event's name (snake_case of the class name)
    kind: ClassVar[str] = "event"

    event_id: str = Field(default_factory=new_id)
    at: datetime = Field(default_factory=_now)
    collection: str = ""
    entity_id: str = ""
    version: int = 0

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if not _is_domain(cls):
            return  # the store's own events (one class per entity class and kind for lifecycle)
        if "__statekeep_collection__" in cls.__dict__:
            return  # one collection's view of its base (Session.Transitioned): the base's kind
        if "kind" not in cls.__dict__:
            cls.kind = snake_case(cls.__name__)
        if cls.kind in _RESERVED_KINDS:
            raise ConfigurationError(
                f"{cls.__name__}: a domain event cannot be of kind {cls.kind!r} "
                f"({', '.join(sorted(_RESERVED_KINDS))} are the store's own); rename it "
                "or set kind = '...' in the class"
            )
        _register(cls)

    @property
    def name(self) -> str:
        """`<collection>.<kind>`, e.g. `todo.created`."""
        return f"{self.collection}.{self.kind}"

    @classmethod
    def made(cls, collection: str, entity_id: str, version: int, **fields: Any) -> Self:
        """An event of the store's own, made without validation (what
        model_construct does, without its per-call inspection of default
        factories, which costs more than the rest of a save)."""
        values = {
            "event_id": new_id(),
            "at": datetime.now(UTC),
            "collection": collection,
            "entity_id": entity_id,
            "version": version,
            **fields,
        }
        event = cls.__new__(cls)
        _set = object.__setattr__
        _set(event, "__dict__", values)
        _set(event, "__pydantic_fields_set__", set(values))
        _set(event, "__pydantic_extra__", None)
        _set(event, "__pydantic_private__", None)
        return event


class Lifecycle(Event):
    """An entity was created, updated or deleted (emitted by the store)."""

    kind: ClassVar[str] = "lifecycle"


class Created(Lifecycle):
    kind: ClassVar[str] = "created"
    entity: Any = None


class Updated(Lifecycle):
    kind: ClassVar[str] = "updated"
    entity: Any = None


class Deleted(Lifecycle):
    kind: ClassVar[str] = "deleted"


class HandlerFailed(Event):
    """An in-process handler raised: which, on what, and the error (collection
    "statekeep"). A handler of HandlerFailed that raises makes no further one."""

    kind: ClassVar[str] = "handler_failed"
    handler: str = ""
    failed_event: str = ""  # the name of the event it was handling
    failed_event_id: str = ""
    error: str = ""


class UnknownEvent(Event, extra="allow"):
    """An event read from the outbox whose class this process does not define
    (or no longer defines as it was): its fields are kept as they were stored."""

    kind: ClassVar[str] = "statekeep_unknown"
    unknown_kind: str = ""
    raw: str = ""  # the stored entry, when not even the common fields could be read

    @property
    def name(self) -> str:
        return f"{self.collection}.{self.unknown_kind}"


LIFECYCLE: dict[str, type[Lifecycle]] = {
    "created": Created,
    "updated": Updated,
    "deleted": Deleted,
}


def _register(cls: type[Event]) -> None:
    """Registers a domain event class under its kind and topic, or refuses a
    second class of the kind; a class defined again replaces the old one."""
    file = file_of(cls)
    known = _BY_KIND.get(cls.kind)
    if known is not None:
        other, other_file = known
        if not redefines(cls, file, other, other_file):
            raise ConfigurationError(
                f"{topic_of(cls)} and {topic_of(other)} are both domain events of kind "
                f"{cls.kind!r} (named '<collection>.{cls.kind}'): an outbox entry of one could "
                f"be read back as the other; give one another class name, or set "
                f"kind = '...' in it"
            )
        _BY_TOPIC.pop(topic_of(other), None)
    _BY_KIND[cls.kind] = (cls, file)
    _BY_TOPIC[topic_of(cls)] = cls


def domain_class(kind: str, topic: object = None) -> type[Event] | None:
    """The domain event class of an outbox entry: the one of its topic, else
    (an entry written before topics, or by a class since moved or run as
    `__main__`) the one of its kind."""
    if isinstance(topic, str):
        found = _BY_TOPIC.get(topic)
        if found is not None:
            return found
    known = _BY_KIND.get(kind)
    return None if known is None else known[0]


def outbox_entry(event: Event) -> str:
    """An event as outbox JSON: its kind, its topic (a domain event's), then its fields."""
    cls = type(event)
    head = _HEADS.get(cls)
    if head is None:
        head = _HEADS[cls] = _head(cls)
    return f"{head}{event.model_dump_json()}}}"


def _head(cls: type[Event]) -> str:
    while "__statekeep_collection__" in cls.__dict__ and _is_domain(cls):
        cls = cls.__mro__[1]  # a collection's view of a domain event: read back as its base
    if not _is_domain(cls):  # the store's own events: their kind (and collection) say it
        return f'{{"kind":{json.dumps(cls.kind)},"event":'
    return f'{{"kind":{json.dumps(cls.kind)},"topic":{json.dumps(topic_of(cls))},"event":'


class AlertRaised(Event):
    """One of the store's alerts crossed its threshold (collection "statekeep";
    see docs/metrics.md for the rules)."""

    kind: ClassVar[str] = "alert_raised"
    alert: str = ""
    subject: str = ""  # a durable subscription's name, or "" for the store
    value: float = 0.0
    threshold: float = 0.0
    severity: str = "warning"
    message: str = ""


class AlertResolved(Event):
    """An alert that was raised is back under its threshold."""

    kind: ClassVar[str] = "alert_resolved"
    alert: str = ""
    subject: str = ""
    value: float = 0.0
    threshold: float = 0.0
    severity: str = "warning"
    message: str = ""
    raised_at: datetime | None = None
