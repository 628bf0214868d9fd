"""Entities: pydantic models with an id and a store-managed version.

    class Todo(statekeep.Entity):
        title: Annotated[str, statekeep.Indexed()]
        done: bool = False

Each class gets a collection (snake_case of the class name, or the
`collection=` class keyword), `Todo.f` for conditions, and Active Record
methods over the default store (`statekeep.use`).

A collection belongs to one class: a second class whose collection name is the
same, compared without case (SQLite folds case, PostgreSQL and file systems may
not), is refused when it is defined, unless one of the two says `shared=True`
(a projection, a new version of a model). Defining the same class again (same
qualified name, in the same module or file: a reload, a test run twice)
replaces it. Field names that would hide the class's own API (`save`, `find`,
`f`, `Created`, ...) or redefine `id` and `version` are refused.
"""

from __future__ import annotations

import inspect
import weakref
from collections.abc import Iterator
from typing import Any, ClassVar, Protocol, Self, cast

import pydantic
from pydantic import ConfigDict, Field

from . import active
from ._ids import new_id
from ._naming import file_of, redefines, snake_case
from ._schema import EntityInfo, as_validation_error, base_type
from .conditions import Condition, Fields, OrderBy
from .errors import ConfigurationError, ValidationError
from .events import Created, Deleted, Event, Lifecycle, Updated, domain_class


class _LifecycleClass:
    """`Todo.Created`: the class of one entity class's lifecycle events, made
    on first use (a pydantic model per entity class and kind would slow every
    class definition down)."""

    def __init__(self, base: type[Lifecycle]) -> None:
        self.base = base

    def __get__(self, instance: Any, owner: type[Entity]) -> type[Lifecycle]:
        key = (owner, self.base)
        found = _lifecycle_classes.get(key)
        if found is None:
            fields: dict[str, Any] = {}
            if self.base is not Deleted:
                fields["entity"] = (owner | None, None)
            found = cast(
                "type[Lifecycle]",
                pydantic.create_model(
                    f"{owner.__name__}{self.base.__name__}",
                    __base__=self.base,
                    __module__=owner.__module__,
                    **fields,
                ),
            )
            found.__qualname__ = f"{owner.__qualname__}.{self.base.__name__}"
            setattr(found, "__statekeep_collection__", owner.__statekeep__.spec.name)  # noqa: B010
            _lifecycle_classes[key] = found
        return found


_lifecycle_classes: dict[tuple[type, type], type[Lifecycle]] = {}


