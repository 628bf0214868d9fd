"""The Catalog of every backend (backends.base.Catalog): what the database
holds, listed without any entity class, and rows paged out and loaded in
with their versions, as statekeep's operating commands (inspect, export,
import, copy) use it.

The catalog is the backend's (`store.backend`), which no facade wraps: these
tests open sync stores only (the `store` fixture below replaces the suite's,
which is parametrised over the facades).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import cast

import pytest

import statekeep
from statekeep import Condition, ConflictError, Entity
from statekeep.backends import _files_catalog
from statekeep.backends.base import Catalog, CollectionSpec, atomic

from .conftest import Backend
from .models import IndexedRecord, Keywords, Note, Numbers, Todo

Rows = list[tuple[str, int, str]]

# ids that sort differently by bytes and by sense, share prefixes, or hold
# the wildcards of LIKE ('%', '_') and characters a file name escapes
ODD_IDS = [
    "a",
    "aa",
    "aaa",
    "a-1",
    "a-10",
    "a-2",
    "a_",
    "a_b",
    "a%",
    "a%b",
    "%",
    "_",
    "A",
    "B",
    "a b",
    "a/b",
    ".hidden",
    "a.json",
    "é",
    "e\u0301",
    "日本",
    "日本語",
    "😀",
    "a~b",
    "z" * 210,  # file names cut and hashed (the id is read from the document)
    "z" * 211,
    "日" * 80,
]


@pytest.fixture
def store(store_url: str) -> Iterator[statekeep.Store]:
    with statekeep.open(store_url) as opened:
        yield opened


def catalog(store: statekeep.Store) -> Catalog:
    backend = store.backend
    for name in ("describe", "collections", "scan", "load"):
        assert hasattr(backend, name), f"{type(backend).__name__} has no {name}()"
    return cast(Catalog, backend)


def every_row(cat: Catalog, collection: str, limit: int) -> Rows:
    """The rows of a collection, a page of `limit` at a time."""
    found: Rows = []
    after = None
    while page := cat.scan(collection, after, limit):
        assert len(page) <= limit
        found.extend(page)
        after = page[-1][0]
    return found


def load(store: statekeep.Store, cls: type[Entity], rows: Rows) -> None:
    """As `statekeep import` stores a chunk: ensure_collection, then load in a transaction."""
    spec = cls.__statekeep__.spec
    store.backend.ensure_collection(spec)
    with atomic(store.backend):
        catalog(store).load(spec, rows)


def body(entity: Entity) -> str:
    return entity.model_dump_json()


def row(entity: Entity) -> tuple[str, int, str]:
    return entity.id, entity.version, body(entity)


# -- describe --------------------------------------------------------------------------------


def test_describe_says_what_the_database_is(backend: Backend, store: statekeep.Store) -> None:
    store.save(Todo(title="x"))
    info = catalog(store).describe()
    assert set(info) == {"backend", "server", "location", "bytes", "layout"}
    expected = {"sqlite-file": "sqlite", "sqlite-memory": "sqlite"}.get(backend.name, backend.name)
    assert info["backend"] == expected
    assert isinstance(info["layout"], int)
    if expected == "sqlite":
        assert info["server"] == sqlite3.sqlite_version
    elif expected in ("memory", "files"):
        assert info["server"] is None
    if backend.name in ("memory", "sqlite-memory"):
        assert info["location"] is None
    else:
        assert isinstance(info["location"], str) and info["location"]
    if backend.name == "memory":
        assert info["bytes"] is None
    else:
        assert isinstance(info["bytes"], int) and info["bytes"] > 0


# -- collections -----------------------------------------------------------------------------


def _seed(store: statekeep.Store) -> None:
    store.save_many(Todo(title=f"t{i}") for i in range(3))
    store.save_many(Note(text=f"n{i}") for i in range(2))
    store.save(IndexedRecord(label="x", number=1))
    store.save(Keywords(order=3))


def test_collections_lists_each_with_its_rows_and_indexed_columns(
    backend: Backend, store: statekeep.Store
) -> None:
    _seed(store)
    infos = catalog(store).collections()
    assert [info.spec.name for info in infos] == ["indexed_record", "note", "select", "todo"]
    by_name = {info.spec.name: info for info in infos}
    assert {name: info.rows for name, info in by_name.items()} == {
        "indexed_record": 1,
        "note": 2,
        "select": 1,
        "todo": 3,
    }
    for cls in (Todo, Note, IndexedRecord, Keywords):
        info = by_name[cls.__statekeep__.spec.name]
        assert info.ready
        if backend.name == "files":  # indexed values are read from the documents
            assert info.spec.indexes == ()
        else:  # the columns the database maintains: the classes' indexed fields
            assert set(info.spec.indexes) == set(cls.__statekeep__.spec.indexes), cls
        if backend.name == "memory":
            assert info.bytes is None
        else:
            assert isinstance(info.bytes, int) and info.bytes > 0


def test_collections_leaves_out_statekeeps_own_tables(store: statekeep.Store) -> None:
    backend = store.backend
    store.save(Todo(title="x"))  # the column registry, on SQL backends
    own = CollectionSpec("statekeep_subscriptions")  # checkpoints are a collection of statekeep's
    backend.ensure_collection(own)
    with atomic(backend):
        backend.append_events(['{"kind": "outbox"}'])
        backend.put(own, [("reader", 1, '{"id": "reader", "version": 1, "position": 0}')])
    names = [info.spec.name for info in catalog(store).collections()]
    assert names == ["todo"]


def test_an_empty_store_lists_no_collections(store: statekeep.Store) -> None:
    cat = catalog(store)
    assert cat.collections() == []
    assert cat.scan("todo", None, 10) == []
    list(store.find(Todo))  # a read of a missing collection creates none
    assert store.get_many(Note, ["x"]) == {}
    assert cat.collections() == []


def test_collections_reads_what_is_committed_without_waiting_for_a_writer(
    store: statekeep.Store,
) -> None:
    store.save_many(Todo(title=f"t{i}") for i in range(3))
    writing, done = threading.Event(), threading.Event()

    def writer() -> None:
        with store.transaction():
            store.save(Todo(title="uncommitted"))
            store.save(Note(text="uncommitted"))
            writing.set()
            done.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert writing.wait(10)
        began = time.monotonic()
        infos = catalog(store).collections()
        assert time.monotonic() - began < 2
        assert [(info.spec.name, info.rows) for info in infos] == [("todo", 3)]
        assert [r[0] for r in catalog(store).scan("note", None, 10)] == []
    finally:
        done.set()
        thread.join(10)
    assert {info.spec.name: info.rows for info in catalog(store).collections()} == {
        "note": 1,
        "todo": 4,
    }


# -- scan ------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 1000])
def test_scan_pages_cover_every_row_once_in_id_order(store: statekeep.Store, limit: int) -> None:
    store.save_many(Note(id=id, text=f"text of {id}") for id in ODD_IDS)
    rows = every_row(catalog(store), "note", limit)
    # every backend here orders ids by code point (SQLite's BINARY collation,
    # PostgreSQL's "C", Python's str): the order base.Catalog lets each choose
    assert [r[0] for r in rows] == sorted(ODD_IDS)
    for id, version, text in rows:
        assert version == 1
        assert Note.model_validate_json(text) == Note(id=id, version=1, text=f"text of {id}")


def test_scan_starts_after_any_text(store: statekeep.Store) -> None:
    store.save_many(Note(id=id, text="") for id in ODD_IDS)
    cat = catalog(store)
    for after in ["", "a", "a%", "a_", "a-1", "b", "é", "~", "\U0010ffff", "a" * 300]:
        expected = [id for id in sorted(ODD_IDS) if id > after][:3]
        assert [r[0] for r in cat.scan("note", after, 3)] == expected, after
    assert cat.scan("note", None, 0) == []


def test_scan_of_a_missing_collection_is_empty(store: statekeep.Store) -> None:
    store.save(Todo(title="x"))
    cat = catalog(store)
    assert cat.scan("ghost", None, 10) == []
    assert cat.scan("ghost", "a", 10) == []
    assert [info.spec.name for info in cat.collections()] == ["todo"]


def test_scan_reads_as_get_does(store: statekeep.Store) -> None:
    store.save_many(Note(id=id, text="") for id in ("b", "d", "f"))
    cat = catalog(store)
    with store.transaction():
        store.save(Note(id="c", text="mine"))
        store.delete(store.get(Note, "d"))
        store.save(store.get(Note, "f").model_copy(update={"text": "changed"}))
        rows = every_row(cat, "note", 1)
        assert [(r[0], r[1]) for r in rows] == [("b", 1), ("c", 1), ("f", 2)]
    assert [r[0] for r in every_row(cat, "note", 2)] == ["b", "c", "f"]


# -- load ------------------------------------------------------------------------------------

MOMENT = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)


def _records() -> list[IndexedRecord]:
    return [
        IndexedRecord(
            id=f"r{i}",
            version=i + 3,
            label=f"label {i % 3}",
            number=i,
            ratio=i / 4,
            flag=i % 2 == 0,
            at=MOMENT + timedelta(hours=i),
        )
        for i in range(10)
    ] + [IndexedRecord(id="empty", version=1)]


def test_load_stores_rows_with_their_versions_and_indexed_values(
    store: statekeep.Store,
) -> None:
    records = _records()
    load(store, IndexedRecord, [row(r) for r in records])
    for record in records:
        assert store.get(IndexedRecord, record.id) == record
    f = IndexedRecord.f

    def ids(*conditions: Condition) -> list[str]:
        return sorted(r.id for r in store.find(IndexedRecord, *conditions))

    assert ids(f.label == "label 1") == ["r1", "r4", "r7"]
    assert ids(f.number >= 8) == ["r8", "r9"]
    assert ids(f.ratio < 0.5) == ["r0", "r1"]
    assert ids(f.flag == False) == ["r1", "r3", "r5", "r7", "r9"]
    assert ids(f.at > MOMENT + timedelta(hours=7, minutes=30)) == ["r8", "r9"]
    assert ids(f.at == datetime(2024, 5, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))) == ["r0"]
    assert ids(f.label == None) == ["empty"]  # noqa: E711
    assert store.count(IndexedRecord, f.label.startswith("label")) == 10


def test_load_fills_indexed_values_of_bodies_that_lack_them(store: statekeep.Store) -> None:
    """A body written before a field existed: its column holds the field's default."""
    load(store, Numbers, [("old", 4, '{"id":"old","version":4,"plain":1}')])
    assert store.get(Numbers, "old") == Numbers(id="old", version=4, indexed=0, plain=1)
    assert [n.id for n in store.find(Numbers, Numbers.f.indexed == 0)] == ["old"]


