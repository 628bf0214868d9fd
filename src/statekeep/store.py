"""The Store: save, save_many, get, find, count, delete and transactions.

A facade over one core (statekeep._core: the backend, transaction blocks,
events, calls in flight, what close() releases), which it builds once and
hands to its parts; what they do lives with them: the commit sequence in
_commit, save_many's chunks in _saving, the write-behind engine and its
argument checks in writebehind, durable subscriptions in events.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import _arguments as check
from . import _fork
from ._calls import OPERATIONS, counted
from ._core import Core, State
from ._counting import count_by
from ._emit import Pending, decode
from ._enqueue import enqueue, enqueue_entity, make_engine
from ._entity_batcher import EntityBatcher
from ._finding import results
from ._metering import Meter, call_timed, check_alerts, counted_moves, watch
from ._saving import save_all, save_one
from ._states import States
from ._transaction import Transaction
from .backends import Backend, open_backend, redacted
from .backends.base import Query
from .conditions import Condition, OrderBy
from .entity import Entity
from .errors import ConfigurationError, NotFoundError, QueryError
from .events import (
    Bus,
    DurableSubscription,
    Handler,
    Subscription,
    SubscriptionInfo,
    Subscriptions,
    matcher_for,
    running_loop,
)
from .machines import TransitionReport, history, send_stored, transition_many
from .metrics import Advice, AlertRule, Firing, Registry, Snapshot
from .writebehind import (
    Priority,
    Receipt,
    WriteBehind,
    WriteBehindOptions,
    at_open,
    check_deadline,
    check_expect_version,
    check_options,
    check_priority,
    has_leftovers,
)

if TYPE_CHECKING:
    import pydantic

    from ._schema import EntityInfo
    from .state import AppState

E = TypeVar("E", bound=Entity)
ENQUEUE = OPERATIONS.index("enqueue")  # enqueue times itself (its hot path is not @counted)
M = TypeVar("M", bound="pydantic.BaseModel")

__all__ = ["OrderBy", "Store", "open"]

# How long close() waits for the calls other threads have in flight (each is
# bounded by the backend's own timeouts) before it closes the backend anyway.
_CLOSE_WAIT = 60.0


def open(url: str, *, backend: Backend | None = None, **options: Any) -> Store:
    """Open a store: `memory://`, `sqlite:///app.db` (relative), `sqlite:////abs/app.db`,
    `sqlite://:memory:`, `postgresql://user@host:5432/db`, `files:///dir` (relative)
    or `files:////abs/dir`. Options go as keywords or in the URL's query string
    (SQLite: synchronous=normal|full, timeout=seconds; PostgreSQL: schema,
    timeout, connect_timeout, statement_timeout, pool_min, pool_max and libpq's
    parameters; files: fsync=true|false, timeout).

    backend: a backend object to run on instead of opening url (a wrapper
    that injects faults, a backend of your own); url then only names the
    store. The store takes it over: its close() closes the backend."""
    return Store(url, backend=backend, **options)


class Store:
    def __init__(
        self,
        url: str,
        *,
        backend: Backend | None = None,
        writebehind: WriteBehindOptions | dict[str, Any] | None = None,
        outbox: bool = False,
        outbox_retention: int | None = 0,
        outbox_stale_after: float = 3600.0,
        metrics: bool = True,
        alerts: Sequence[AlertRule] | None = None,
        **options: Any,
    ) -> None:
        """backend: see open(). The store closes a backend given to it with
        itself (but not when this constructor raises: it is still yours then).
        metrics=False records nothing (store.metrics() is empty); alerts: the
        rules to watch (default: statekeep.metrics.default_alerts(); () for none)."""
        check.flag(outbox, "outbox")
        check.flag(metrics, "metrics")
        alerts = check_alerts(alerts)
        writebehind_options = check_options(writebehind)
        self.url = url
        given = backend is not None
        if backend is None:
            backend = open_backend(url, options)
        else:
            check.backend(backend)
            if options:
                raise ConfigurationError(
                    "with backend=, options go to the backend you made, not to the store: "
                    + ", ".join(sorted(options))
                )
        try:
            self._durable = Subscriptions(
                backend,
                decode,
                outbox=outbox,
                retention=outbox_retention,
                stale_after=outbox_stale_after,
            )
        except ConfigurationError:
            if not given:
                backend.close()
            raise
        meter = Meter(enabled=metrics, alerts=alerts)
        core = self._core = Core(url, backend, outbox=outbox, meter=meter)
        self._calls, self._records = core.calls, meter.records  # for @counted
        self._transitioned = counted_moves(core)  # stored machine moves (machines._stored)
        self._saved = meter.patterns.saved if metrics else None
        self._writebehind_options = writebehind_options
        self._engine: WriteBehind | None = None
        self._engine_lock = threading.Lock()
        self._states = States(self)  # store.state()
        self._closed, self._closer = threading.Event(), 0
        exits = core.exits  # what close() releases after the write-behind engine, in turn:
        exits.callback(backend.close)  # 6. the backend
        exits.callback(core.bus.close)  # 5. the bus (its loop thread)
        exits.callback(core.mark_closed)  # 4. even the ends of blocks are refused now
        exits.callback(core.calls.close, _CLOSE_WAIT)  # 3. calls in flight finish first
        exits.callback(backend.closing)  # 2. writers waiting for the write lock give up
        exits.callback(self._durable.stop_all)  # 1. durable subscriptions stop
        exits.callback(meter.close)  # 0. no more ticks
        watch(meter, self, outbox)
        at_open(writebehind_options.drain_on_sigterm)  # the SIGTERM drain handler
        if has_leftovers(writebehind_options, backend.location):
            self._writebehind()  # writes a crash left behind are stored now
        if given:
            check.TAKEN[id(backend)] = self  # one store a backend
        _fork.track(self)

    def _after_fork(self) -> None:
        """In a forked child (see _fork): what the parent owns stays the parent's."""
        self._engine_lock = threading.Lock()
        self._core.meter.forked()
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.forget()
        self._durable.after_fork()
        self._core.after_fork()

    # -- lifecycle -----------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once close() has been called: the store refuses calls from then on."""
        return self._core.state is not State.OPEN

    @property
    def closing(self) -> bool:
        """True while close() is under way (storing what was enqueued, letting
        the calls in flight finish); False before, and once it has finished."""
        return self._core.state is State.CLOSING

    @property
    def backend(self) -> Backend:
        """The backend this store runs on (the one given as backend=, or the
        one its URL opened). For tests and tools: what is done through it
        bypasses the store's transactions, events and write-behind."""
        return self._core.backend

    @property
    def bus(self) -> Bus:
        """The in-process event bus: its `stats` (delivered, failed) and the
        `on_error` callbacks a failing handler is reported to."""
        return self._core.bus

    def close(self, timeout: float | None = None) -> None:
        """Stores what was enqueued (waiting up to timeout, by default the
        write-behind drain_timeout; what is still pending then stays in the
        journal for the next open) and releases everything."""
        timeout = check.timeout(timeout)
        core = self._core
        if core.state is State.OPEN:  # app states first: their last snapshots are enqueued
            self._states.close_all()
        with self._engine_lock:  # one close() closes; one called meanwhile waits for it
            closer = core.state is State.OPEN
            if closer:
                core.state, self._closer = State.CLOSING, threading.get_ident()
        if not closer:  # (but not the closer, nor a store's thread running a handler)
            me = threading.current_thread()
            if me.ident != self._closer and not me.name.startswith("statekeep-"):
                self._closed.wait()
            return
        try:  # calls that had not started are refused from here
            if self._engine is not None:
                self._engine.close(timeout)
            core.exits.close()
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
        return f"<Store {redacted(self.url)} {self._core.state.value}>"

    # -- transactions --------------------------------------------------------
    def transaction(self) -> Transaction:
        """An atomic block; nested blocks are savepoints."""
        return self._core.transaction()

    # -- writes --------------------------------------------------------------
    @counted
    def save(self, entity: E) -> E:
        """Store the entity; its version moves forward by one.

        Raises ConflictError, changing nothing, when the stored version is not
        the entity's (someone else saved it first)."""
        collection = save_one(self._core, entity)
        if self._saved is not None:  # how saves come, for advice()
            self._saved(collection, entity.id, bool(self._core.frames.read()))
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
        core = self._core
        core.check_open()
        entities = check.entities(entities)
        if chunk_size is None:
            chunk_size = core.backend.chunk_rows
        chunk_size = check.chunk_size(chunk_size)
        return save_all(core, entities, chunk_size, check.flag(atomic, "atomic"))

    @overload
    def delete(self, target: Entity) -> None: ...
    @overload
    def delete(self, target: type[Entity], id: str) -> None: ...

    @counted
    def delete(self, target: Entity | type[Entity], id: str | None = None) -> None:
        """Delete an entity (ConflictError if it is stale) or a type and id.

        NotFoundError when nothing is stored under that id."""
        core = self._core
        if isinstance(target, Entity):
            if id is not None:
                raise QueryError("delete(entity) takes no id; use delete(Type, id)")
            info = core.entity_info(target)
            committed = self._delete(info, target.id, target.version)
            old = target.version
            target.__dict__["version"] = 0
            core.note(target, old)
            core.deliver(committed)
            return
        core.deliver(self._delete(core.info(target), check.an_id(id), None))

    def _delete(self, info: EntityInfo, id: str, version: int | None) -> list[Pending]:
        core = self._core
        backend, emitter, spec = core.backend, core.emitter, info.spec
        events: list[Pending] = []

        def work() -> None:
            if self._engine is not None:  # versions start again after a delete
                self._engine.deleted_directly(spec.name, id)
            deleted = version
            if deleted is None and emitter.active:
                deleted = backend.versions(spec.name, [id]).get(id, 0)
            backend.delete(spec.name, id, version)
            events.extend(emitter.deleted(info.cls, id, deleted or 0))

        return core.write(spec, work, events)

    # -- write-behind --------------------------------------------------------
    @property
    def writebehind(self) -> WriteBehind:
        """The write-behind engine: stats(), dead_letters(), requeue()."""
        self._core.check_open()
        return self._writebehind()

    def _writebehind(self) -> WriteBehind:
        engine = self._engine
        if engine is None:
            with self._engine_lock:
                if self._engine is None:
                    # close() marks the store closing under this lock, then closes
                    # the engine it finds: none may start after that
                    self._core.check_open()
                    self._engine = make_engine(self._core, self._writebehind_options)
                engine = self._engine
        return engine

    def enqueue(
        self,
        entity: Entity,
        priority: Priority = Priority.NORMAL,
        *,
        deadline: float | None = None,
        expect_version: int | None = None,
    ) -> Receipt:
        """Hands the entity's current content to the write-behind queue; no I/O
        here. The write is based on the entity's version now: it is stored
        unless another writer changed the entity since (then it fails with
        ConflictError and is dead-lettered; see docs/writebehind.md), or over
        anything with a class declared last_write_wins=True; expect_version=
        makes it conditional on that exact version, as save() is. Domain
        events recorded on the entity go with the write. Inside a
        transaction it is enqueued when the outermost block commits, and
        dropped if the block rolls back. deadline: seconds by which it must
        be stored."""
        args = (self._core, self._writebehind, entity, priority, deadline, expect_version)
        if self._engine is not None:  # the hot path: once the engine runs, it refuses
            # writes once it closes, and enqueue does no I/O: no need to count the call
            return call_timed(self, ENQUEUE, enqueue_entity, *args)
        with self._calls:
            return call_timed(self, ENQUEUE, enqueue_entity, *args)

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
            info, key = self._core.entity_info(target), target.id
            base = None if type(target).__last_write_wins__ else target.version
        else:
            info, key, base = self._core.info(target), check.an_id(id), None
        options = (
            True,
            check_priority(priority),
            check_deadline(deadline),
            check_expect_version(expect_version),
            base,  # a stale entity's delete is a conflict, as with delete()
            (),
        )
        return enqueue(self._core.frames, self._writebehind(), info.spec, (key, 0), options)

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until everything enqueued so far is stored (or failed for good);
        False if timeout passed first."""
        self._core.check_open()
        timeout = check.timeout(timeout)
        return self._engine.flush(timeout) if self._engine is not None else True

    def batcher(self, cls: type[E], **options: Any) -> EntityBatcher[E]:
        """A statekeep.flow.Batcher of cls entities, saved with save_many a
        batch at a time: `handle = batcher.add(todo)` (see _entity_batcher).
        Close it (or use `with`) before the store."""
        return EntityBatcher(self, cls, **options)

    def state(self, name: str, model: type[M] | M, **options: Any) -> AppState[M]:
        """The app state called name (docs/state.md): restored from this store,
        persisted through write-behind; one object per name until closed."""
        self._core.check_open()
        return self._states.open(name, model, options)

    # -- state machines (statekeep.machines; docs/machines.md) -----------------
    @counted
    def send(
        self,
        entity: E,
        event: str | Callable[..., Any],
        /,
        *,
        field: str | None = None,
        retry: bool = False,
        **data: Any,
    ) -> E:
        """Sends event to entity's machine and saves it in one transaction
        (TransitionError when refused; ConflictError when stale, unless
        retry=True); on failure the entity is left as it was."""
        self._core.check_open()
        return send_stored(self, entity, event, field=field, retry=retry, data=data)

    @counted
    def transition_many(
        self, cls: type[Entity], event: str | Callable[..., Any], /, *conditions: Condition,
        field: str | None = None,
        chunk_size: int = 500, data: dict[str, Any] | None = None, **equals: Any,
    ) -> TransitionReport:  # fmt: skip
        """Sends event to every matching entity, a transaction per chunk, and
        reports how many moved and why each other one did not."""
        self._core.check_open()
        return transition_many(self, cls, event, conditions, equals, field, chunk_size, data)

    def on_rollback(self, undo: Callable[[], None]) -> None:
        """Calls undo if the caller's transaction block rolls back (outside one: never)."""
        self._core.on_rollback(undo)

    def history(self, target: Entity | type[Entity], id: str | None = None) -> list[Any]:
        """The stored transitions of an entity whose machine keeps history, oldest first."""
        self._core.check_open()
        return history(self, target, id)

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
        self._core.check_open()
        if handler is None:

            def decorate(function: Handler) -> Handler:
                self._core.bus.add(target, function, priority)
                return function

            matcher_for(target)  # a bad target fails here, not at decoration
            return decorate
        return self._core.bus.add(target, handler, priority)

    def off(self, handler: Handler | Subscription) -> int:
        """Unsubscribes a subscription, or every subscription of a handler; returns how many."""
        if not callable(handler) and not isinstance(handler, Subscription):
            raise ConfigurationError(f"off() takes a handler or a Subscription, not {handler!r}")
        return self._core.bus.remove(handler)

    @counted
    def subscribe(
        self, name: str, handler: Handler, *, events: Sequence[Any] | None = None
    ) -> DurableSubscription:
        """A durable subscription: handler gets every event (or those matching
        `events`) from the outbox at least once, in commit order, resuming from
        its checkpoint after a restart, in whichever process subscribes under
        this name. Needs a store opened with outbox=True (by every writer)."""
        self._core.check_open()
        return self._durable.subscribe(name, handler, events, running_loop())

    @counted
    def prune_events(self, keep: int = 0) -> int:
        """Deletes the outbox events every durable subscription has passed,
        but the last `keep` of them; returns how many. (Subscriptions do it
        themselves every few seconds, keeping `outbox_retention`.)"""
        self._core.check_open()
        return self._durable.prune(keep)

    def subscriptions(self) -> list[SubscriptionInfo]:
        """The durable subscriptions of this database (any process's): position,
        when it last advanced, whether a consumer holds it, whether it is
        behind or stalled (behind and not advanced for outbox_stale_after)."""
        self._core.check_open()
        return self._durable.infos()

    def unsubscribe(self, name: str) -> None:
        """Retires a durable subscription: drops its checkpoint, so the outbox
        no longer keeps events for it. ConfigurationError while a consumer
        holds the name (stop it first); NotFoundError for an unknown name."""
        self._core.check_open()
        self._durable.unsubscribe(name)

    # -- metrics (statekeep.metrics; docs/metrics.md) -------------------------
    def metrics(self) -> Snapshot:
        """Every metric of this store now: `store.metrics().table()` draws them."""
        return self._core.meter.snapshot()

    @property
    def registry(self) -> Registry:
        """The store's metrics registry (for exporters, and metrics of your own)."""
        return self._core.meter.registry

    def advice(self) -> list[Advice]:
        """What to change, from the patterns of this store's own calls, the
        biggest expected gain first (each with its evidence)."""
        return self._core.meter.advice()

    def alerts(self) -> list[Firing]:
        """The alerts raised now (AlertRaised / AlertResolved events tell the changes)."""
        return self._core.meter.alerts.active

    # -- reads ---------------------------------------------------------------
    @counted
    def get(self, cls: type[E], id: str) -> E:
        """The entity stored under id; NotFoundError if there is none."""
        core = self._core
        info = getattr(cls, "__statekeep__", None)  # core.info's checks, inlined: a hot path
        if info is None or not isinstance(cls, type) or core.state is not State.OPEN:
            info = core.info(cls)
        if type(id) is not str or not id.isascii() or "\x00" in id or not id:
            check.an_id(id)
        backend = core.backend
        backend.ensure_collection(info.spec, create=False)
        body = backend.get(info.spec.name, id)
        if body is None:
            raise NotFoundError(info.spec.name, id)
        loaded: E = info.load(body)
        return loaded

    @counted
    def get_many(self, cls: type[E], ids: Iterable[str]) -> dict[str, E]:
        """The stored entities among ids, by id (missing ids are left out)."""
        info = self._core.info(cls)
        wanted = [check.an_id(i) for i in check.ids(ids)]
        backend = self._core.backend
        backend.ensure_collection(info.spec, create=False)
        found = backend.get_many(info.spec.name, wanted)
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
        info = self._core.info(cls)
        limit = check.count(limit, "limit", least=0, none=True)
        offset = check.count(offset, "offset", least=0)
        query = Query(info.filters(conditions, equals), info.orders(order_by), limit, offset)
        return results(self._core, info, query)  # no I/O until the first result is asked for

    @counted
    def count_by(
        self, cls: type[Entity], field: str, /, *conditions: Condition, **equals: Any
    ) -> dict[Any, int]:
        """{value: how many} for an indexed field (a machine's states), in one query."""
        return count_by(self._core, cls, field, conditions, equals)

    @counted
    def count(self, cls: type[Entity], *conditions: Condition, **equals: Any) -> int:
        info = self._core.info(cls)
        filters = info.filters(conditions, equals)
        backend = self._core.backend
        backend.ensure_collection(info.spec, create=False)
        return backend.count(info.spec, filters)
