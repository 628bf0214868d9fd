"""`statekeep dead-letters`: list, show, requeue and drop the writes that
write-behind gave up on, from outside the application (its store closed).

Dead letters here are real: writes enqueued with an expect_version that the
stored row does not have (a permanent ConflictError)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import statekeep
from statekeep import ConflictError, NotFoundError, ops

from ._processes import running
from .conftest import Cli, MakeUrl, one_line, run_process
from .models import Doc

# entity id: what its dead-lettered write was, and what becomes of it when requeued
#   "x": expected version 7 of a row at version 1: fails again
#   "z": expected no row, when "z" was stored; "z" is deleted after: requeue stores it
#   "w": expected version 3 of a row never stored: fails again (the one to drop)
LETTERS = ("w", "x", "z")


def make_dead_letters(url: str) -> None:
    options = statekeep.WriteBehindOptions(window=0.01, retry_base=0.01, retry_cap=0.05)
    with statekeep.open(url, writebehind=options) as store:
        store.save(Doc(id="x", title="stored"))
        store.save(Doc(id="z", title="first"))
        receipts = [
            store.enqueue(Doc(id="x", title="stale"), expect_version=7),
            store.enqueue(Doc(id="z", title="conditional"), expect_version=0),
            store.enqueue(Doc(id="w", title="to drop"), expect_version=3),
        ]
        for receipt in receipts:
            with pytest.raises(ConflictError):
                receipt.wait_stored(timeout=30)
        assert sorted(d.id for d in store.writebehind.dead_letters()) == list(LETTERS)
        store.delete(Doc, "z")


def letter_ids(url: str) -> dict[str, str]:
    """{entity id: dead letter id}, read as the command reads them."""
    with ops.open_existing(url) as store:
        return {one.letter.id: one.id for one in ops.dead_letters(store)}


def titles(url: str) -> dict[str, tuple[str, int]]:
    with ops.open_quietly(url) as store:
        return {doc.id: (doc.title, doc.version) for doc in store.find(Doc)}


@pytest.fixture
def lettered(store_url: str) -> str:
    make_dead_letters(store_url)
    return store_url


@pytest.mark.requires("persistent")
def test_list_show_requeue_and_drop(lettered: str, cli: Cli) -> None:
    url = lettered
    ids = letter_ids(url)
    assert sorted(ids) == list(LETTERS)
    assert len(set(ids.values())) == 3 and all(len(id) == 8 for id in ids.values())

    for args in ((), ("list",)):
        ran = cli("dead-letters", url, *args)
        assert ran.code == 0, ran.err
        assert "3 dead letters" in ran.out
        for entity, letter in ids.items():
            row = next(line for line in ran.out.splitlines() if letter in line)
            cells = [cell.strip() for cell in row.split("│")[1:-1]]
            assert cells[:4] == [letter, "cli_doc", entity, "save"], row
            assert "ConflictError" in cells[4]
            assert "(running)" not in cells[5]

    ran = cli("dead-letters", url, "show", ids["x"])
    assert ran.code == 0, ran.err
    shown = json.loads(ran.out)
    assert {k: shown[k] for k in ("id", "collection", "entity", "write")} == {
        "id": ids["x"],
        "collection": "cli_doc",
        "entity": "x",
        "write": "save",
    }
    assert "ConflictError" in shown["error"] and Path(shown["journal"]).is_dir()
    assert isinstance(shown["record"], dict) and shown["record"]
    assert json.loads(cli("dead-letters", url, "show", ids["x"][:6]).out)["id"] == ids["x"]

    before = titles(url)
    assert before == {"x": ("stored", 1)}
    ran = cli("dead-letters", url, "requeue", ids["z"], "--yes")
    assert ran.code == 0, ran.err
    assert f"{ids['z']} cli_doc/z: stored" in ran.out
    assert titles(url) == {"x": ("stored", 1), "z": ("conditional", 1)}
    assert sorted(letter_ids(url)) == ["w", "x"]

    ran = cli("dead-letters", url, "requeue", ids["x"], "--yes")
    assert ran.code == 1
    assert f"{ids['x']} cli_doc/x: failed again: " in ran.out
    assert "expected version 7, stored 1" in ran.out
    assert sorted(letter_ids(url)) == ["w", "x"]  # still a dead letter
    assert titles(url)["x"] == ("stored", 1)

    ran = cli("dead-letters", url, "drop", ids["w"], "--yes")
    assert ran.code == 0, ran.err
    assert "dropped 1 dead letter(s)" in ran.out
    assert sorted(letter_ids(url)) == ["x"]
    assert "w" not in titles(url)
    assert ids["w"] not in cli("dead-letters", url).out
    with statekeep.open(url) as store:  # the application's next run sees the same
        assert [d.id for d in store.writebehind.dead_letters()] == ["x"]
        assert store.flush(10)
        with pytest.raises(NotFoundError):
            store.get(Doc, "w")

    ran = cli("dead-letters", url, "drop", "--all", "--yes")
    assert ran.code == 0 and "dropped 1 dead letter(s)" in ran.out
    ran = cli("dead-letters", url)
    assert ran.code == 0 and "no dead letters" in ran.out
    ran = cli("dead-letters", url, "requeue", "--all", "--yes")
    assert ran.code == 0 and "no dead letters" in ran.out


def test_unknown_and_ambiguous_ids_are_exit_1(make_url: MakeUrl, cli: Cli) -> None:
    """17 letters: two of them share their first hex digit."""
    url = make_url("sqlite-file")
    with statekeep.open(url, writebehind=statekeep.WriteBehindOptions(window=3600)) as store:
        receipts = [
            store.enqueue(Doc(id=f"d{n}", title="never"), expect_version=5) for n in range(17)
        ]
        assert store.flush(30)
        assert all(isinstance(r.error, ConflictError) for r in receipts)
    ids = sorted(letter_ids(url).values())
    assert len(ids) == 17
    first = [id[0] for id in ids]
    shared = next(c for c in first if first.count(c) > 1)

    ran = cli("dead-letters", url, "show", shared)
    assert ran.code == 1
    assert one_line(ran.err) == (
        f"statekeep dead-letters: '{shared}' names several dead letters; give more of its id"
    )
    unknown = next(f"{n:08x}" for n in range(2**20) if f"{n:08x}" not in ids)
    for action in (("show", unknown), ("requeue", unknown, "--yes"), ("drop", unknown, "-y")):
        ran = cli("dead-letters", url, *action)
        assert ran.code == 1, action
        assert f"no dead letter '{unknown}'" in one_line(ran.err)
    ran = cli("dead-letters", url, "drop", shared, "--yes")
    assert ran.code == 1 and "several" in ran.err
    assert len(letter_ids(url)) == 17  # nothing dropped


def test_an_upper_case_id_names_the_letter(lettered_sqlite: str, cli: Cli) -> None:
    ids = letter_ids(lettered_sqlite)
    ran = cli("dead-letters", lettered_sqlite, "show", ids["x"].upper())
    assert ran.code == 0 and json.loads(ran.out)["entity"] == "x"


@pytest.fixture
def lettered_sqlite(make_url: MakeUrl) -> str:
    url = make_url("sqlite-file")
    make_dead_letters(url)
    return url


def test_a_dead_lettered_delete_is_listed_and_requeued(make_url: MakeUrl, cli: Cli) -> None:
    url = make_url("sqlite-file")
    options = statekeep.WriteBehindOptions(window=0.01)
    with statekeep.open(url, writebehind=options) as store:
        gone = store.enqueue_delete(Doc, "later", expect_version=1)  # no such row yet
        with pytest.raises(statekeep.StatekeepError):
            gone.wait_stored(timeout=30)
        store.save(Doc(id="later", title="stored after"))
    (id,) = letter_ids(url).values()
    listed = cli("dead-letters", url)
    assert "delete" in next(line for line in listed.out.splitlines() if id in line)
    assert json.loads(cli("dead-letters", url, "show", id).out)["write"] == "delete"
    ran = cli("dead-letters", url, "requeue", id, "--yes")
    assert ran.code == 0, ran.out + ran.err
    assert titles(url) == {}
    assert letter_ids(url) == {}


def test_requeue_all_answered_no_changes_nothing(lettered_sqlite: str) -> None:
    url = lettered_sqlite
    before = letter_ids(url)
    for action in ("requeue", "drop"):
        done = run_process("dead-letters", url, action, "--all", stdin="n\n")
        assert done.returncode == 1, done.stderr
        assert f"{action} 3 dead letter(s)? [y/N]" in done.stderr
        assert done.stderr.rstrip().endswith("statekeep dead-letters: nothing done, as answered")
        assert done.stdout == ""
        assert letter_ids(url) == before
        assert titles(url) == {"x": ("stored", 1)}


def test_requeue_answered_yes_goes_on(lettered_sqlite: str) -> None:
    url = lettered_sqlite
    ids = letter_ids(url)
    done = run_process("dead-letters", url, "requeue", ids["z"], stdin="y\n")
    assert done.returncode == 0, done.stderr
    assert "requeue 1 dead letter(s)? [y/N]" in done.stderr
    assert f"{ids['z']} cli_doc/z: stored" in done.stdout
    assert titles(url)["z"] == ("conditional", 1)


def test_requeue_without_ids_or_all_is_a_usage_error(lettered_sqlite: str, cli: Cli) -> None:
    ids = letter_ids(lettered_sqlite)
    for args in (("requeue",), ("drop", "--yes"), ("requeue", ids["x"], "--all", "--yes")):
        assert cli("dead-letters", lettered_sqlite, *args).code == 2, args
    assert letter_ids(lettered_sqlite) == ids


@pytest.mark.requires("persistent")
def test_requeue_and_drop_refuse_a_journal_a_running_process_holds(
    lettered: str, tmp_path: Path, cli: Cli
) -> None:
    url = lettered
    ids = letter_ids(url)
    with running("hold", url, tmp_path):
        listed = cli("dead-letters", url)
        assert listed.code == 0 and "(running)" in listed.out
        for action in ("requeue", "drop"):
            ran = cli("dead-letters", url, action, ids["z"], "--yes")
            assert ran.code == 1, ran.out
            line = one_line(ran.err)
            assert "a running store holds the journal" in line and "stop it first" in line
            assert ran.out == ""
    assert letter_ids(url) == ids
    assert titles(url) == {"x": ("stored", 1), "holder": ("holds the journal", 1)}


def test_requeue_refuses_a_journal_another_store_of_this_process_holds(
    lettered_sqlite: str, cli: Cli
) -> None:
    url = lettered_sqlite
    ids = letter_ids(url)
    with statekeep.open(url) as running_store:
        assert running_store.enqueue(Doc(id="busy")).wait_stored(30)  # its engine runs
        ran = cli("dead-letters", url, "requeue", "--all", "--yes")
        assert ran.code == 1
        assert "a running store holds the journal" in one_line(ran.err)
        assert sorted(d.id for d in running_store.writebehind.dead_letters()) == list(LETTERS)
    assert letter_ids(url) == ids
