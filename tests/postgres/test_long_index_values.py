"""Indexed strings of any length on PostgreSQL (issue 11, defect 6).

A btree entry holds at most 2,704 bytes, so an index on a whole text column
refused any row whose value did not fit (SQLSTATE 54000), and the write-behind
queue, which took that for a transient failure, retried it for ever. Text is
now indexed by its first characters (backends/_postgres_prefix.py): values of
any length are stored, every query gives the answer it gives on the memory
backend, lookups use the index as before, and tables made by an earlier
version get the new index when a store opens them. A failure no retry can
cure (a value, a constraint, a program limit) is permanent: dead-lettered,
never retried.
"""

from __future__ import annotations

import random
import string
import time
from collections.abc import Callable, Iterator
from typing import Annotated, Any

import psycopg
import pytest

import statekeep
from statekeep import Condition, Entity, Indexed
from statekeep.backends import _postgres_columns
from statekeep.backends._postgres_errors import translate
from statekeep.backends._postgres_prefix import PREFIX
from statekeep.backends.base import Query
from statekeep.errors import StatekeepError, TransientBackendError, ValidationError

TABLE = "pg_long_page"


class Page(Entity, collection=TABLE):
    url: Annotated[str, Indexed()] = ""  # a text column
    tag: Annotated[str | int | None, Indexed()] = None  # mixed kinds: a jsonb column
    n: int = 0


def text(length: int, seed: int, alphabet: str = string.ascii_letters) -> str:
    """Text that compresses poorly (so that its size is its size in an index)."""
    return "".join(random.Random(seed).choices(alphabet, k=length))


LONG = text(10_000, 1)  # 10 KB: about 7.5 KB compressed, far beyond an index row


def schema_of(url: str) -> str:
    return url.split("schema=")[1].split("&")[0]


@pytest.fixture
def store(pg_url: str) -> Iterator[statekeep.Store]:
    with statekeep.open(pg_url) as opened:
        yield opened


def ids(store: statekeep.Store, *conditions: Condition, **equals: Any) -> list[str]:
    return [page.id for page in store.find(Page, *conditions, **equals)]


def plan(store: statekeep.Store, *conditions: Condition) -> str:
    info = Page.__statekeep__
    lines: list[str] = store.backend.explain(info.spec, Query(info.filters(conditions, {})))
    return "\n".join(lines)


def index_layout(server: str, schema: str) -> dict[str, str]:
    """The table's indexes by name, as PostgreSQL defines them."""
    with psycopg.connect(server, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
            (schema, TABLE),
        )
        return dict(rows.fetchall())


def test_the_fields_are_a_text_and_a_mixed_kind_column() -> None:
    kinds = {index.name: index.kind for index in Page.__statekeep__.spec.indexes}
    assert kinds == {"url": "text", "tag": "any"}


# -- stored and found ------------------------------------------------------------


def test_save_save_many_get_find_and_count_with_a_10_kb_indexed_string(
    store: statekeep.Store,
) -> None:
    page = store.save(Page(id="one", url=LONG, tag=LONG))
    assert page.version == 1
    store.save_many(
        Page(id=f"many{i:02d}", url=LONG + str(i), tag=LONG + str(i)) for i in range(20)
    )
    store.save(Page(id="short", url="short", tag=7))
    assert store.get(Page, "one").url == LONG
    assert store.get(Page, "one").tag == LONG
    assert ids(store, url=LONG) == ["one"]
    assert ids(store, tag=LONG) == ["one"]
    assert ids(store, Page.f.url == LONG + "7") == ["many07"]
    assert store.count(Page, Page.f.url.startswith(LONG)) == 21
    assert store.count(Page, Page.f.url.startswith(LONG[: PREFIX + 10])) == 21
    assert store.count(Page, Page.f.tag.startswith(LONG[:PREFIX])) == 21
    urls = [LONG, *(LONG + str(i) for i in range(20)), "short"]
    assert store.count(Page, Page.f.url > LONG) == sum(u > LONG for u in urls)
    assert store.count(Page, Page.f.url >= LONG) == sum(u >= LONG for u in urls)
    assert store.count(Page, Page.f.url <= LONG) == sum(u <= LONG for u in urls)
    assert store.count(Page, Page.f.url < LONG + "5") == sum(u < LONG + "5" for u in urls)
    assert store.count(Page, Page.f.url.in_([LONG, LONG + "3", "short"])) == 3
    assert store.count(Page, Page.f.url != LONG) == 21
    assert ids(store, Page.f.url.not_in([LONG + str(i) for i in range(20)])) == ["one", "short"]
    page.url, page.n = LONG + "!", 1
    store.save(page)  # an update, too
    assert ids(store, url=LONG + "!") == ["one"]
    assert store.count(Page, url=LONG) == 0