class _ViewClass:
    """`Session.Transitioned`: one entity class's view of a domain event kind
    that a layer above defines (statekeep.machines' Transitioned): a subclass
    that subscribes to the events of that class's collection only."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __get__(self, instance: Any, owner: type[Entity]) -> type[Event]:
        key = (owner, self.kind)
        found = _views.get(key)
        if found is None:
            base = domain_class(self.kind)
            if base is None:
                raise ConfigurationError(
                    f"{owner.__name__}: no event of kind {self.kind!r} is defined "
                    "(import statekeep.machines)"
                )
            namespace = {
                "__module__": owner.__module__,
                "__qualname__": f"{owner.__qualname__}.{base.__name__}",
                "__statekeep_collection__": owner.__statekeep__.spec.name,
            }
            maker: Any = type(base)  # pydantic's metaclass
            found = _views[key] = maker(f"{owner.__name__}{base.__name__}", (base,), namespace)
        return found


_views: dict[tuple[type, str], type[Event]] = {}
# the class that reads a collection's lifecycle events back from an outbox: its
# latest (a collection has several classes only when they say shared=True:
# _claim_collection refuses any other second class, and a class defined again
# replaces itself)
_by_collection: dict[str, type[Entity]] = {}
# the classes of each collection, by lower-cased collection name: (class, shared?, its file)
_classes_of: dict[str, list[tuple[type[Entity], bool, str | None]]] = {}
# domain events recorded on entities, until they are saved: id(entity) -> (ref, events)
_recorded: dict[int, tuple[weakref.ref[Entity], list[Event | Deferred]]] = {}


def entity_class(collection: str) -> type[Entity] | None:
    return _by_collection.get(collection)


def entity_classes() -> list[type[Entity]]:
    """Every entity class defined so far, one a collection (its latest), by collection name."""
    return [cls for _, cls in sorted(_by_collection.items())]


def view_of(collection: str, kind: str) -> type[Event] | None:
    """The entity class's view of a domain event kind (`Session.Transitioned`
    for "transitioned" events of collection "session"), if it has one: what
    an event read back from the outbox or a write-behind journal is made as."""
    owner = _by_collection.get(collection)
    name = _VIEW_NAMES.get(kind)
    if owner is None or name is None:
        return None
    view: type[Event] = getattr(owner, name)
    return view


def has_recorded() -> bool:
    """Has any entity recorded events not yet saved? (One check for a whole batch.)"""
    return bool(_recorded)


class Deferred(Protocol):
    """Domain events recorded before they are made (a state machine's moves,
    made into events only if the entity is saved): made when the entity's
    save takes its events."""

    def make(self) -> list[Event]: ...

    def __len__(self) -> int:
        """How many events make() makes."""

    def copy(self) -> Deferred:
        """Another of them, to change apart."""


def take_recorded(entity: Entity) -> list[Event]:
    """The domain events recorded on entity since it was last saved (and forgets them)."""
    entry = _recorded.pop(id(entity), None)
    if entry is None or entry[0]() is not entity:
        return []
    events: list[Event] = []
    for item in entry[1]:
        if isinstance(item, Event):
            events.append(item)
        else:
            events.extend(item.make())
    return events


def snapshot_recorded(entity: Entity) -> list[Event | Deferred]:
    """A copy of what is recorded on entity, to put back (restore_recorded)."""
    entry = _recorded.get(id(entity))
    if entry is None or entry[0]() is not entity:
        return []
    return [item if isinstance(item, Event) else item.copy() for item in entry[1]]


def restore_recorded(entity: Entity, items: list[Event | Deferred]) -> None:
    """What is recorded on entity becomes items (a snapshot_recorded)."""
    drop_recorded(entity)
    if items:
        _recorded_of(entity).extend(
            item if isinstance(item, Event) else item.copy() for item in items
        )


def drop_recorded(entity: Entity) -> None:
    """Forgets what is recorded on entity without making it (nobody listens)."""
    entry = _recorded.get(id(entity))
    if entry is not None and entry[0]() is entity:
        del _recorded[id(entity)]


def recording(entity: Entity) -> list[Event | Deferred]:
    """The list of what is recorded on entity, to add to (record() and a
    state machine's moves, as Deferred items)."""
    return _recorded_of(entity)


def recorded_count(entity: Entity) -> int:
    """How many domain events are recorded on entity, not yet saved."""
    entry = _recorded.get(id(entity))
    if entry is None or entry[0]() is not entity:
        return 0
    return sum(1 if isinstance(item, Event) else len(item) for item in entry[1])


def put_back_recorded(entity: Entity, events: list[Event]) -> None:
    """Records events again, ahead of any recorded since (their save failed)."""
    if events:
        _recorded_of(entity)[:0] = events


def _recorded_of(entity: Entity) -> list[Event | Deferred]:
    """The domain events recorded on entity and not yet saved (a list to add to)."""
    entry = _recorded.get(id(entity))
    if entry is None or entry[0]() is not entity:
        entry = _new_entry(entity)
    return entry[1]


def _new_entry(entity: Entity) -> tuple[weakref.ref[Entity], list[Event | Deferred]]:
    key = id(entity)
    ref = weakref.ref(entity, lambda _, key=key: _recorded.pop(key, None))  # type: ignore[misc]
    entry = _recorded[key] = (ref, [])
    return entry


def _check_field_names(cls: type) -> None:
    """Refuses fields that would hide what statekeep gives every entity class."""
    for name in inspect.get_annotations(cls):
        if name in ("id", "version"):
            raise ConfigurationError(
                f"{cls.__qualname__}.{name}: {name!r} is statekeep's own field and cannot be "
                "redefined (id: a non-empty string, generated when absent: pass id=... to "
                "set one; version: managed by the store)"
            )
        if name in _ENTITY_API or (
            name.startswith("model_")
            and name != "model_config"  # model_config: ClassVar[ConfigDict] is pydantic's own
            and hasattr(pydantic.BaseModel, name)
        ):
            raise ConfigurationError(
                f"{cls.__qualname__}.{name}: a field cannot be called {name!r}, a name "
                f"every entity class uses ({', '.join(sorted(_ENTITY_API))} and "
                "pydantic's model_* names): give the field another name"
            )


def _bind_fields(cls: type[Entity]) -> dict[str | None, Any]:
    """The fields whose type binds itself to the class that declares them (a
    state machine, through `__statekeep_bind__(cls, field)`), bound: what
    each binding returned, by field name, and under None too when it is the
    only one."""
    bound: dict[str | None, Any] = {}
    for name, info in cls.model_fields.items():
        bind = getattr(base_type(info.annotation), "__statekeep_bind__", None)
        if bind is not None:
            bound[name] = bind(cls, name)
    if len(bound) == 1:
        bound[None] = next(iter(bound.values()))
    return bound


def _claim_collection(cls: type[Entity], name: str, shared: bool) -> None:
    """Registers cls as a class of the collection, or refuses an accidental twin.

    The same class defined again (a reload, a module run as a script and
    imported, a class made in a function called twice) replaces the old one."""
    file = file_of(cls)
    others = [
        (other, other_shared, other_file)
        for other, other_shared, other_file in _classes_of.get(name.lower(), [])
        if not redefines(cls, file, other, other_file)
    ]
    for other, other_shared, _ in others:
        theirs = other.__statekeep__.spec.name
        where = f"{other.__module__}.{other.__qualname__}"
        if theirs != name:
            raise ConfigurationError(
                f"collection {name!r} of {cls.__qualname__} differs only in case from "
                f"{theirs!r} of {where}: SQLite would store both in one table, PostgreSQL "
                "in two; spell the collection name one way"
            )
        if not (shared or other_shared):
            raise ConfigurationError(
                f"{cls.__module__}.{cls.__qualname__} and {where} would both store into "
                f"collection {name!r}: give one of them its own name "
                f"(class {cls.__name__}(Entity, collection='...')), or, if they are meant "
                f"to share it, say so with shared=True"
            )
    _classes_of[name.lower()] = [*others, (cls, shared, file)]


class Entity(pydantic.BaseModel):
    """A typed, versioned document kept by a Store."""

    # JSON has no infinity or NaN, and no database compares them alike: refused
    # in float fields when set, and anywhere else in the body when saved
    # (serialised as constants, so that they cannot pass for null).
    model_config = ConfigDict(
        validate_assignment=True,
        extra="forbid",
        allow_inf_nan=False,
        ser_json_inf_nan="constants",
    )

    __statekeep__: ClassVar[EntityInfo]
    # the fields that hold a state machine's states: name -> the machine class
    __statekeep_machines__: ClassVar[dict[str, Any]] = {}
    # name -> what send() calls (statekeep.machines' Sender); None -> the only one
    __statekeep_senders__: ClassVar[dict[str | None, Any]] = {}
    f: ClassVar[Fields]

    id: str = Field(default_factory=new_id, min_length=1)
    version: int = Field(default=0, ge=0)

    # this class's lifecycle events: subscribe with store.on(Todo.Created)
    Created: ClassVar[type[Created]] = _LifecycleClass(Created)  # type: ignore[assignment]
    Updated: ClassVar[type[Updated]] = _LifecycleClass(Updated)  # type: ignore[assignment]
    Deleted: ClassVar[type[Deleted]] = _LifecycleClass(Deleted)  # type: ignore[assignment]
    # its state machines' transitions (statekeep.machines): store.on(Todo.Transitioned)
    Transitioned: ClassVar[type[Event]] = _ViewClass("transitioned")  # type: ignore[assignment]

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except pydantic.ValidationError as exc:
            raise as_validation_error(exc) from exc

    # Tells pydantic this __init__ only translates errors, so validating stored
    # JSON (model_validate_json) need not go through it.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            super().__setattr__(name, value)
        except pydantic.ValidationError as exc:
            raise as_validation_error(exc) from exc

    # write-behind writes of this class are stored over whatever is stored
    # (no conflict rule: see docs/writebehind.md); set by the class keyword
    __last_write_wins__: ClassVar[bool] = False

    def __init_subclass__(
        cls,
        collection: str | None = None,
        shared: bool = False,
        last_write_wins: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        _check_field_names(cls)  # before pydantic reads the fields

    @classmethod
    def __pydantic_init_subclass__(
        cls,
        collection: str | None = None,
        shared: bool = False,
        last_write_wins: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if last_write_wins is not None:  # else as the class it derives from
            if not isinstance(last_write_wins, bool):
                raise ConfigurationError(
                    f"last_write_wins must be True or False, not {last_write_wins!r}"
                )
            cls.__last_write_wins__ = last_write_wins
        if collection is not None and not isinstance(collection, str):
            raise ConfigurationError(f"collection must be a string, not {collection!r}")
        if not isinstance(shared, bool):
            raise ConfigurationError(f"shared must be True or False, not {shared!r}")
        name = snake_case(cls.__name__) if collection is None else collection
        info = EntityInfo(cls, name)
        cls.__statekeep__ = info
        cls.f = Fields(cls, cls.model_fields)
        senders = _bind_fields(cls)  # a guard it lacks is refused before it claims its collection
        _claim_collection(cls, name, shared)
        for field, sender in senders.items():
            finish = getattr(sender, "finish", None)
            if field is not None and finish is not None:
                finish()  # what the binding claims in turn (a machine's history collection)
        cls.__statekeep_senders__ = senders
        cls.__statekeep_machines__ = {
            field: sender.machine for field, sender in senders.items() if field
        }
        _by_collection[name] = cls

    # -- domain events -------------------------------------------------------
    def record(self, event: Event) -> None:
        """Records a domain event; it is stored with this entity's next save, in
        the same transaction, and delivered once that commits.

        (The verb of the domain-event pattern, as in "record that"; the only
        other record an application meets is a write-behind journal record,
        always called that: DeadLetter.journal_record.)"""
        if not isinstance(event, Event) or isinstance(event, Lifecycle):
            raise ValidationError(
                f"record() takes a domain event (a statekeep.Event subclass), not {event!r}"
            )
        _recorded_of(self).append(event)

    # -- state machines (statekeep.machines) -----------------------------------
    def send(self, event: str, /, *, field: str | None = None, **data: Any) -> Self:
        """Moves this entity's state machine by event, in memory: checks that
        the event is allowed from the current state and its guards, runs the
        actions, sets the field (TransitionError, and nothing changed, when
        refused). The transition is announced with the entity's next save
        (`store.send` sends and saves in one step). field: which machine,
        when the entity has several; data: keywords for guards and actions."""
        senders = type(self).__statekeep_senders__
        sender = senders.get(field) if field is None or isinstance(field, str) else None
        if sender is None:
            sender = self._sender(field)
        sender.send(self, event, data)
        return self

    async def asend(self, event: str, /, *, field: str | None = None, **data: Any) -> Self:
        """send(), awaiting guards and actions that are coroutine functions."""
        await self._sender(field).asend(self, event, data)
        return self

    def allowed_events(self, field: str | None = None) -> list[str]:
        """The events this entity's machine would take from its current state
        (guards not evaluated)."""
        names: list[str] = self._sender(field).allowed_events(self)
        return names

    @classmethod
    def _machine(cls, field: str | None) -> Any:
        """The machine of a field (the only one when field is None)."""
        return cls._sender(field).machine

    @classmethod
    def _sender(cls, field: str | None) -> Any:
        senders = cls.__statekeep_senders__
        found = senders.get(field) if field is None or isinstance(field, str) else None
        if found is None and cls.__pydantic_complete__ and not senders:
            # a field whose machine was defined after the class: bound once the model is rebuilt
            senders = cls.__statekeep_senders__ = _bind_fields(cls)
            cls.__statekeep_machines__ = {f: s.machine for f, s in senders.items() if f}
            found = senders.get(field) if field is None or isinstance(field, str) else None
        if found is None:
            machines = cls.__statekeep_machines__
            have = ", ".join(sorted(machines)) or "none"
            raise ConfigurationError(
                f"{cls.__name__} has state machine fields: {have}; "
                + ("say which with field=..." if field is None else f"not {field!r}")
            )
        return found

    # -- Active Record, over the default store -------------------------------
    def save(self) -> Self:
        return active.current_store().save(self)

    def delete(self) -> None:
        active.current_store().delete(self)

    @classmethod
    def get(cls, id: str) -> Self:
        return active.current_store().get(cls, id)

    @classmethod
    def all(cls, *, order_by: OrderBy = None) -> Iterator[Self]:
        return active.current_store().find(cls, order_by=order_by)

    @classmethod
    def find(
        cls,
        *conditions: Condition,
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int = 0,
        **equals: Any,
    ) -> Iterator[Self]:
        return active.current_store().find(
            cls, *conditions, order_by=order_by, limit=limit, offset=offset, **equals
        )

    @classmethod
    def count(cls, *conditions: Condition, **equals: Any) -> int:
        return active.current_store().count(cls, *conditions, **equals)

    # -- Active Record, over the default AsyncStore (statekeep.aio) ----------
    # named as Django's async ORM names them: `await todo.asave()`
    async def asave(self) -> Self:
        saved: Self = await active.current_async_store().save(self)
        return saved

    async def adelete(self) -> None:
        await active.current_async_store().delete(self)

    @classmethod
    async def aget(cls, id: str) -> Self:
        found: Self = await active.current_async_store().get(cls, id)
        return found

    @classmethod
    def afind(
        cls,
        *conditions: Condition,
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int = 0,
        **equals: Any,
    ) -> Any:
        """`async for todo in Todo.afind(...)`, or `await Todo.afind(...).all()`."""
        return active.current_async_store().find(
            cls, *conditions, order_by=order_by, limit=limit, offset=offset, **equals
        )

    @classmethod
    async def acount(cls, *conditions: Condition, **equals: Any) -> int:
        counted: int = await active.current_async_store().count(cls, *conditions, **equals)
        return counted


# what every entity class has: a field of one of these names would hide it
_ENTITY_API = frozenset(
    {"f"}.union(
        name
        for name in vars(Entity)
        if not name.startswith("_") and name not in Entity.model_fields and name != "model_config"
    )
)

# the domain event kinds every entity class has a view of: kind -> the attribute
_VIEW_NAMES = {
    value.kind: name for name, value in vars(Entity).items() if isinstance(value, _ViewClass)
}
