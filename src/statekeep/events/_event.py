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
import os
import threading
from datetime import UTC, datetime, timedelta
from time import time_ns
from typing import TYPE_CHECKING, Any, ClassVar, Self

import pydantic
from pydantic import ConfigDict, Field

from .. import _ids
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


_new = object.__new__
_set = object.__setattr__
_get = object.__getattribute__
_CARRIED = frozenset({"event_id", "at", "collection", "entity_id", "version", "entity"})
# what a Carrying event made by from_body makes on first need (see _stamped)
_STAMPED = frozenset(
    {"event_id", "at", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__"}
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_stamping = threading.Lock()


def _new_lock() -> None:
    global _stamping
    _stamping = threading.Lock()  # a forked child's: its parent's may be held by a thread gone


os.register_at_fork(after_in_child=_new_lock)


class Carrying(Lifecycle):
    """Created and Updated: they carry the entity as it was stored, an object
    of its own (later changes to the saved entity do not leak in).

    The store makes them with `from_body`, which keeps the stored JSON body
    and makes the entity from it on the first read of `event.entity`, then
    keeps it: a handler that reads only ids and versions costs no parse.
    Their `event_id` and `at` are taken when they are made (the clock and
    the id counter) and written out on first read, too. Until then those
    fields are not in the event's `__dict__`; whatever reads the fields
    (equality, hash, repr, iteration, every dump -- nested ones too, through
    the serializer --, copies and pickles) makes them first. A body the
    entity class no longer validates raises pydantic's ValidationError from
    `event.entity` (and from those), on each read.
    """

    # until the entity is made: (time_ns, id counter, id prefix: for event_id
    # and at, made first), entity class (None: plain JSON) and stored body
    __slots__ = ("_pending",)
    kind: ClassVar[str] = "lifecycle"
    entity: Any = None

    @classmethod
    def from_body(
        cls, collection: str, entity_id: str, version: int, owner: type[Any] | None, body: str
    ) -> Self:
        """The event of a write whose stored body is `body`: its entity made
        on first read, by `owner.model_validate_json(body)` (owner None: the
        body's JSON value). Made without validation, as `made` does."""
        event = _new(cls)
        _set(
            event,
            "__dict__",
            {"collection": collection, "entity_id": entity_id, "version": version},
        )
        _set(event, "_pending", (time_ns(), next(_ids._counter), _ids._prefix, owner, body))
        return event

    def _stamped(self) -> dict[str, Any]:
        """The event's fields, its id and time among them (made on first need,
        as new_id() would have made the id, in field order)."""
        fields = self.__dict__
        if "event_id" in fields:
            return fields
        with _stamping:  # one thread puts the fields in place
            fields = self.__dict__
            if "event_id" in fields:
                return fields
            ns, n, prefix, _, _ = _get(self, "_pending")
            stamped = {
                "event_id": _ids.spelled(ns, n, prefix),
                "at": _EPOCH + timedelta(microseconds=ns // 1000),
                **fields,
            }
            _set(self, "__pydantic_fields_set__", set(_CARRIED))
            _set(self, "__pydantic_extra__", None)
            _set(self, "__pydantic_private__", None)
            _set(self, "__dict__", stamped)
            return stamped

    def _entity(self) -> Any:
        """The entity, made from the stored body on the first call."""
        fields = self._stamped()
        if "entity" in fields:
            return fields["entity"]
        pending = _pending_of(self)
        if pending is None:  # made by another thread just now
            return fields.get("entity")
        owner, body = pending[3:]
        if owner is None:
            entity = json.loads(body)
        else:  # as the store loads it (its options: by name, extra keys ignored)
            info = getattr(owner, "__statekeep__", None)
            entity = owner.model_validate_json(body) if info is None else info.load(body)
        entity = fields.setdefault("entity", entity)  # one entity, whichever thread made it
        _set(self, "_pending", None)
        return entity

    if not TYPE_CHECKING:  # mypy would take any attribute name for one

        def __getattr__(self, name: str) -> Any:
            # only what is not there yet: the rest is found before this is called
            if name == "entity":
                return self._entity()
            if name in _STAMPED:
                self._stamped()
                return _get(self, name)
            return super().__getattr__(name)

    @pydantic.model_serializer(mode="wrap")
    def _dump_with_entity(self, handler: pydantic.SerializerFunctionWrapHandler) -> Any:
        if "entity" not in self.__dict__:
            self._entity()
        return handler(self)

    def __eq__(self, other: object) -> bool:
        self._entity()
        if isinstance(other, Carrying):
            other._entity()
        return super().__eq__(other)

    def __hash__(self) -> int:
        self._entity()
        fields = self.__dict__
        return hash(tuple(fields.get(name) for name in type(self).__pydantic_fields__))

    def __repr_args__(self) -> Any:
        self._entity()
        return super().__repr_args__()

    def __iter__(self) -> Any:
        self._entity()
        return super().__iter__()

    def __getstate__(self) -> dict[Any, Any]:
        self._entity()
        return super().__getstate__()

    def __copy__(self) -> Self:
        self._entity()
        return super().__copy__()

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Self:
        self._entity()
        return super().__deepcopy__(memo)


_Parts = tuple[int, int, str, type[Any] | None, str]  # see Carrying.__slots__


def _pending_of(event: Carrying) -> _Parts | None:
    try:
        pending: _Parts | None = _get(event, "_pending")
    except AttributeError:  # made by pydantic, copied or unpickled: the entity is in __dict__
        return None
    return pending


class Created(Carrying):
    kind: ClassVar[str] = "created"


class Updated(Carrying):
    kind: ClassVar[str] = "updated"


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
    if isinstance(event, Carrying) and "entity" not in event.__dict__:
        pending = _pending_of(event)
        if pending is not None:  # its entity not made yet: written from the stored body
            fields = event._stamped()
            return lifecycle_entry(
                event.kind,
                fields["collection"],
                fields["entity_id"],
                fields["version"],
                pending[4],
                fields["event_id"],
                fields["at"],
            )
    cls = type(event)
    head = _HEADS.get(cls)
    if head is None:
        head = _HEADS[cls] = _head(cls)
    return f"{head}{event.model_dump_json()}}}"


def lifecycle_entry(
    kind: str,
    collection: str,
    entity_id: str,
    version: int,
    body: str | None,
    event_id: str,
    at: datetime,
) -> str:
    """The outbox JSON of a lifecycle event, as outbox_entry() would write it
    (at: a UTC time), made straight from the stored body (None: a deletion)."""
    moment = at.isoformat().replace("+00:00", "Z")
    entity = "" if body is None else f',"entity":{body}'
    return (
        f'{{"kind":"{kind}","event":{{"event_id":"{event_id}","at":"{moment}",'
        f'"collection":"{collection}","entity_id":{json.dumps(entity_id)},"version":{version}'
        f"{entity}}}}}"
    )


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