def test_a_write_behind_write_of_a_10_kb_indexed_string_is_stored(
    store: statekeep.Store,
) -> None:
    receipt = store.enqueue(Page(id="queued", url=LONG, tag=LONG))
    started = time.monotonic()
    assert store.flush(timeout=10)
    assert time.monotonic() - started < 3
    assert receipt.error is None
    assert store.writebehind.stats().retried == 0
    assert ids(store, url=LONG) == ["queued"]


# -- exact: the same answers as the memory backend ---------------------------------


def _values() -> list[str]:
    """Texts around the prefix's length: shorter, as long, longer, sharing the
    prefix and differing after it, in 1- to 4-byte characters, 10 KB."""
    ascii_ = text(PREFIX + 200, 2)
    wide = text(PREFIX + 200, 3, "aé€𝄞")  # 1, 2, 3 and 4 bytes of UTF-8
    found = {"", "a", "b", "zzz", LONG, LONG[:-1] + "~", LONG[:5000] + "A" + LONG[5001:]}
    for base in (ascii_, wide):
        for cut in (PREFIX // 4 - 1, PREFIX // 2, PREFIX - 1, PREFIX, PREFIX + 1, PREFIX + 200):
            found.add(base[:cut])
        for tail in ("", "0", "A", "z", "\U0010ffff", "é"):
            found.add(base[:PREFIX] + tail)
            found.add(base[: PREFIX - 1] + tail)
    return sorted(found)


VALUES = _values()
PROBES = sorted(
    {
        *VALUES,
        VALUES[len(VALUES) // 2] + "m",
        text(PREFIX + 200, 2)[: PREFIX - 1] + "\x7f",
        text(PREFIX + 200, 3, "aé€𝄞")[:PREFIX] + "a" * 600,
    }
)


def conditions(field: str) -> Iterator[Condition]:
    ref = getattr(Page.f, field)
    for probe in PROBES:
        yield ref == probe
        yield ref != probe
        yield ref < probe
        yield ref <= probe
        yield ref > probe
        yield ref >= probe
        yield ref.startswith(probe)
        yield ref.startswith(probe[: PREFIX + 3])
    yield ref.in_(PROBES[::3])
    yield ref.in_([PROBES[1], None, *([3, 5] if field == "tag" else [])])
    yield ref.not_in(PROBES[::2])


@pytest.mark.parametrize("field", ["url", "tag"])
def test_every_condition_gives_the_memory_backends_answer(pg_url: str, field: str) -> None:
    with statekeep.open(pg_url) as pg, statekeep.open("memory://") as memory:
        for store in (pg, memory):
            store.save_many(Page(id=f"p{i:03d}", **{field: v}) for i, v in enumerate(VALUES))
            store.save(Page(id="number", tag=5) if field == "tag" else Page(id="empty"))
            store.save(Page(id="none"))
        for condition in conditions(field):
            assert ids(pg, condition) == ids(memory, condition), condition
            assert pg.count(Page, condition) == memory.count(Page, condition), condition
        for order in (field, f"-{field}"):
            expected = [p.id for p in memory.find(Page, order_by=order)]
            assert [p.id for p in pg.find(Page, order_by=order)] == expected
            assert [p.id for p in pg.find(Page, order_by=order, limit=5, offset=3)] == (
                expected[3:8]
            )


# -- the index serves what it served -----------------------------------------------


def test_lookups_of_short_and_long_values_use_the_index(pg_url: str) -> None:
    # without sequential scans, any scan the planner can do through an index it does so
    with statekeep.open(f"{pg_url}&options=-c%20enable_seqscan%3Doff") as store:
        store.save_many(Page(id=f"{i:05d}", url=f"u{i}", tag=f"t{i}") for i in range(3000))
        store.save_many(Page(id=f"long{i}", url=LONG + str(i), tag=LONG + str(i)) for i in range(5))
        url, tag = Page.f.url, Page.f.tag
        for value in ("u5", LONG + "3"):
            for condition in (
                url == value,
                url.startswith(value),
                url.startswith(value[: PREFIX + 1]),
                url.in_([value, "u7"]),
                url > value,
                url <= value,
            ):
                found = plan(store, condition)
                assert f"{TABLE}__url" in found and "Index Cond" in found, (condition, found)
        assert "Index Cond" in plan(store, url == None)  # noqa: E711 - a condition
        # the text of a mixed-kind field gets an index it did not have before
        for condition in (tag == "t5", tag == LONG + "1", tag.startswith("t1"), tag >= "t9"):
            found = plan(store, condition)
            assert f"{TABLE}__tag" in found and "Index Cond" in found, (condition, found)
        # a short value is one index condition, as on a plain index: nothing left to filter
        assert "Filter" not in plan(store, url == "u5")
        assert ids(store, url="u5") == ["00005"]
        assert ids(store, url=LONG + "3") == ["long3"]


# -- tables made by an earlier version --------------------------------------------


def make_earlier_layout(server: str, schema: str) -> None:
    """The indexes as versions before prefixes made them: on the whole columns."""
    table = f'"{schema}".{TABLE}'
    with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
        for field in ("url", "tag"):
            conn.execute(f'DROP INDEX "{schema}".{TABLE}__{field}')
            conn.execute(f"CREATE INDEX {TABLE}__{field} ON {table} ({field})")


def assert_current_layout(server: str, schema: str) -> None:
    found = index_layout(server, schema)
    assert sorted(found) == [f"{TABLE}__tag", f"{TABLE}__url", f"{TABLE}_pkey"]
    assert f'"left"(url, {PREFIX})' in found[f"{TABLE}__url"]
    assert f"{PREFIX})" in found[f"{TABLE}__tag"] and "jsonb_typeof" in found[f"{TABLE}__tag"]


@pytest.mark.parametrize("size", ["small", "large"])
def test_an_index_of_the_earlier_layout_is_replaced_when_a_store_opens(
    server: str, pg_url: str, monkeypatch: pytest.MonkeyPatch, size: str
) -> None:
    if size == "large":  # the path of a table too large to lock: built concurrently
        monkeypatch.setattr(_postgres_columns, "SMALL", 50)
    schema = schema_of(pg_url)
    with statekeep.open(pg_url) as store:
        store.save_many(Page(id=f"{i:04d}", url=f"u{i}", tag=i % 7 or f"t{i}") for i in range(300))
    make_earlier_layout(server, schema)
    with statekeep.open(pg_url) as store:
        store.save(Page(id="warm-up"))  # an open store knows the table ...
        make_earlier_layout(server, schema)  # ... so the earlier layout stays, for now
        with pytest.raises(ValidationError, match="index row"):  # what the defect was
            store.save(Page(id="long", url=LONG))
    with statekeep.open(f"{pg_url}&options=-c%20enable_seqscan%3Doff") as store:
        store.save(Page(id="long", url=LONG, tag=LONG))  # opening replaced the indexes
        assert_current_layout(server, schema)
        assert store.count(Page) == 302
        assert ids(store, url="u17") == ["0017"]
        assert ids(store, url=LONG) == ["long"]
        assert ids(store, tag=LONG) == ["long"]
        assert ids(store, tag=3) == [f"{i:04d}" for i in range(300) if i % 7 == 3]
        assert ids(store, tag="t14") == ["0014"]
        assert f"{TABLE}__url" in plan(store, Page.f.url == "u17")


@pytest.mark.parametrize("left", ["both", "the new one only"])
def test_a_replacement_cut_short_is_finished_when_a_store_opens(
    server: str, pg_url: str, monkeypatch: pytest.MonkeyPatch, left: str
) -> None:
    """A process that died while replacing an index on a large table left the
    new index under its temporary name, beside the old one or without it."""
    monkeypatch.setattr(_postgres_columns, "SMALL", 50)
    schema = schema_of(pg_url)
    table = f'"{schema}".{TABLE}'
    with statekeep.open(pg_url) as store:
        store.save_many(Page(id=f"{i:04d}", url=f"u{i}") for i in range(300))
    make_earlier_layout(server, schema)
    with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f"CREATE INDEX {TABLE}__url__new ON {table} ((left(url, {PREFIX})))")
        if left == "the new one only":
            conn.execute(f'DROP INDEX "{schema}".{TABLE}__url')
    with statekeep.open(pg_url) as store:
        store.save(Page(id="long", url=LONG))
        assert ids(store, url=LONG) == ["long"]
        assert ids(store, url="u5") == ["0005"]
    assert_current_layout(server, schema)


# -- permanent failures are dead-lettered, not retried for ever ---------------------


def refuse_by_hand(server: str, schema: str, sqlstate: str) -> None:
    """A trigger added by hand that fails a row whose url is "refused" with sqlstate."""
    with psycopg.connect(server, autocommit=True, connect_timeout=5) as conn:
        conn.execute(
            f'CREATE FUNCTION "{schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS $f$ '
            f"BEGIN IF NEW.url = 'refused' THEN RAISE EXCEPTION 'refused by hand' "
            f"USING ERRCODE = '{sqlstate}'; END IF; RETURN NEW; END $f$"
        )
        conn.execute(
            f'CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON "{schema}".{TABLE} '
            f'FOR EACH ROW EXECUTE FUNCTION "{schema}".refuse()'
        )


@pytest.mark.parametrize(
    "sqlstate",
    ["22023", "23514", "54000", "54023", "P0001"],
    ids=["data", "check constraint", "program limit", "too many arguments", "raised"],
)
def test_a_permanent_failure_is_dead_lettered_not_retried(
    server: str, pg_url: str, sqlstate: str
) -> None:
    with statekeep.open(pg_url) as store:
        store.save(Page(id="kept", url="kept"))
        refuse_by_hand(server, schema_of(pg_url), sqlstate)
        with pytest.raises(StatekeepError) as raised:
            store.save(Page(id="bad", url="refused"))
        assert not isinstance(raised.value, TransientBackendError)
        with pytest.raises(StatekeepError) as raised:
            store.save_many([Page(id="good", url="good"), Page(id="bad", url="refused")])
        assert not isinstance(raised.value, TransientBackendError)
        good = store.enqueue(Page(id="queued", url="fine"))
        bad = store.enqueue(Page(id="bad", url="refused"))
        started = time.monotonic()
        assert store.flush(timeout=10)
        assert time.monotonic() - started < 3
        assert good.error is None
        assert isinstance(bad.error, StatekeepError)
        assert not isinstance(bad.error, TransientBackendError)
        assert store.writebehind.stats().retried == 0
        assert sorted(ids(store)) == ["kept", "queued"]


def test_a_transient_failure_stays_transient(server: str, pg_url: str) -> None:
    with statekeep.open(pg_url) as store:
        store.save(Page(id="kept", url="kept"))
        refuse_by_hand(server, schema_of(pg_url), "40001")  # a serialization failure
        with pytest.raises(TransientBackendError):
            store.save(Page(id="bad", url="refused"))


PERMANENT = [
    "22001",  # string data right truncation
    "22P02",  # invalid text representation
    "23502",  # not null
    "23505",  # unique
    "23514",  # check
    "27000",  # triggered data change violation
    "2F005",  # function executed no return statement
    "39P01",  # trigger protocol violated
    "3B001",  # invalid savepoint
    "40002",  # transaction integrity constraint violation
    "42P01",  # undefined table
    "53400",  # configuration limit exceeded
    "54000",  # program limit exceeded: an index row too large
    "54001",  # statement too complex
    "54011",  # too many columns
    "54023",  # too many arguments
    "55000",  # object not in prerequisite state
    "55P02",  # cannot change runtime parameter
    "P0001",  # raise_exception
    "XX000",  # internal error
]
TRANSIENT = [
    "08006",  # connection failure
    "25006",  # read-only transaction: a standby during a failover
    "25P03",  # idle in transaction session timeout
    "28P01",  # invalid password (changed under a running pool)
    "40001",  # serialization failure
    "40P01",  # deadlock
    "53100",  # disk full
    "53200",  # out of memory
    "53300",  # too many connections
    "55006",  # object in use
    "55P03",  # lock not available
    "57014",  # query canceled: statement_timeout
    "57P01",  # admin shutdown
    "57P03",  # cannot connect now
    "58030",  # I/O error
]


@pytest.mark.parametrize("sqlstate", PERMANENT + TRANSIENT)
def test_sqlstates_are_classified(sqlstate: str) -> None:
    error = psycopg.errors.lookup(sqlstate)("a message")
    translated = translate(error, "storing things")
    assert isinstance(translated, TransientBackendError) == (sqlstate in TRANSIENT)
    if sqlstate[:2] in ("22", "23") or sqlstate == "54000":
        assert isinstance(translated, ValidationError)


@pytest.mark.parametrize(
    "make",
    [
        lambda: psycopg.OperationalError("server closed the connection unexpectedly"),
        lambda: psycopg.InterfaceError("the connection is closed"),
    ],
    ids=["libpq, no SQLSTATE", "closed"],
)
def test_a_lost_connection_is_transient(make: Callable[[], Exception]) -> None:
    assert isinstance(translate(make(), "storing things"), TransientBackendError)
