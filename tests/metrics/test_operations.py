"""Each metric of a store moves when its operation runs, by what it did, and
no other counter or histogram moves: one row of OPERATIONS an operation,
every row run on every backend of the registry (tests/_backends.py), on the
sync Store and (ASYNC) on the AsyncStore over it.

A row's `moves` is every series expected to change: a counter by how much it
went up, a histogram by how many values it recorded. Gauges (read from the
store's parts when a snapshot is taken) are left out of the comparison.
Calls the store makes itself count as calls of their own (send saves:
"save" moves too; save_many and transition_many open transaction blocks).

A row with `defect=` shows what the metrics get wrong today (strict xfail).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl

import pytest
from rich.console import Console

import _postgres
import statekeep
import statekeep.aio
from _backends import Backend
from statekeep import Entity, Machine, Priority, State
from statekeep.errors import ConfigurationError
from statekeep.metrics import Snapshot
from statekeep.metrics import names as n

# -- what is stored --------------------------------------------------------------------


class Flow(Machine):
    draft = State(initial=True)
    review = State()
    done = State(final=True)

    submit = draft.to(review)
    approve = review.to(done)


DOCS = "mo_doc"


class Doc(Entity, collection=DOCS):
    title: str = ""
    tag: Annotated[str, statekeep.Indexed()] = ""
    state: Flow = Flow.draft


def on_doc(event: statekeep.Event) -> None:
    """A sync handler (its timer is named after it)."""


def failing_handler(event: statekeep.Event) -> None:
    raise RuntimeError("a handler that fails (the test expects it)")


async def async_handler(event: statekeep.Event) -> None:
    """A coroutine handler: it runs on a loop, and has no timer."""


# -- series and their moves ------------------------------------------------------------

Key = tuple[str, tuple[tuple[str, str], ...]]
Moves = dict[Key, float]


def key(name: str, **labels: str) -> Key:
    return name, tuple(sorted(labels.items()))


def op(operation: str) -> Key:
    return key(n.OPERATION, operation=operation)


def failed(operation: str, error: str) -> Key:
    return key(n.FAILURES, operation=operation, error=error)


def found(index: str) -> Key:
    return key(n.FIND, collection=DOCS, index=index)


def moved(event: str) -> Key:
    return key(n.TRANSITIONS, machine="Flow", event=event)


def handler_timer(handler: Callable[..., Any]) -> Key:
    return key(n.HANDLER, handler=f"{handler.__module__}.{handler.__qualname__}")


COMMIT = key(n.TRANSACTIONS, outcome="commit")
ROLLBACK = key(n.TRANSACTIONS, outcome="rollback")
SAVE_MANY = {key(n.SAVE_MANY_ENTITIES): 1.0, key(n.SAVE_MANY_ENTITY): 1.0}
DELIVERED = key(n.DELIVERED)
HANDLER_FAILED = key(n.HANDLER_FAILURES)


def batch(priority: str) -> Moves:
    """One write-behind batch of one write, stored."""
    return {
        key(n.BATCH_ROWS, priority=priority): 1,
        key(n.BATCH_SECONDS, priority=priority): 1,
        key(n.STORED): 1,
    }


def values(snapshot: Snapshot) -> dict[Key, float]:
    """Each counter's value and each histogram's count (all time); not the gauges."""
    return {
        key(s.name, **s.labels): s.value
        for s in snapshot
        if s.kind != "gauge"  # read from the parts, not recorded by an operation
    }


def diff(before: Snapshot, after: Snapshot) -> Moves:
    old, new = values(before), values(after)
    changed = {k: new.get(k, 0.0) - old.get(k, 0.0) for k in old.keys() | new.keys()}
    return {k: v for k, v in changed.items() if v}


# -- the operations --------------------------------------------------------------------


def saved_doc(store: statekeep.Store) -> Doc:
    """What most rows start from: one stored Doc."""
    return store.save(Doc(title="a", tag="t"))


def with_handler(handler: Callable[..., Any]) -> Callable[[statekeep.Store], Doc]:
    def given(store: statekeep.Store) -> Doc:
        doc = saved_doc(store)
        store.on(Doc, handler)
        return doc

    return given


def enqueued(store: statekeep.Store, priority: Priority = Priority.NORMAL) -> None:
    store.enqueue(Doc(title="e"), priority)
    assert store.flush(10)


def enqueued_delete(store: statekeep.Store, doc: Doc) -> None:
    store.enqueue_delete(doc)
    assert store.flush(10)


def empty_block(store: statekeep.Store) -> None:
    with store.transaction():
        pass


def committed_save(store: statekeep.Store) -> None:
    with store.transaction():
        store.save(Doc())


def rolled_back(store: statekeep.Store) -> None:
    with pytest.raises(ValueError), store.transaction():
        store.save(Doc())
        raise ValueError("roll back")


def nested(store: statekeep.Store) -> None:
    with store.transaction(), store.transaction():
        store.save(Doc())


def send_rolled_back(store: statekeep.Store, doc: Doc) -> None:
    with pytest.raises(ValueError), store.transaction():
        store.send(doc, "submit")
        raise ValueError("roll back")


def reads_of_metrics(store: statekeep.Store, doc: Doc) -> None:
    store.metrics().table()
    store.advice()
    store.alerts()
    store.off(store.on(Doc, on_doc))
    assert store.flush(1)


@dataclass(frozen=True)
class Case:
    id: str
    run: Callable[[statekeep.Store, Doc], object]
    moves: Moves
    given: Callable[[statekeep.Store], Doc] = saved_doc
    raises: type[Exception] | None = None
    outbox: bool = False
    defect: str | None = None  # what is wrong today: the row is a strict xfail


OPERATIONS = [
    Case("save-new", lambda s, d: s.save(Doc()), {op("save"): 1}),
    Case("save-update", lambda s, d: s.save(d), {op("save"): 1}),
    Case(
        "save_many",
        lambda s, d: s.save_many([Doc() for _ in range(3)]),
        {op("save_many"): 1, **SAVE_MANY, COMMIT: 1},
    ),
    Case(
        "save_many-chunks",  # not atomic: a transaction a chunk
        lambda s, d: s.save_many([Doc(), Doc()], chunk_size=1, atomic=False),
        {op("save_many"): 1, **SAVE_MANY, COMMIT: 2},
    ),
    Case("save_many-none", lambda s, d: s.save_many([]), {op("save_many"): 1, COMMIT: 1}),
    Case("delete-entity", lambda s, d: s.delete(d), {op("delete"): 1}),
    Case("delete-id", lambda s, d: s.delete(Doc, d.id), {op("delete"): 1}),
    Case("get", lambda s, d: s.get(Doc, d.id), {op("get"): 1}),
    Case("get_many", lambda s, d: s.get_many(Doc, [d.id, "missing"]), {op("get_many"): 1}),
    Case("find-all", lambda s, d: list(s.find(Doc)), {found("all"): 1}),
    Case("find-id", lambda s, d: list(s.find(Doc, id=d.id)), {found("yes"): 1}),
    Case("find-indexed", lambda s, d: list(s.find(Doc, tag="t")), {found("yes"): 1}),
    Case("find-unindexed", lambda s, d: list(s.find(Doc, title="a")), {found("no"): 1}),
    Case("find-both", lambda s, d: list(s.find(Doc, title="a", tag="t")), {found("yes"): 1}),
    Case("find-not-read", lambda s, d: s.find(Doc), {}),  # no rows asked for: nothing read
    Case("count", lambda s, d: s.count(Doc), {op("count"): 1}),
    Case("count_by", lambda s, d: s.count_by(Doc, "state"), {op("count_by"): 1}),
    Case("enqueue", lambda s, d: enqueued(s), {op("enqueue"): 1, **batch("normal")}),
    Case(
        "enqueue-critical",
        lambda s, d: enqueued(s, Priority.CRITICAL),
        {op("enqueue"): 1, **batch("critical")},
    ),
    Case("enqueue_delete", enqueued_delete, {op("enqueue_delete"): 1, **batch("normal")}),
    Case(
        "send",
        lambda s, d: s.send(d, "submit"),
        {op("send"): 1, op("save"): 1, moved("submit"): 1},
    ),
    Case(
        "transition_many",
        lambda s, d: s.transition_many(Doc, "submit"),
        {
            op("transition_many"): 1,
            found("all"): 1,
            op("save_many"): 1,
            **SAVE_MANY,
            COMMIT: 1,
            moved("submit"): 1,
        },
    ),
    Case("subscribe", lambda s, d: s.subscribe("mo", on_doc), {op("subscribe"): 1}, outbox=True),
    Case("prune_events", lambda s, d: s.prune_events(), {op("prune_events"): 1}, outbox=True),
    Case("transaction-empty", lambda s, d: empty_block(s), {COMMIT: 1}),
    Case("transaction-commit", lambda s, d: committed_save(s), {COMMIT: 1, op("save"): 1}),
    Case("transaction-rollback", lambda s, d: rolled_back(s), {ROLLBACK: 1, op("save"): 1}),
    Case("transaction-nested", lambda s, d: nested(s), {COMMIT: 1, op("save"): 1}),
    Case(
        "handler",
        lambda s, d: s.save(Doc()),
        {op("save"): 1, handler_timer(on_doc): 1, DELIVERED: 1},
        given=with_handler(on_doc),
    ),
    Case(
        "handler-failing",  # its time was spent on the committing thread all the same
        lambda s, d: s.save(Doc()),
        {op("save"): 1, HANDLER_FAILED: 1, handler_timer(failing_handler): 1},
        given=with_handler(failing_handler),
    ),
    Case("metrics-reads", reads_of_metrics, {}),
    # errors: counted by operation and error, and nothing timed
    Case(
        "get-missing",
        lambda s, d: s.get(Doc, "missing"),
        {failed("get", "NotFoundError"): 1},
        raises=statekeep.NotFoundError,
    ),
    Case(
        "delete-missing",
        lambda s, d: s.delete(Doc, "missing"),
        {failed("delete", "NotFoundError"): 1},
        raises=statekeep.NotFoundError,
    ),
    Case(
        "save-stale",
        lambda s, d: s.save(Doc(id=d.id, version=7)),
        {failed("save", "ConflictError"): 1},
        raises=statekeep.ConflictError,
    ),
    Case(
        "delete-stale",
        lambda s, d: s.delete(Doc(id=d.id, version=7)),
        {failed("delete", "ConflictError"): 1},
        raises=statekeep.ConflictError,
    ),
    Case(
        "count-unknown-field",
        lambda s, d: s.count(Doc, nofield=1),
        {failed("count", "UnknownFieldError"): 1},
        raises=statekeep.errors.UnknownFieldError,
    ),
    Case(
        "send-refused",
        lambda s, d: s.send(d, "approve"),
        {failed("send", "TransitionError"): 1},
        raises=statekeep.errors.TransitionError,
    ),
    Case(
        "send-stale",  # its save failed too
        lambda s, d: s.send(Doc(id=d.id, version=7), "submit"),
        {failed("send", "ConflictError"): 1, failed("save", "ConflictError"): 1},
        raises=statekeep.ConflictError,
    ),
    Case(
        "find-unknown-field",
        lambda s, d: s.find(Doc, nofield=1),
        {failed("find", "UnknownFieldError"): 1},
        raises=statekeep.errors.UnknownFieldError,
    ),
    Case(
        "enqueue-bad-priority",
        lambda s, d: s.enqueue(Doc(), "bogus"),  # type: ignore[arg-type]
        {failed("enqueue", "QueryError"): 1},
        raises=statekeep.errors.QueryError,
    ),
    Case(
        "send-rolled-back",
        send_rolled_back,
        {op("send"): 1, op("save"): 1, ROLLBACK: 1},
    ),
]


def _cases(cases: list[Case]) -> list[Any]:
    return [
        pytest.param(
            case,
            id=case.id,
            marks=[pytest.mark.xfail(strict=True, reason=case.defect)] if case.defect else [],
        )
        for case in cases
    ]


# -- fixtures --------------------------------------------------------------------------

OpenStore = Callable[..., statekeep.Store]
WRITEBEHIND = {"window": 0.005, "drain_on_sigterm": False}


@pytest.fixture
def open_store(store_url: str) -> Iterator[OpenStore]:
    """open_store(**options): a store on this test's backend, closed at the end."""
    opened: list[statekeep.Store] = []

    def open_(**options: Any) -> statekeep.Store:
        options.setdefault("writebehind", WRITEBEHIND)
        store = statekeep.open(store_url, **options)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


