"""`statekeep copy FROM TO`: a store's collections into another, verified."""

from __future__ import annotations

import io
import time

import pytest

import statekeep
from statekeep import ops

from ._data import assert_same, populate
from .conftest import Cli, MakeUrl, one_line, run_process
from .models import Note, Person, Reading
from .test_dump import content_of


def sums(url: str) -> dict[str, tuple[int, str]]:
    """Each collection's (rows, checksum) as copy checks them: canonical, so
    that the same rows on two backends agree."""
    out = io.StringIO()
    with ops.open_existing(url) as store:
        ops.export(store, out)
    return content_of(out.getvalue())


def table_rows(out: str) -> dict[str, list[str]]:
    """The rows of the table copy prints, by collection."""
    found = {}
    for line in out.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0].startswith("cli_"):
            found[cells[0]] = cells[1:]
    return found


def test_copy_sqlite_to_postgresql_and_back(make_url: MakeUrl, cli: Cli) -> None:
    sqlite, pg, back = make_url("sqlite-file"), make_url("postgresql"), make_url("sqlite-file")
    with statekeep.open(sqlite) as store:
        populate(store)
    expected = sums(sqlite)
    ran = cli("copy", sqlite, pg)
    assert ran.code == 0, ran.err
    assert "copied 45 rows" in ran.out
    table = table_rows(ran.out)
    assert table == {
        "cli_note": ["10", expected["cli_note"][1][:16], "yes"],
        "cli_person": ["35", expected["cli_person"][1][:16], "yes"],
    }
    assert sums(pg) == expected
    ran = cli("copy", pg, back)
    assert ran.code == 0, ran.err
    assert sums(back) == expected
    with statekeep.open(sqlite) as a, statekeep.open(pg) as b, statekeep.open(back) as c:
        assert_same(a, b)
        assert_same(a, c)


def test_copy_in_a_process_prints_the_table_on_stdout(make_url: MakeUrl) -> None:
    sqlite, files = make_url("sqlite-file"), make_url("files")
    with statekeep.open(sqlite) as store:
        populate(store)
    done = run_process("copy", sqlite, files)
    assert done.returncode == 0, done.stderr
    assert set(table_rows(done.stdout)) == {"cli_note", "cli_person"}
    assert done.stderr == ""
    assert sums(files) == sums(sqlite)


def test_copy_of_chosen_collections(make_url: MakeUrl, cli: Cli) -> None:
    sqlite, pg = make_url("sqlite-file"), make_url("postgresql")
    with statekeep.open(sqlite) as store:
        populate(store)
    ran = cli("copy", sqlite, pg, "-c", "cli_note")
    assert ran.code == 0, ran.err
    assert list(table_rows(ran.out)) == ["cli_note"]
    with statekeep.open(pg) as store:
        assert store.count(Note) == 10 and store.count(Person) == 0
    ran = cli("copy", sqlite, make_url("sqlite-file"), "-c", "nope")
    assert ran.code == 1 and "'nope'" in one_line(ran.err)


def test_copy_into_a_store_with_rows_is_refused_unless_merge(make_url: MakeUrl, cli: Cli) -> None:
    sqlite, pg = make_url("sqlite-file"), make_url("postgresql")
    with statekeep.open(sqlite) as store:
        populate(store)
    with statekeep.open(pg) as store:
        store.save(Note(id="n1", text="the target's, newer"))
        newer = store.get(Note, "n1")
        store.save(newer)
        store.save(newer)  # version 3: newer than the source's n1
        store.save(Note(id="own", text="only in the target"))
    before = sums(pg)
    ran = cli("copy", sqlite, pg)
    assert ran.code == 1
    line = one_line(ran.err)
    assert line.startswith("statekeep copy: ") and "not empty" in line
    assert sums(pg) == before

    ran = cli("copy", sqlite, pg, "--merge")
    assert ran.code == 0, ran.err
    table = table_rows(ran.out)
    assert table["cli_note"][2] == "-" and table["cli_person"][2] == "-"  # not compared
    with statekeep.open(pg) as store:
        assert store.get(Note, "n1").text == "the target's, newer"
        assert store.get(Note, "own").version == 1
        assert store.get(Note, "n2").text.startswith("note 2")
        assert store.count(Note) == 11 and store.count(Person) == 35


def test_copy_from_a_missing_database_creates_nothing(make_url: MakeUrl, cli: Cli) -> None:
    target = make_url("sqlite-file")
    missing = target.replace("store.db", "missing.db")
    ran = cli("copy", missing, target)
    assert ran.code == 1 and "no database at" in one_line(ran.err)


def test_copy_to_itself_is_refused(make_url: MakeUrl, cli: Cli) -> None:
    sqlite = make_url("sqlite-file")
    with statekeep.open(sqlite) as store:
        populate(store)
    before = sums(sqlite)
    ran = cli("copy", sqlite, sqlite)
    assert ran.code == 1
    assert sums(sqlite) == before
    ran = cli("copy", sqlite, sqlite, "--merge")  # every row is as new: all kept
    assert ran.code == 0, ran.err
    assert sums(sqlite) == before


def test_copy_of_large_whole_floats_to_postgresql_verifies(make_url: MakeUrl, cli: Cli) -> None:
    """A float like 1e20 is `1e20` in SQLite and `100000000000000000000` in
    jsonb: the same number, so the copy's read-back must agree."""
    sqlite, pg = make_url("sqlite-file"), make_url("postgresql")
    with statekeep.open(sqlite) as store:
        store.save(Reading(id="r", value=1e20, values=[1e300]))
    ran = cli("copy", sqlite, pg)
    assert ran.code == 0, ran.err
    assert table_rows(ran.out)["cli_reading"][2] == "yes"


COUNT = 100_000


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_copy_100k_entities_sqlite_postgresql_files_sqlite(make_url: MakeUrl, cli: Cli) -> None:
    first, pg, files, last = (
        make_url("sqlite-file"),
        make_url("postgresql"),
        make_url("files"),
        make_url("sqlite-file"),
    )
    with statekeep.open(first) as store:
        store.save_many(
            Person(
                id=f"p{n:06}",
                name=f"name {n % 1000}",
                age=n % 90,
                score=n / 7,
                tags=["t"] * (n % 3),
                extra={"n": n, "deep": {"list": [n, "x"]}},
            )
            for n in range(COUNT)
        )
    expected = sums(first)
    assert expected["cli_person"][0] == COUNT
    times = {}
    for origin, into in ((first, pg), (pg, files), (files, last)):
        started = time.perf_counter()
        ran = cli("copy", origin, into)
        times[into.partition(":")[0]] = time.perf_counter() - started
        assert ran.code == 0, ran.err
        assert table_rows(ran.out)["cli_person"] == [
            f"{COUNT:,}",
            expected["cli_person"][1][:16],
            "yes",
        ]
    print("copy times:", {k: f"{v:.1f} s" for k, v in times.items()})
    assert sums(last) == expected
    with statekeep.open(last) as store:
        assert store.count(Person, age=42) == len([n for n in range(COUNT) if n % 90 == 42])
        assert store.get(Person, "p054321").extra == {"n": 54321, "deep": {"list": [54321, "x"]}}
