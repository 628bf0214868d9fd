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
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Self

import pydantic
from pydantic import ConfigDict, Field

from .._ids import new_id
from .._naming import snake_case
from ..errors import ConfigurationError


# domain event classes by kind, to read them back from an outbox
_DOMAIN: dict[str, type[Event]] = {}
_RESERVED_KINDS = frozenset(
    {"created", "updated", "deleted", "lifecycle", "event", "statekeep_unknown"}
)


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
        if cls.__module__ == __name__ or issubclass(cls, globals().get("Lifecycle", ())):
            return  # the store's own events (one class per entity class and kind for lifecycle)
        if "kind" not in cls.__dict__:
            cls.kind = snake_case(cls.__name__)
        if cls.kind in _RESERVED_KINDS:
            raise ConfigurationError(
                f"{cls.__name__}: a domain event cannot be of kind {cls.kind!r} "
                f"({', '.join(sorted(_RESERVED_KINDS))} are the store's own); rename it "
                "or set kind = '...' in the class"
            )
        _DOMAIN[cls.kind] = cls  # the latest defined wins

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


def domain_class(kind: str) -> type[Event] | None:
    return _DOMAIN.get(kind)