# -- each operation moves its metrics, and only those ------------------------------------


@pytest.mark.parametrize("case", _cases(OPERATIONS))
def test_an_operation_moves_its_metrics_and_no_other(
    case: Case, open_store: OpenStore, backend: Backend
) -> None:
    store = open_store(outbox=case.outbox)
    doc = case.given(store)
    before = store.metrics()
    if case.raises is None:
        case.run(store, doc)
    else:
        with pytest.raises(case.raises):
            case.run(store, doc)
    assert diff(before, store.metrics()) == case.moves


def test_a_save_many_records_its_entities_and_its_time_by_entity(open_store: OpenStore) -> None:
    store = open_store()
    store.save_many([Doc() for _ in range(5)])
    store.save_many([Doc() for _ in range(3)])
    snapshot = store.metrics()
    entities = snapshot.get(n.SAVE_MANY_ENTITIES)
    assert entities is not None
    total = entities.window("total")
    assert (total.count, total.sum, total.max) == (2, 8, 5)
    by_entity = snapshot.get(n.SAVE_MANY_ENTITY)
    call = snapshot.get(n.OPERATION, operation="save_many")
    assert by_entity is not None and call is not None
    assert by_entity.window("total").count == 2
    # a call's time by entity: the sum of them is at most the calls' time (a fifth, a third)
    assert 0 < by_entity.window("total").sum <= call.window("total").sum


