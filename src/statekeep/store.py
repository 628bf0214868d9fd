"""The Store: save, save_many, get, find, count, delete and transactions."""

from __future__ import annotations

import asyncio
import enum
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import nullcontext
from itertools import islice
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import _arguments as check
from . import _fork
from ._calls import Calls, counted
from ._emit import Emitter, Later, Pending, decode
from ._transaction import CommitHooks, Frames, Transaction
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
from .events._durable import DurableSubscription
from .events._subscriptions import SubscriptionInfo, Subscriptions
from .writebehind import (
    Priority,
    Receipt,
    WriteBehind,
    WriteBehindOptions,
    has_leftovers,
    journal_dir,
)

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
        writebehind: WriteBehindOptions | dict[str, Any] | None = None,
        outbox: bool = False,
        outbox_retention: int | None = 0,
        outbox_stale_after: float = 3600.0,
        **options: Any,
    ) -> None:
        check.flag(outbox, "outbox")
        writebehind_options = check.writebehind(writebehind)
        self.url = url
        self._backend = open_backend(url, options)
        self._emitter = Emitter(self._backend, outbox)
        try:
            self._durable = Subscriptions(
                self._backend,
                decode,
                outbox=outbox,
                retention=outbox_retention,
                stale_after=outbox_stale_after,
            )
        except ConfigurationError:
            self._backend.close()
            raise
        self._frames = Frames()
        self._calls = Calls(self._closed_error)
        self.state = State.OPEN
        self._writebehind_options = writebehind_options
        self._engine: WriteBehind | None = None
        self._engine_lock = threading.Lock()
        self._closed, self._closer = threading.Event(), 0
        if has_leftovers(writebehind_options, self._backend.location):
            self._writebehind()  # writes a crash left behind are stored now
        _fork.track(self)

    def _after_fork(self) -> None:
        """In a forked child (see _fork): what the parent owns stays the parent's."""
        self._calls.after_fork()
        self._engine_lock = threading.Lock()
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.forget()
        self._durable.after_fork()
        self._emitter.bus.after_fork()
        self._backend.after_fork()

    # -- lifecycle -----------------------------------------------------------
    def close(self, timeout: float | None = None) -> None:
        """Stores what was enqueued (waiting up to timeout, by default the
        write-behind drain_timeout; what is still pending then stays in the
        journal for the next open) and releases everything."""
        timeout = check.timeout(timeout)
        with self._engine_lock:  # one close() closes; one called meanwhile waits for it
            closer = self.state is State.OPEN
            if closer:
                self.state, self._closer = State.CLOSING, threading.get_ident()
        if not closer:  # (but not the closer, nor a store's thread running a handler)
            me = threading.current_thread()
            if me.ident != self._closer and not me.name.startswith("statekeep-"):
                self._closed.wait()
            return
        try:  # calls that had not started are refused from here
            if self._engine is not None:
                self._engine.close(timeout)
            self._durable.stop_all()
            self._backend.closing()  # writers still waiting for the write lock give up
            self._calls.close(_CLOSE_WAIT)  # those in flight finish (or roll back) first
            self.state = State.CLOSED
            self._emitter.bus.close()
            self._backend.close()
        finally:
            self._closed.set()

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
        return self._transaction(self._emitter)

    def _transaction(self, hooks: CommitHooks) -> Transaction:
        self._check_open()
        return Transaction(self._backend, self._frames, self._calls, hooks)

    def _atomic(
        self, spec: CollectionSpec, work: Callable[[], None], events: list[Pending] | None = None
    ) -> list[Pending]:
        """Runs work inside the caller's open transaction, or in a transaction of its own.

        work may add to events; they are written to the outbox with the
        transaction. Returns the events to deliver now (none inside a block:
        they wait for it): the caller delivers them once the entity reflects
        the commit, so that a handler raising KeyboardInterrupt or SystemExit
        cannot make a committed write look undone. TransactionError (nothing
        written) when a transaction of another thread or task is in the way."""
        frame = self._frames.current()
        self._backend.ensure_collection(spec)
        if frame is not None:
            work()
            if events:
                frame.events.extend(events)
            return []
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
        return events or []

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
            committed = self._atomic(info.spec, work, events)
        except BaseException:
            fields["version"] = old
            put_back_recorded(entity, taken)
            raise
        self._note(entity, old, taken)
        self._deliver(committed)
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
        entities = check.entities(entities)
        if chunk_size is None:
            chunk_size = getattr(self._backend, "chunk_rows", 1000)
        chunk_size = check.chunk_size(chunk_size)
        if check.flag(atomic, "atomic"):
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
        later = Later(emitter)  # a chunk's own transaction: delivered after the versions hold
        try:
            groups = self._rows_by_collection(chunk, olds)
            block = nullcontext() if atomic else self._transaction(later)
            with block:
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
        self._deliver(later.events)
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
            committed = self._delete(info, target.id, target.version)
            old = target.version
            target.__dict__["version"] = 0
            self._note(target, old)
            self._deliver(committed)
            return
        self._deliver(self._delete(self._info(target), check.an_id(id), None))

    def _delete(self, info: EntityInfo, id: str, version: int | None) -> list[Pending]:
        backend, spec = self._backend, info.spec
        events: list[Pending] = []

        def work() -> None:
            deleted = version
            if deleted is None and self._emitter.active:
                deleted = backend.versions(spec.name, [id]).get(id, 0)
            backend.delete(spec.name, id, version)
            events.extend(self._emitter.deleted(info.cls, id, deleted or 0))

        return self._atomic(spec, work, events)

    def _deliver(self, committed: list[Pending]) -> None:
        if committed:
            self._emitter.after_commit(committed)

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
                        journal_dir(self._writebehind_options, self._backend.location),
                        self._emitter,
                    )
                engine = self._engine
        return engine

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
            priority=check.priority(priority),
            deadline=check.deadline(deadline),
            expect=check.expect_version(expect_version),
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
            info, key = self._info(target), check.an_id(id)
        return self._writebehind().enqueue(
            info.spec,
            (key, 0),
            delete=True,
            priority=check.priority(priority),
            deadline=check.deadline(deadline),
            expect=check.expect_version(expect_version),
        )

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until everything enqueued so far is stored (or failed for good);
        False if timeout passed first."""
        self._check_open()
        timeout = check.timeout(timeout)
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
        if not callable(handler) and not isinstance(handler, Subscription):
            raise ConfigurationError(f"off() takes a handler or a Subscription, not {handler!r}")
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
        return self._durable.subscribe(name, handler, events, _running_loop())

    @counted
    def prune_events(self, keep: int = 0) -> int:
        """Deletes the outbox events every durable subscription has passed,
        but the last `keep` of them; returns how many. (Subscriptions do it
        themselves every few seconds, keeping `outbox_retention`.)"""
        self._check_open()
        return self._durable.prune(keep)

    def subscriptions(self) -> list[SubscriptionInfo]:
        """The durable subscriptions of this database (any process's): position,
        when it last advanced, whether a consumer holds it, whether it is
        behind or stalled (behind and not advanced for outbox_stale_after)."""
        self._check_open()
        return self._durable.infos()

    def unsubscribe(self, name: str) -> None:
        """Retires a durable subscription: drops its checkpoint, so the outbox
        no longer keeps events for it. ConfigurationError while a consumer
        holds the name (stop it first); NotFoundError for an unknown name."""
        self._check_open()
        self._durable.unsubscribe(name)

    # -- reads ---------------------------------------------------------------
    @counted
    def get(self, cls: type[E], id: str) -> E:
        """The entity stored under id; NotFoundError if there is none."""
        info = self._info(cls)
        self._backend.ensure_collection(info.spec, create=False)
        body = self._backend.get(info.spec.name, check.an_id(id))
        if body is None:
            raise NotFoundError(info.spec.name, id)
        loaded: E = info.load(body)
        return loaded

    @counted
    def get_many(self, cls: type[E], ids: Iterable[str]) -> dict[str, E]:
        """The stored entities among ids, by id (missing ids are left out)."""
        info = self._info(cls)
        wanted = [check.an_id(i) for i in check.ids(ids)]
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
        limit = check.count(limit, "limit", least=0, none=True)
        offset = check.count(offset, "offset", least=0)
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
