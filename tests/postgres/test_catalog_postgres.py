"""PostgreSQL's own cases of the Catalog (backends/_postgres_catalog.py): a
schema lists only its own collections, load fills indexed columns as the fill
trigger does and replaces rows, and scan pages any collation's ids once each.
(tests/conformance/test_catalog.py holds what every backend shares.)"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

import psycopg
import pytest

import statekeep
from statekeep import Entity, Indexed
from statekeep.backends import _layout
from statekeep.backends._postgres_catalog import scan_sql
from statekeep.backends.base import CollectionSpec, Index, Query
from statekeep.backends.postgres import PostgresBackend
from statekeep.errors import ValidationError

from .conftest import MakeUrl


class Item(Entity, collection="cat_item"):
    name: Annotated[str, Indexed()]
    rank: Annotated[int, Indexed()] = 0
    at: Annotated[datetime | None, Indexed()] = None
    tag: Annotated[str, Indexed()] = "100% 'sure'"  # a default with % and a quote
    text: str = ""


class Source(Entity, collection="cat_source"):
    name: Annotated[str, Indexed()]
    rank: Annotated[int, Indexed()] = 0
    at: Annotated[datetime | None, Indexed()] = None
    tag: Annotated[str, Indexed()] = "100% 'sure'"
    text: str = ""


class Other(Entity, collection="cat_other"):
    title: str


ITEM = Item.__statekeep__.spec
Rows = list[tuple[str, int, str]]


def schema_of(url: str) -> str:
    return url.split("schema=")[1].split("&")[0]


def catalog(store: statekeep.Store) -> PostgresBackend:
    backend = store.backend
    assert isinstance(backend, PostgresBackend)
    return backend


@contextmanager
def sql(server: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
        yield conn


def scan_all(cat: PostgresBackend, collection: str, page: int) -> Rows:
    rows: Rows = []
    after: str | None = None
    while True:
        found = cat.scan(collection, after, page)
        assert len(found) <= page
        if not found:
            return rows
        rows.extend(found)
        after = found[-1][0]


def body(id: str, version: int, **fields: Any) -> str:
    return json.dumps({"id": id, "version": version, **fields})


def columns(server: str, url: str, collection: str) -> list[tuple[Any, ...]]:
    """Each row's indexed columns and stamp, by id."""
    table = f'"{schema_of(url)}"."{collection}"'
    with sql(server) as conn:
        return conn.execute(
            f"SELECT id, name, rank, at, tag, statekeep_layout FROM {table} ORDER BY id"
        ).fetchall()


# -- collections and describe ---------------------------------------------------


def test_two_schemas_of_one_database_list_only_their_own_collections(
    server: str, make_url: MakeUrl
) -> None:
    first, second = make_url(), make_url()
    with statekeep.open(first) as one, statekeep.open(second) as two:
        one.save_many([Item(id=f"i{n}", name=f"n{n}", rank=n) for n in range(25)])
        one.save(Other(id="o", title="other"))
        two.save(Other(id="o1", title="one"))
        two.save(Other(id="o2", title="two"))
        # statekeep's own tables and collections, and a table that is no collection
        catalog(one).ensure_collection(CollectionSpec("statekeep_subscriptions"))
        with sql(server) as conn:
            conn.execute(f"CREATE TABLE {schema_of(first)}.not_one (x int)")
        listed = catalog(one).collections()
        assert [info.spec.name for info in listed] == ["cat_item", "cat_other"]
        item, other = listed
        assert item.spec == CollectionSpec("cat_item", tuple(sorted(ITEM.indexes, key=_name)))
        assert (item.rows, other.rows) == (25, 1)
        assert item.ready and other.ready
        assert item.bytes is not None and item.bytes > 0
        assert other.bytes is not None and other.bytes > 0
        assert [(i.spec, i.rows) for i in catalog(two).collections()] == [
            (CollectionSpec("cat_other"), 2)
        ]


def _name(index: Index) -> str:
    return index.name