def test_loaded_rows_are_found_as_rows_saved_by_the_store(
    store: statekeep.Store, make_store: Callable[[], statekeep.Store]
) -> None:
    """A copy: scanned out of one store, loaded into another; the same finds answer alike."""
    source = make_store()
    source.save_many(r.model_copy(update={"version": 0}) for r in _records())
    load(store, IndexedRecord, every_row(catalog(source), "indexed_record", 4))
    f = IndexedRecord.f
    for conditions in (
        [f.label == "label 2"],
        [f.number.in_([1, 5, 50])],
        [f.ratio > 1],
        [f.flag == True],
        [f.at <= MOMENT + timedelta(hours=2)],
        [f.label.startswith("label 0"), f.number < 5],
    ):
        ids = [r.id for r in store.find(IndexedRecord, *conditions, order_by=f.number)]
        theirs = [r.id for r in source.find(IndexedRecord, *conditions, order_by=f.number)]
        assert ids == theirs, conditions
    assert catalog(store).collections()[0].rows == 11


def test_load_replaces_the_row_of_the_same_id(store: statekeep.Store) -> None:
    store.save(Todo(id="r", title="old"))
    store.save(Todo(id="other", title="old"))
    load(store, Todo, [row(Todo(id="r", version=9, title="new"))])
    assert store.get(Todo, "r") == Todo(id="r", version=9, title="new")
    assert [t.id for t in store.find(Todo, Todo.f.title == "old")] == ["other"]
    assert [t.id for t in store.find(Todo, Todo.f.title == "new")] == ["r"]
    assert store.count(Todo) == 2
    # to a lower version too: rows are stored as they are
    load(store, Todo, [row(Todo(id="r", version=2, title="older"))])
    assert store.get(Todo, "r") == Todo(id="r", version=2, title="older")