def test_a_writebehind_batch_records_its_rows(open_store: OpenStore) -> None:
    store = open_store(writebehind={**WRITEBEHIND, "window": 0.2})
    for _ in range(4):
        store.enqueue(Doc())
    assert store.flush(10)
    rows = store.metrics().get(n.BATCH_ROWS, priority="normal")
    assert rows is not None
    total = rows.window("total")
    assert total.sum == 4 and 1 <= total.count <= 4
    assert store.metrics().value(n.STORED) == 4


def test_an_async_handler_has_no_timer(open_store: OpenStore) -> None:
    store = open_store()
    store.on(Doc, async_handler)
    before = store.metrics()
    store.save(Doc())
    deadline = time.monotonic() + 10
    while not store.metrics().value(n.DELIVERED) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert diff(before, store.metrics()) == {op("save"): 1, DELIVERED: 1}
    assert store.metrics().select(n.HANDLER) == []


# -- the AsyncStore: its calls are counted into its sync store's metrics ----------------


async def _aenqueue(store: statekeep.aio.AsyncStore) -> None:
    await store.enqueue(Doc())
    assert await store.flush(10)


async def _acommit(store: statekeep.aio.AsyncStore) -> None:
    async with store.transaction():
        await store.save(Doc())


async def _aget_missing(store: statekeep.aio.AsyncStore) -> None:
    with pytest.raises(statekeep.NotFoundError):
        await store.get(Doc, "missing")