def test_collections_lists_the_registrys_columns_and_says_when_one_is_not_ready(
    server: str, pg_url: str
) -> None:
    with statekeep.open(pg_url) as store:
        store.save(Item(id="a", name="x"))
        registry = f"{schema_of(pg_url)}.{_layout.REGISTRY}"
        with sql(server) as conn:  # a column being filled, as a large table's is
            conn.execute(f"UPDATE {registry} SET ready = false WHERE name = 'rank'")
        (info,) = catalog(store).collections()
        assert not info.ready
        assert Index("rank", "integer", 0) in info.spec.indexes
        with sql(server) as conn:
            conn.execute(f"UPDATE {registry} SET ready = true")
            conn.execute(f'DROP INDEX {schema_of(pg_url)}."cat_item__rank"')
        (info,) = catalog(store).collections()
        assert not info.ready  # filled, but not indexed


def test_collections_creates_nothing_and_waits_for_no_writer(server: str, pg_url: str) -> None:
    with statekeep.open(pg_url) as store, statekeep.open(pg_url) as other:
        store.save(Item(id="a", name="x"))
        schema = schema_of(pg_url)
        relations = "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        with sql(server) as conn:
            before = conn.execute(f"{relations} WHERE n.nspname = %s", (schema,)).fetchone()
        other.backend.begin()  # a writer's transaction, open: rows written, locks held
        try:
            catalog(other).load(ITEM, [("a", 5, body("a", 5, name="y")), ("b", 1, body("b", 1))])
            done = threading.Event()
            listed: list[int] = []

            def read() -> None:
                listed.extend(info.rows for info in catalog(store).collections())
                done.set()

            threading.Thread(target=read, daemon=True).start()
            assert done.wait(10), "collections() waited for a writer"
            assert listed == [1]  # as committed
        finally:
            other.backend.rollback()
        with sql(server) as conn:
            after = conn.execute(f"{relations} WHERE n.nspname = %s", (schema,)).fetchone()
        assert before == after


def test_describe_says_where_without_credentials(server: str, make_url: MakeUrl) -> None:
    url = make_url(password="not-shown")
    with statekeep.open(url) as store:
        store.save(Item(id="a", name="x"))
        described = catalog(store).describe()
        with sql(server) as conn:
            row = conn.execute("SHOW server_version").fetchone()
        assert row is not None
        assert described["backend"] == "postgresql"
        assert described["server"] == row[0]
        assert described["location"] == f"127.0.0.1:5432/test schema={schema_of(url)}"
        assert "not-shown" not in json.dumps(described) and "postgres@" not in json.dumps(described)
        assert described["bytes"] > catalog(store).collections()[0].bytes
        assert described["layout"] == _layout.LAYOUT_VERSION


# -- load -------------------------------------------------------------------------------