def test_load_of_one_id_twice_keeps_the_last(store: statekeep.Store) -> None:
    load(
        store,
        Todo,
        [
            row(Todo(id="twice", version=3, title="first")),
            row(Todo(id="twice", version=5, title="last")),
        ],
    )
    assert store.get(Todo, "twice") == Todo(id="twice", version=5, title="last")
    assert [t.id for t in store.find(Todo, Todo.f.title == "first")] == []
    assert store.count(Todo) == 1


def test_load_of_many_rows(store: statekeep.Store) -> None:
    """More rows than one statement takes (SQLite: 250 a statement, the rest one by one)."""
    todos = [Todo(id=f"m{i:04d}", version=i % 7 + 1, title=f"t{i % 10}") for i in range(613)]
    todos.append(Todo(id="m0003", version=40, title="again"))  # the last of one id stands
    load(store, Todo, [row(t) for t in todos])
    assert store.count(Todo) == 613
    assert store.count(Todo, Todo.f.title == "t3") == 60
    assert store.get(Todo, "m0003") == Todo(id="m0003", version=40, title="again")
    rows = every_row(catalog(store), "todo", 100)
    assert [(r[0], r[1]) for r in rows] == [
        (t.id, 40 if t.id == "m0003" else t.version) for t in todos[:613]
    ]