@dataclass(frozen=True)
class AsyncCase:
    id: str
    run: Callable[[statekeep.aio.AsyncStore, Doc], Awaitable[object]]
    moves: Moves
    outbox: bool = False
    defect: str | None = None
    warm: bool = False  # a get first (SQLite reads on the loop once it has read once)


ASYNC = [
    AsyncCase("save", lambda a, d: a.save(Doc()), {op("save"): 1}),
    AsyncCase(
        "save_many",
        lambda a, d: a.save_many([Doc(), Doc()]),
        {op("save_many"): 1, **SAVE_MANY, COMMIT: 1},
    ),
    AsyncCase("delete", lambda a, d: a.delete(d), {op("delete"): 1}),
    AsyncCase("get_many", lambda a, d: a.get_many(Doc, [d.id]), {op("get_many"): 1}),
    AsyncCase("find", lambda a, d: a.find(Doc).all(), {found("all"): 1}),
    AsyncCase("count", lambda a, d: a.count(Doc), {op("count"): 1}),
    AsyncCase("count_by", lambda a, d: a.count_by(Doc, "state"), {op("count_by"): 1}),
    AsyncCase("enqueue", lambda a, d: _aenqueue(a), {op("enqueue"): 1, **batch("normal")}),
    AsyncCase("transaction", lambda a, d: _acommit(a), {COMMIT: 1, op("save"): 1}),
    AsyncCase(
        "transition_many",
        lambda a, d: a.transition_many(Doc, "submit"),
        {
            op("transition_many"): 1,
            found("all"): 1,
            op("save_many"): 1,
            **SAVE_MANY,
            COMMIT: 1,
            moved("submit"): 1,
        },
    ),
    AsyncCase("prune_events", lambda a, d: a.prune_events(), {op("prune_events"): 1}, outbox=True),
    AsyncCase(
        "get",
        lambda a, d: a.get(Doc, d.id),
        {op("get"): 1},
        warm=True,
    ),
    AsyncCase(
        "get-missing",
        lambda a, d: _aget_missing(a),
        {failed("get", "NotFoundError"): 1},
        warm=True,
    ),
    AsyncCase(
        "subscribe",
        lambda a, d: a.subscribe("mo", on_doc),
        {op("subscribe"): 1},
        outbox=True,
    ),
    AsyncCase(
        "send",
        lambda a, d: a.send(d, "submit"),
        # the async send always saves in a transaction block (its actions may be coroutines)
        {op("send"): 1, op("save"): 1, moved("submit"): 1, COMMIT: 1},
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in ASYNC])
def test_an_async_call_moves_its_metrics_and_no_other(
    case: AsyncCase, open_store: OpenStore, request: pytest.FixtureRequest
) -> None:
    store = open_store(outbox=case.outbox)
    if case.defect is not None:
        request.applymarker(pytest.mark.xfail(strict=True, reason=case.defect))
    doc = saved_doc(store)

    async def main() -> Moves:
        facade = statekeep.aio.AsyncStore(store)
        if case.warm:
            await facade.get(Doc, doc.id)
        before = store.metrics()
        await case.run(facade, doc)
        return diff(before, store.metrics())

    assert asyncio.run(main()) == case.moves


