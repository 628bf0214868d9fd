"""The Store: save, save_many, get, find, count, delete and transactions."""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import _fork
from ._arguments import deadline_of, expect_of, priority_of
from ._calls import Calls, counted
from ._emit import Emitter, Pending, decode
from ._schema import check_storable
from ._transaction import Frames, Transaction
from .backends import open_backend
from .backends._parse import redacted
from .backends.base import CollectionSpec, Query, Row
from .conditions import Condition, FieldRef, Ordering
from .entity import Entity, has_recorded, put_back_recorded
from .errors import (
    ConfigurationError,
    NotFoundError,
    QueryError,
    StoreClosedError,
    ValidationError,
)
from .events import Event, Subscription
from .events._bus import Handler, matcher_for
from .events._durable import DurableSubscription, prune
from .writebehind import Priority, Receipt, WriteBehind, WriteBehindOptions
from .writebehind._claim import claimable_leftovers

if TYPE_CHECKING:
    from ._schema import EntityInfo

E = TypeVar("E", bound=Entity)
OrderBy = str | FieldRef | Ordering | Sequence[str | FieldRef | Ordering] | None


class State(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


# How long close() waits for the calls other threads have in flight (each is
# bounded by the backend's own timeouts) before it closes the backend anyway.
_CLOSE_WAIT = 60.0


def open(url: str, **options: Any) -> Store:
    """Open a store: `memory://`, `sqlite:///app.db` (relative), `sqlite:////abs/app.db`,
    `sqlite://:memory:`, `postgresql://user@host:5432/db`, `files:///dir` (relative)
    or `files:////abs/dir`. Options go as keywords or in the URL's query string
    (SQLite: synchronous=normal|full, timeout=seconds; PostgreSQL: schema,
    timeout, connect_timeout, statement_timeout, pool_min, pool_max and libpq's
    parameters; files: fsync=true|false, timeout)."""
    return Store(url, **options)


class Store:
    def __init__(
        self,
        url: str,
        *,
        writebehind: WriteBehindOptions | None = None,
        outbox: bool = False,
        outbox_retention: int | None = 0,
        **options: Any,
    ) -> None:
        if not isinstance(outbox, bool):
            raise ConfigurationError(f"outbox must be True or False, not {outbox!r}")
        if outbox_retention is not None and (
            not isinstance(outbox_retention, int)
            or isinstance(outbox_retention, bool)
            or outbox_retention < 0
        ):
            raise ConfigurationError(
                f"outbox_retention is a number of events >= 0, or None, not {outbox_retention!r}"
            )
        self._outbox_retention = outbox_retention
        self.url = url
        self._backend = open_backend(url, options)
        self._emitter = Emitter(self._backend, outbox)
        self._subscriptions: dict[str, DurableSubscription] = {}
        self._frames = Frames()
        self._calls = Calls(self._closed_error)
        self.state = State.OPEN
        self._writebehind_options = writebehind or WriteBehindOptions()
        self._engine: WriteBehind | None = None
        self._engine_lock = threading.Lock()
        journal = self._journal_dir()
        if journal is not None and claimable_leftovers(journal):
            self._writebehind()  # writes a crash left behind are stored now
        _fork.track(self)

    def _after_fork(self) -> None:
        """In a forked child (see _fork): what the parent owns stays the parent's."""
        self._calls.after_fork()
        self._engine_lock = threading.Lock()
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.forget()
        self._subscriptions.clear()  # their threads run in the parent
        self._emitter.bus.after_fork()
        self._backend.after_fork()

    # -- lifecycle -----------------------------------------------------------
    def close(self, timeout: float | None = None) -> None:
        """Stores what was enqueued (waiting up to timeout, by default the
        write-behind drain_timeout; what is still pending then stays in the
        journal for the next open) and releases everything."""
        if self.state is State.OPEN:
            self.state = State.CLOSING  # calls that had not started are refused from here
            if self._engine is not None:
                self._engine.close(timeout)
            for subscription in list(self._subscriptions.values()):
                subscription.stop()
            self._backend.closing()  # writers still waiting for the write lock give up
            self._calls.close(_CLOSE_WAIT)  # those in flight finish (or roll back) first
            self.state = State.CLOSED
            self._emitter.bus.close()
            self._backend.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Store {redacted(self.url)} {self.state.value}>"

    def _check_open(self) -> None:
        if self.state is not State.OPEN:
            raise self._closed_error()

    def _closed_error(self) -> StoreClosedError:
        return StoreClosedError(f"the store {redacted(self.url)} is closed")

    def _info(self, cls: Any) -> EntityInfo:
        self._check_open()
        info: EntityInfo | None = getattr(cls, "__statekeep__", None)
        if info is None or not isinstance(cls, type):
            raise ConfigurationError(f"expected an Entity subclass, got {cls!r}")
        return info

    def _entity_info(self, entity: Any) -> EntityInfo:
        if not isinstance(entity, Entity):
            self._check_open()
            raise ValidationError(f"expected an entity, got {entity!r}")
        return self._info(type(entity))

    # -- transactions --------------------------------------------------------
    def transaction(self) -> Transaction:
        """An atomic block; nested blocks are savepoints."""
        self._check_open()
        return Transaction(self._backend, self._frames, self._calls, self._emitter)

    def _atomic(
        self, spec: CollectionSpec, work: Callable[[], None], events: list[Pending] | None = None
    ) -> None:
        """Runs work inside the caller's open transaction, or in a transaction of its own.

        work may add to events; they are written to the outbox with the
        transaction and delivered once it commits. TransactionError (nothing
        written) when a transaction of another thread or task is in the way."""
        frame = self._frames.current()
        self._backend.ensure_collection(spec)
        if frame is not None:
            work()
            if events:
                frame.events.extend(events)
            return
        backend = self._backend
        backend.begin()
        try:
            work()
            if events:
                self._emitter.before_commit(events)
        except BaseException:
            backend.rollback()
            raise
        backend.commit()
        if events:
            self._emitter.after_commit(events)

    def _note(self, entity: Entity, old_version: int, taken: list[Event] | None = None) -> None:
        frame = self._frames.current()
        if frame is not None:
            frame.note(entity, old_version)
            if taken:
                frame.taken.append((entity, taken))

    # -- writes --------------------------------------------------------------
    @counted
    def save(self, entity: E) -> E:
        """Store the entity; its version moves forward by one.

        Raises ConflictError, changing nothing, when the stored version is not
        the entity's (someone else saved it first)."""
        info = self._entity_info(entity)
        fields = entity.__dict__
        old = fields["version"]
        fields["version"] = old + 1
        backend = self._backend
        emitter = self._emitter
        events: list[Pending] = []
        taken: list[Event] = []

        def work() -> None:
            backend.put(info.spec, rows)
            made, took = emitter.saved(entity, old, rows[0][2])
            events.extend(made)
            taken.extend(took)

        try:
            rows = (info.row(entity),)
            self._atomic(info.spec, work, events)
        except BaseException:
            fields["version"] = old
            put_back_recorded(entity, taken)
            raise
        self._note(entity, old, taken)
        return entity

    @counted
    def save_many(
        self, entities: Iterable[Entity], *, chunk_size: int | None = None, atomic: bool = True
    ) -> int:
        """Store any number of entities in chunks (bounded memory); returns how many.

        chunk_size: entities per chunk; by default what the backend does best
        with (1,000; 10,000 on PostgreSQL, where each chunk is one COPY).
        atomic=True (the default): all in one transaction (a savepoint when
        nested). atomic=False: a transaction per chunk."""
        self._check_open()
        if chunk_size is None:
            chunk_size = getattr(self._backend, "chunk_rows", 1000)
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
            raise ConfigurationError(f"chunk_size must be a positive int, not {chunk_size!r}")
        if atomic:
            with self.transaction():
                return self._save_chunks(entities, chunk_size, atomic)
        return self._save_chunks(entities, chunk_size, atomic)

    def _save_chunks(self, entities: Iterable[Entity], chunk_size: int, atomic: bool) -> int:
        held = isinstance(entities, (list, tuple))  # the caller holds every entity
        saved = 0
        iterator = iter(entities)
        while chunk := list(islice(iterator, chunk_size)):
            saved += self._save_chunk(chunk, atomic, held)
        return saved

    def _save_chunk(self, chunk: list[Entity], atomic: bool, held: bool) -> int:
        olds: list[int] = []
        emitter = self._emitter
        try:
            groups = self._rows_by_collection(chunk, olds)
            with nullcontext() if atomic else self.transaction():
                for spec, rows in groups:
                    self._backend.ensure_collection(spec)
                    self._backend.put(spec, rows)
                if emitter.active or has_recorded():
                    frame = self._frames.current()
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
        frame = self._frames.current()
        if frame is not None:
            frame.note_many(chunk, olds, weak=not held)
        return len(chunk)

    def _rows_by_collection(
        self, chunk: list[Entity], olds: list[int]
    ) -> list[tuple[CollectionSpec, list[Row]]]:
        """Moves each version forward (noting the old one in olds) and makes
        the rows, grouped by class."""
        if len(set(map(type, chunk))) == 1:  # the usual case: one class
            info = self._entity_info(chunk[0])
            return [(info.spec, info.advance(chunk, olds))]
        groups: dict[type, tuple[EntityInfo, list[Row]]] = {}
        for entity in chunk:
            group = groups.get(type(entity))
            if group is None:
                group = groups[type(entity)] = (self._entity_info(entity), [])
            group[1].extend(group[0].advance([entity], olds))
        return [(info.spec, rows) for info, rows in groups.values()]

    @overload
    def delete(self, target: Entity) -> None: ...
    @overload
    def delete(self, target: type[Entity], id: str) -> None: ...

    @counted
    def delete(self, target: Entity | type[Entity], id: str | None = None) -> None:
        """Delete an entity (ConflictError if it is stale) or a type and id.

        NotFoundError when nothing is stored under that id."""
        if isinstance(target, Entity):
            if id is not None:
                raise QueryError("delete(entity) takes no id; use delete(Type, id)")
            info = self._entity_info(target)
            self._delete(info, target.id, target.version)
            old = target.version
            target.__dict__["version"] = 0
            self._note(target, old)
            return
        self._delete(self._info(target), _id(id), None)

    def _delete(self, info: EntityInfo, id: str, version: int | None) -> None:
        backend, spec = self._backend, info.spec
        events: list[Pending] = []

        def work() -> None:
            deleted = version
            if deleted is None and self._emitter.active:
                deleted = backend.versions(spec.name, [id]).get(id, 0)
            backend.delete(spec.name, id, version)
            events.extend(self._emitter.deleted(info.cls, id, deleted or 0))

        self._atomic(spec, work, events)

    # -- write-behind --------------------------------------------------------
    @property
    def writebehind(self) -> WriteBehind:
        """The write-behind engine: stats(), dead_letters(), requeue()."""
        self._check_open()
        return self._writebehind()

    def _writebehind(self) -> WriteBehind:
        engine = self._engine
        if engine is None:
            with self._engine_lock:
                if self._engine is None:
                    self._engine = WriteBehind(
                        self._backend,
                        self._writebehind_options,
                        self._journal_dir(),
                        self._emitter,
                    )
                engine = self._engine
        return engine

    def _journal_dir(self) -> Path | None:
        journal = self._writebehind_options.journal
        if journal == "auto":
            location = self._backend.location
            return None if location is None else Path(location + ".writebehind")
        return None if journal is None else Path(journal)

    @counted
    def enqueue(
        self,
        entity: Entity,
        priority: Priority = Priority.NORMAL,
        *,
        deadline: float | None = None,
        expect_version: int | None = None,
    ) -> Receipt:
        """Hands the entity's current content to the write-behind queue; no I/O
        here. The last content enqueued wins (expect_version= makes the write
        conditional, as save() is). deadline: seconds by which it must be stored."""
        info = self._entity_info(entity)
        fields = entity.__dict__
        version = fields["version"]
        fields["version"] = version + 1  # the body for the version it will most likely get
        try:
            row = info.row(entity)
        finally:
            fields["version"] = version
        return self._writebehind().enqueue(
            info.spec,
            row,
            priority=priority_of(priority),
            deadline=deadline_of(deadline),
            expect=expect_of(expect_version),
        )

    @counted
    def enqueue_delete(
        self,
        target: Entity | type[Entity],
        id: str | None = None,
        *,
        priority: Priority = Priority.NORMAL,
        deadline: float | None = None,
        expect_version: int | None = None,
    ) -> Receipt:
        """Queues the deletion of an entity, or of a type and id."""
        if isinstance(target, Entity):
            if id is not None:
                raise QueryError("enqueue_delete(entity) takes no id; use (Type, id)")
            info, key = self._entity_info(target), target.id
        else:
            info, key = self._info(target), _id(id)
        return self._writebehind().enqueue(
            info.spec,
            (key, 0),
            delete=True,
            priority=priority_of(priority),
            deadline=deadline_of(deadline),
            expect=expect_of(expect_version),
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until everything enqueued so far is stored (or failed for good);
        False if timeout passed first."""
        self._check_open()
        return self._engine.flush(timeout) if self._engine is not None else True

    # -- events --------------------------------------------------------------
    @overload
    def on(
        self, target: Any, handler: None = None, *, priority: int = 0
    ) -> Callable[[Handler], Handler]: ...
    @overload
    def on(self, target: Any, handler: Handler, *, priority: int = 0) -> Subscription: ...

    def on(
        self, target: Any, handler: Handler | None = None, *, priority: int = 0
    ) -> Callable[[Handler], Handler] | Subscription:
        """Calls handler with every matching event once its change is committed.

        target: an event class (`Todo.Created`, `statekeep.Created`, a domain
        event class, `statekeep.Event` for all), an entity class (all its
        events) or a pattern (`"todo.*"`). Higher priorities run first. As a
        decorator (`@store.on(Todo.Created)`) it returns the function."""
        self._check_open()
        if handler is None:

            def decorate(function: Handler) -> Handler:
                self._emitter.bus.add(target, function, priority)
                return function

            matcher_for(target)  # a bad target fails here, not at decoration
            return decorate
        return self._emitter.bus.add(target, handler, priority)

    def off(self, handler: Handler | Subscription) -> int:
        """Unsubscribes a subscription, or every subscription of a handler; returns how many."""
        return self._emitter.bus.remove(handler)

    @counted
    def subscribe(
        self, name: str, handler: Handler, *, events: Sequence[Any] | None = None
    ) -> DurableSubscription:
        """A durable subscription: handler gets every event (or those matching
        `events`) from the outbox at least once, in commit order, resuming from
        its checkpoint after a restart, in whichever process subscribes under
        this name. Needs a store opened with outbox=True (by every writer)."""
        self._check_open()
        if not self._emitter.outbox:
            raise ConfigurationError(
                "durable subscriptions read the outbox: open the store (and every store "
                "that writes to this database) with outbox=True"
            )
        if not isinstance(name, str) or not 0 < len(name) <= 200 or name != name.strip():
            raise ConfigurationError(f"a subscription name is 1-200 characters, not {name!r}")
        if not callable(handler):
            raise ConfigurationError(f"an event handler must be callable, not {handler!r}")
        running = self._subscriptions.get(name)
        if running is not None and running.running:
            raise ConfigurationError(f"subscription {name!r} is already running in this store")
        if isinstance(events, (str, type)):
            events = [events]
        matchers = [matcher_for(target)[0] for target in (events or ["*"])]
        loop = _running_loop()
        subscription = DurableSubscription(
            self._backend,
            name,
            handler,
            lambda collection, kind: any(m(collection, kind) for m in matchers),
            decode,
            loop=loop,
            on_stop=self._forget,
            retention=self._outbox_retention,
        )
        self._subscriptions[name] = subscription
        return subscription

    @counted
    def prune_events(self, keep: int = 0) -> int:
        """Deletes the outbox events every durable subscription has passed,
        but the last `keep` of them; returns how many. (Subscriptions do it
        themselves every few seconds, keeping `outbox_retention`.)"""
        self._check_open()
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 0:
            raise ConfigurationError(f"keep is a number of events >= 0, not {keep!r}")
        return prune(self._backend, keep)

    def _forget(self, subscription: DurableSubscription) -> None:
        if self._subscriptions.get(subscription.name) is subscription:
            del self._subscriptions[subscription.name]

    # -- reads ---------------------------------------------------------------
    @counted
    def get(self, cls: type[E], id: str) -> E:
        """The entity stored under id; NotFoundError if there is none."""
        info = self._info(cls)
        self._backend.ensure_collection(info.spec, create=False)
        body = self._backend.get(info.spec.name, _id(id))
        if body is None:
            raise NotFoundError(info.spec.name, id)
        loaded: E = info.load(body)
        return loaded

    @counted
    def get_many(self, cls: type[E], ids: Iterable[str]) -> dict[str, E]:
        """The stored entities among ids, by id (missing ids are left out)."""
        info = self._info(cls)
        if isinstance(ids, str):
            raise QueryError("get_many() takes a list of ids, not one string")
        wanted = [_id(i) for i in ids]
        self._backend.ensure_collection(info.spec, create=False)
        found = self._backend.get_many(info.spec.name, wanted)
        return {i: info.load(found[i]) for i in wanted if i in found}

    @counted
    def find(
        self,
        cls: type[E],
        *conditions: Condition,
        order_by: OrderBy = None,
        limit: int | None = None,
        offset: int = 0,
        **equals: Any,
    ) -> Iterator[E]:
        """The matching entities, lazily: `find(Todo, Todo.f.done == False, order_by="-title")`.

        Conditions are ANDed; keywords are equality conditions. Without
        order_by the results come in id order (ties are always broken by id)."""
        info = self._info(cls)
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise QueryError(f"limit must be an int >= 0 or None, not {limit!r}")
        if not isinstance(offset, int) or offset < 0:
            raise QueryError(f"offset must be an int >= 0, not {offset!r}")
        query = Query(info.filters(conditions, equals), info.orders(order_by), limit, offset)
        self._backend.ensure_collection(info.spec, create=False)
        return self._results(info, self._backend.select(info.spec, query))

    def _results(self, info: EntityInfo, bodies: Iterator[str]) -> Iterator[Any]:
        load = info.load
        calls = self._calls
        while True:
            with calls:  # StoreClosedError once the store is closing
                body = next(bodies, None)
            if body is None:
                return
            yield load(body)

    @counted
    def count(self, cls: type[Entity], *conditions: Condition, **equals: Any) -> int:
        info = self._info(cls)
        filters = info.filters(conditions, equals)
        self._backend.ensure_collection(info.spec, create=False)
        return self._backend.count(info.spec, filters)


def _bodies_in_order(
    chunk: list[Entity], groups: list[tuple[CollectionSpec, list[Row]]]
) -> Iterator[str]:
    """The stored body of each entity of chunk, in chunk order (rows are grouped by class)."""
    if len(groups) == 1:
        return (row[2] for row in groups[0][1])
    by_collection = {spec.name: iter(rows) for spec, rows in groups}
    return (next(by_collection[type(e).__statekeep__.spec.name])[2] for e in chunk)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _id(id: Any) -> str:
    if not isinstance(id, str) or not id:
        raise QueryError(f"an id is a non-empty string, not {id!r}")
    check_storable(id, "id")
    return id