def test_load_rolled_back_leaves_nothing(store: statekeep.Store) -> None:
    store.save(Todo(id="kept", title="kept"))
    spec = Todo.__statekeep__.spec
    backend = store.backend
    backend.ensure_collection(spec)
    with pytest.raises(RuntimeError), atomic(backend):
        catalog(store).load(spec, [row(Todo(id="gone", version=4, title="gone"))])
        catalog(store).load(spec, [row(Todo(id="kept", version=7, title="replaced"))])
        raise RuntimeError("abandon the import")
    assert store.get_many(Todo, ["gone"]) == {}
    assert store.get(Todo, "kept") == Todo(id="kept", version=1, title="kept")
    assert [t.id for t in store.find(Todo, Todo.f.title.in_(["gone", "replaced"]))] == []
    assert [r[0] for r in catalog(store).scan("todo", None, 10)] == ["kept"]
    # and the store writes on as before
    store.save(Todo(id="gone", title="saved"))
    assert [t.id for t in store.find(Todo, Todo.f.title == "saved")] == ["gone"]


def test_load_outside_a_transaction_runs_in_one_of_its_own(store: statekeep.Store) -> None:
    spec = Todo.__statekeep__.spec
    store.backend.ensure_collection(spec)
    catalog(store).load(spec, [row(Todo(id="alone", version=2, title="alone"))])
    assert store.get(Todo, "alone") == Todo(id="alone", version=2, title="alone")


def test_a_store_writes_on_after_a_load(
    backend: Backend, store_url: str, store: statekeep.Store
) -> None:
    load(store, Todo, [row(Todo(id=id, version=5, title=id)) for id in ("p", "q")])
    if "persistent" in backend.capabilities:  # as a new process would find it
        store.close()
        store = statekeep.open(store_url)
    try:
        loaded = store.get(Todo, "p")
        assert loaded.version == 5
        stale = loaded.model_copy()
        loaded.title = "edited"
        store.save(loaded)
        assert loaded.version == 6
        assert store.get(Todo, "p") == loaded
        assert [t.id for t in store.find(Todo, Todo.f.title == "edited")] == ["p"]
        with pytest.raises(ConflictError):
            store.save(stale)
        stranger = Todo(id="q", title="not read first")
        with pytest.raises(ConflictError):
            store.save(stranger)  # version 1 over version 5
        store.delete(store.get(Todo, "q"))
        assert store.get_many(Todo, ["q"]) == {}
        store.save(Todo(id="new", title="new"))
        assert [r[0] for r in catalog(store).scan("todo", None, 10)] == ["new", "p"]
    finally:
        store.close()


# -- SQLite: the file as other programs see it ---------------------------------------------


@pytest.mark.requires("sqlite", "persistent")
def test_sqlite_reads_create_nothing(store: statekeep.Store) -> None:
    cat = catalog(store)
    cat.describe()
    assert cat.collections() == []
    assert cat.scan("todo", None, 5) == []
    path = store.backend.location
    assert path is not None
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master").fetchall() == []


@pytest.mark.requires("sqlite", "persistent")
def test_sqlite_collections_say_when_a_column_is_not_ready(store: statekeep.Store) -> None:
    store.save(Todo(title="x"))
    path = store.backend.location
    assert path is not None
    with sqlite3.connect(path) as conn:  # as an interrupted build would leave it
        conn.execute("UPDATE statekeep_columns SET ready = 0")
    assert [info.ready for info in catalog(store).collections()] == [False]
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE statekeep_columns SET ready = 1")
        conn.execute("DROP INDEX todo__title")
    assert [info.ready for info in catalog(store).collections()] == [False]


@pytest.mark.requires("sqlite", "persistent")
def test_sqlite_load_leaves_the_fill_trigger_for_other_writers(store: statekeep.Store) -> None:
    """load stamps its rows itself; a SQL tool's insert afterwards is still filled in."""
    load(store, IndexedRecord, [row(r) for r in _records()])
    path = store.backend.location
    assert path is not None
    tool = IndexedRecord(id="tool", label="by hand", number=99, at=MOMENT)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "INSERT INTO indexed_record (id, version, body) VALUES (?, 1, ?)",
            (tool.id, body(tool)),
        )
    f = IndexedRecord.f
    assert [r.id for r in store.find(IndexedRecord, f.label == "by hand")] == ["tool"]
    assert [r.id for r in store.find(IndexedRecord, f.number == 99, f.at == MOMENT)] == ["tool"]


# -- files: listings kept while a folder does not change ---------------------------------------


@pytest.mark.requires("files")
def test_files_scan_lists_a_folder_again_once_it_changed(
    store: statekeep.Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_files_catalog, "_RACY_NS", 0)  # keep even a listing just changed
    store.save_many(Note(id=f"n{i}", text="") for i in range(5))
    cat = catalog(store)
    assert [r[0] for r in every_row(cat, "note", 2)] == ["n0", "n1", "n2", "n3", "n4"]
    time.sleep(0.05)  # past the file system's clock tick: the folder's times move on
    store.save(Note(id="n25", text=""))
    store.delete(Note, "n1")
    assert [r[0] for r in every_row(cat, "note", 2)] == ["n0", "n2", "n25", "n3", "n4"]