def test_load_of_20k_rows_then_find_on_an_indexed_field(server: str, pg_url: str) -> None:
    """The rows of another collection, as `statekeep copy` moves them: the
    loaded rows' columns are the ones save_many wrote, and find uses the index."""
    moment = datetime(2024, 5, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    with statekeep.open(pg_url) as store:
        store.save_many(
            Source(
                id=f"s{n:05d}",
                name=f"name-{n % 500}",
                rank=n % 97,
                at=None if n % 7 == 0 else moment + timedelta(minutes=n),
                text="x" * 100,
            )
            for n in range(20_000)
        )
        cat = catalog(store)
        rows = scan_all(cat, "cat_source", 3_000)
        assert len(rows) == 20_000
        (source,) = [i for i in cat.collections() if i.spec.name == "cat_source"]
        spec = CollectionSpec("cat_item", source.spec.indexes)
        cat.ensure_collection(spec)
        cat.begin()
        for start in range(0, len(rows), 2_000):
            cat.load(spec, rows[start : start + 2_000])
        cat.commit()
        assert cat.scan("cat_item", None, 30_000) == rows
        assert columns(server, pg_url, "cat_item") == columns(server, pg_url, "cat_source")
        found = store.find(Item, Item.f.name == "name-7")
        assert sorted(item.id for item in found) == [f"s{n:05d}" for n in range(7, 20_000, 500)]
        query = Query(Item.__statekeep__.filters([Item.f.name == "name-7"], {}))
        plan = "\n".join(cat.explain(ITEM, query))
        assert "cat_item__name" in plan, plan  # analyzed after the load's commit


def test_load_fills_columns_as_the_fill_trigger_does(server: str, pg_url: str) -> None:
    """Bodies of other writers (fields missing, of other kinds, times with
    offsets or none): load computes each column as a row written by SQL gets it."""
    bodies = [
        body("a", 1, name="x", rank=3, at="2024-01-01T00:30:00+02:00", tag="t"),
        body("b", 2, name="y"),  # rank and tag missing: their defaults
        body("c", 3, name=5, rank=2.0, at="2024-01-01T00:30:00", tag=None),
        body("d", 4, name="w", rank="seven", at="not a time", tag=["a", "list"]),
        body("e", 5, name="%s", rank=True, at="2024-06-01T12:00:00Z", tag="100%"),
        body("f", 6),
    ]
    rows = [(str(json.loads(b)["id"]), int(json.loads(b)["version"]), b) for b in bodies]
    with statekeep.open(pg_url) as store:
        cat = catalog(store)
        by_trigger = CollectionSpec("cat_source", ITEM.indexes)
        cat.ensure_collection(ITEM)
        cat.ensure_collection(by_trigger)
        cat.begin()
        cat.load(ITEM, rows)
        cat.commit()
        with sql(server) as conn:
            conn.cursor().executemany(
                f"INSERT INTO {schema_of(pg_url)}.cat_source (id, version, body) "
                "VALUES (%s, %s, %s::jsonb)",
                rows,
            )
        loaded = columns(server, pg_url, "cat_item")
        assert loaded == columns(server, pg_url, "cat_source")
        assert loaded[0][1:5] == ("x", 3, "2023-12-31T22:30:00.000000Z", "t")
        assert loaded[1][1:5] == ("y", 0, None, "100% 'sure'")
        assert [version for _, version, _ in cat.scan("cat_item", None, 10)] == [1, 2, 3, 4, 5, 6]


def test_load_replaces_rows_and_their_columns(pg_url: str) -> None:
    with statekeep.open(pg_url) as store:
        store.save_many(Item(id=f"i{n}", name="old", rank=n) for n in range(10))
        cat = catalog(store)
        cat.ensure_collection(ITEM)
        cat.begin()
        cat.load(
            ITEM,
            [(f"i{n}", 7, body(f"i{n}", 7, name="new", rank=n * 10)) for n in range(0, 10, 2)]
            + [("i1", 9, body("i1", 9, name="first")), ("i1", 8, body("i1", 8, name="last"))],
        )
        cat.commit()
        found = {item.id: item for item in store.find(Item)}
        assert len(found) == 10
        assert {id for id, item in found.items() if item.name == "new"} == {
            "i0",
            "i2",
            "i4",
            "i6",
            "i8",
        }
        assert (found["i1"].name, found["i1"].version) == (
            "last",
            8,
        )  # an id twice: the last stands
        assert (found["i4"].rank, found["i4"].version) == (40, 7)
        assert (found["i3"].name, found["i3"].version) == ("old", 1)
        assert (
            store.count(Item, Item.f.rank == 40) == 1 and store.count(Item, Item.f.rank == 4) == 0
        )
        assert store.count(Item, name="old") == 4
        assert store.count(Item, name="last") == 1


def test_load_in_a_transaction_rolled_back_leaves_nothing(pg_url: str) -> None:
    with statekeep.open(pg_url) as store, statekeep.open(pg_url) as other:
        cat = catalog(store)
        cat.ensure_collection(ITEM)
        cat.begin()
        cat.load(ITEM, [(f"i{n}", 3, body(f"i{n}", 3, name="x")) for n in range(500)])
        assert len(cat.scan("cat_item", None, 1_000)) == 500  # the transaction sees its rows
        assert catalog(other).scan("cat_item", None, 1_000) == []  # no one else does
        cat.rollback()
        assert cat.scan("cat_item", None, 1_000) == []
        assert [info.rows for info in cat.collections()] == [0]
        assert store.count(Item, name="x") == 0


def test_load_outside_a_transaction_is_one_of_its_own(pg_url: str) -> None:
    with statekeep.open(pg_url) as store:
        cat = catalog(store)
        cat.ensure_collection(ITEM)
        cat.load(ITEM, [("a", 4, body("a", 4, name="x")), ("b", 2, body("b", 2, name="y"))])
        with pytest.raises(ValidationError):
            cat.load(ITEM, [("c", 1, body("c", 1, name="z")), ("d", 1, "{not json")])
        assert [(id, version) for id, version, _ in cat.scan("cat_item", None, 10)] == [
            ("a", 4),
            ("b", 2),
        ]
        assert store.get(Item, "a").version == 4


# -- scan -------------------------------------------------------------------------------

# ids that sort differently by code point and under a language's collation
# (case, accents, decomposed accents, ligatures, punctuation, other scripts)
IDS = [
    "a", "A", "b", "B", "Z", "z", "é", "e\u0301", "É", "e", "f", "ß", "ss", "st", "æ", "ae",
    "\u0131", "I", "i", "İ", "_x", "~", "-", "a b", "a-b", "ab", "aB", "Ab", "日本", "日", "😀",
    "\u00a0x", "x\u00a0", "ǅ", "1", "10", "9", "Ω", "ω", "ﬁ", "fi",
]  # fmt: skip


def test_scan_pages_every_id_once_in_the_tables_collation(server: str, pg_url: str) -> None:
    schema = schema_of(pg_url)
    with statekeep.open(pg_url) as store:
        cat = catalog(store)
        cat.ensure_collection(CollectionSpec("cat_ids"))
        cat.load(CollectionSpec("cat_ids"), [(id, 1, body(id, 1)) for id in IDS])
        tables = ["cat_ids"]
        with sql(server) as conn:  # a table made by hand, in a language's collation
            language = conn.execute(
                "SELECT collname FROM pg_collation WHERE collname IN "
                "('en-US-x-icu', 'und-x-icu', 'en_US.utf8', 'en_US') ORDER BY collname LIMIT 1"
            ).fetchone()
            if language is not None:
                conn.execute(
                    f'CREATE TABLE {schema}.cat_lang (id text COLLATE "{language[0]}" PRIMARY KEY, '
                    "version bigint NOT NULL, body jsonb NOT NULL)"
                )
                conn.cursor().executemany(
                    f"INSERT INTO {schema}.cat_lang VALUES (%s, 1, %s::jsonb)",
                    [(id, body(id, 1)) for id in IDS],
                )
                tables.append("cat_lang")
        for table in tables:
            with sql(server) as conn:
                ordered = [
                    id for (id,) in conn.execute(f"SELECT id FROM {schema}.{table} ORDER BY id")
                ]
            for page in (1, 2, 3, 7, 100):
                assert [id for id, _, _ in scan_all(cat, table, page)] == ordered, (table, page)
            assert sorted(ordered) == sorted(IDS)
        assert ordered != sorted(IDS) or language is None  # the language's order is another
        assert [id for id, _, _ in scan_all(cat, "cat_ids", 2)] == sorted(IDS)  # code points


def test_scan_is_served_by_the_primary_key(server: str, pg_url: str) -> None:
    schema = schema_of(pg_url)
    with statekeep.open(pg_url) as store:
        catalog(store).ensure_collection(ITEM)
    with sql(server) as conn, conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")  # no choice but the index, if it serves
        for after in (False, True):
            text = scan_sql(f'"{schema}"."cat_item"', after)
            plan = conn.execute(f"EXPLAIN {text}", ("é", 10) if after else (10,)).fetchall()
            assert "cat_item_pkey" in str(plan) and "Sort" not in str(plan), plan


def test_scan_of_a_missing_collection_or_past_the_end_is_empty(pg_url: str) -> None:
    with statekeep.open(pg_url) as store:
        cat = catalog(store)
        assert cat.scan("nothing_here", None, 10) == []
        assert cat.scan("x" * 100, None, 10) == []
        store.save(Item(id="a", name="x", at=datetime(2024, 1, 1, tzinfo=UTC)))
        assert cat.scan("cat_item", "a", 10) == []
        assert cat.scan("cat_item", None, 0) == []
        cat.begin()
        try:  # in a transaction too: nothing failed, the transaction goes on
            assert cat.scan("nothing_here", None, 10) == []
            assert len(cat.scan("cat_item", None, 10)) == 1
        finally:
            cat.rollback()
