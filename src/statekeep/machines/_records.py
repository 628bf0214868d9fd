"""What a transition leaves behind: its event, and (when the machine keeps
history) a record in the entity class's history collection.

`Transitioned` is a domain event (kind "transitioned"): recorded on the
entity when it moves, made and stamped with the entity's collection, id and
new version when the entity is saved, delivered after the commit and written
to the outbox with it. `Session.Transitioned` subscribes to one class's.

History records are entities of a class made per entity class (collection
`<collection>_transitions`), written by store.send() and transition_many()
in the transaction that stores the move.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from .._schema import Indexed
from ..entity import Entity
from ..errors import ConfigurationError
from ..events import Event


class Transitioned(Event):
    """An entity's state machine moved: source -> target by event."""

    kind: ClassVar[str] = "transitioned"
    machine: str = ""
    field: str = ""
    event: str = ""
    source: str = ""
    target: str = ""


class TransitionRecord(Entity, collection="machine_transition_record", shared=True):
    """One stored transition of one entity (the history of a machine declared
    with history=True)."""

    entity_id: Annotated[str, Indexed()] = ""
    entity_version: int = 0
    machine: str = ""
    field: str = ""
    event: str = ""
    source: str = ""
    target: str = ""
    at: datetime = datetime(1970, 1, 1, tzinfo=UTC)

    # the entity class whose history this class holds (history_class sets it)
    __statekeep_owner__: ClassVar[Any] = None

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled as its owner (importable) and its fields: the class is made
        again by history_class in the process that reads it."""
        return _record_of, (type(self).__statekeep_owner__, self.model_dump())


_history_classes: dict[type, type[TransitionRecord]] = {}


def history_name(owner: Any) -> str:
    """The collection of an entity class's history records."""
    collection = f"{owner.__statekeep__.spec.name}_transitions"
    if len(collection) > 63:
        raise ConfigurationError(
            f"{owner.__name__}: its history collection {collection!r} would be longer than "
            "63 characters; give the class a shorter collection name"
        )
    return collection


def history_class(owner: Any) -> type[TransitionRecord]:
    found = _history_classes.get(owner)
    if found is None:
        collection = history_name(owner)
        namespace = {
            "__module__": owner.__module__,
            "__qualname__": f"{owner.__qualname__}.History",
            "__statekeep_owner__": owner,
        }
        maker: Any = type(TransitionRecord)  # pydantic's metaclass
        found = _history_classes[owner] = maker(
            f"{owner.__name__}History", (TransitionRecord,), namespace, collection=collection
        )
    return found


def _record_of(owner: Any, fields: dict[str, Any]) -> TransitionRecord:
    """A history record read back from a pickle."""
    record: TransitionRecord = history_class(owner).model_validate(fields)
    return record