def test_the_async_store_reads_its_metrics_as_the_store_does() -> None:
    for name in ("metrics", "registry", "advice", "alerts"):
        assert hasattr(statekeep.aio.AsyncStore, name), name


# -- many threads: every call counted once ---------------------------------------------


def test_saves_and_gets_of_many_threads_add_up(open_store: OpenStore) -> None:
    store = open_store()
    threads, each = 8, 25
    start = threading.Barrier(threads)
    errors: list[BaseException] = []
    before = store.metrics()

    def work() -> None:
        try:
            start.wait()
            for _ in range(each):
                doc = store.save(Doc())
                store.get(Doc, doc.id)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    assert diff(before, store.metrics()) == {op("save"): threads * each, op("get"): threads * each}


# -- metrics=False, bad options ----------------------------------------------------------


def test_a_store_without_metrics_records_nothing(open_store: OpenStore) -> None:
    store = open_store(metrics=False, outbox=True)
    store.on(Doc, on_doc)
    doc = saved_doc(store)
    store.save_many([Doc(), Doc()])
    store.get(Doc, doc.id)
    with pytest.raises(statekeep.NotFoundError):
        store.get(Doc, "missing")
    list(store.find(Doc, title="a"))
    store.count(Doc)
    store.send(doc, "submit")
    with store.transaction():
        store.save(Doc())
    store.enqueue(Doc())
    assert store.flush(10)
    store.prune_events()
    assert len(store.metrics()) == 0
    assert store.registry.families() == []
    assert store.alerts() == []


BAD_OPTIONS = [
    pytest.param({"metrics": "yes"}, id="metrics-str"),
    pytest.param({"metrics": 1}, id="metrics-int"),
    pytest.param({"metrics": None}, id="metrics-none"),
    pytest.param({"alerts": "high_error_ratio"}, id="alerts-str"),
    pytest.param({"alerts": 5}, id="alerts-int"),
    pytest.param({"alerts": [object()]}, id="alerts-not-rules"),
]


def _schema_exists(url: str) -> bool:
    import psycopg

    schema = dict(parse_qsl(url.partition("?")[2]))["schema"]
    with psycopg.connect(_postgres.server_url(), connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s", (schema,)
        ).fetchone()
    assert row is not None
    return bool(row[0])


@pytest.mark.parametrize("options", BAD_OPTIONS)
def test_bad_metrics_options_are_refused_and_open_nothing(
    options: dict[str, Any], store_url: str, backend: Backend, tmp_path: Path
) -> None:
    threads = set(threading.enumerate())
    with pytest.raises(ConfigurationError):
        statekeep.open(store_url, **options)
    assert set(threading.enumerate()) <= threads  # no pool, ticker or bus thread started
    assert list((tmp_path / "main").iterdir()) == []  # no database file, no folder
    if "postgresql" in backend.capabilities:
        assert not _schema_exists(store_url)


# -- reading: the table, to_dict -----------------------------------------------------------


def test_the_table_draws_the_operations(open_store: OpenStore) -> None:
    store = open_store()
    doc = saved_doc(store)
    store.get(Doc, doc.id)
    list(store.find(Doc))
    with pytest.raises(statekeep.NotFoundError):
        store.get(Doc, "missing")
    out = StringIO()
    Console(file=out, width=200, color_system=None).print(store.metrics().table())
    drawn = out.getvalue()
    # the operations by name, whatever the layout (a row a series, labels by it)
    for text in ("save", "get", "find", DOCS, "NotFoundError"):
        assert text in drawn, text


def _same(a: Any, b: Any) -> bool:
    """Equal, NaN equal to NaN (an empty window's quantiles are NaN)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_to_dict_round_trips_through_json(open_store: OpenStore) -> None:
    store = open_store()
    store.save_many([Doc(), Doc()])
    data = store.metrics().to_dict()
    assert _same(json.loads(json.dumps(data)), data)
    saves = data[n.OPERATION]
    (save_many,) = [s for s in saves if s["labels"] == {"operation": "save_many"}]
    assert save_many["value"] == 1 and save_many["windows"]["total"]["count"] == 1


def test_to_dict_is_strict_json(open_store: OpenStore) -> None:
    store = open_store()
    store.save(Doc())
    json.dumps(store.metrics().to_dict(), allow_nan=False)
