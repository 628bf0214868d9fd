"""`statekeep inspect`: what a database holds and what waits on it, read only.

A store with two entity classes, a durable subscription left behind, and
write-behind writes a SIGKILLed process left in its journal: inspect shows
them all, and afterwards the writes are still in the journal, not stored
(the next store to open the database stores them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import statekeep
from statekeep import ops

from ._data import populate
from ._processes import kill, start_child
from .conftest import Cli, MakeUrl, one_line, run_process
from .models import Doc, Note, Person

PENDING = {"CRITICAL": 2, "NORMAL": 3, "LOW": 4}
PENDING_IDS = (
    [f"c{n}" for n in range(2)] + [f"n{n}" for n in range(3)] + [f"l{n}" for n in range(4)]
)
LAG = 5


def leave_a_subscription_behind(url: str) -> None:
    """A durable subscription that read every event, then stopped; LAG events after it."""
    with statekeep.open(url, outbox=True, outbox_retention=None) as store:
        seen: list[statekeep.Event] = []
        subscription = store.subscribe("mailer", seen.append)
        populate(store)
        assert subscription.wait_idle(30)
        subscription.stop()
        assert seen
        for n in range(LAG):
            store.save(Note(id=f"late{n}", text="after the subscription stopped"))


def segment_files(journal: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(journal.glob("segment-*.log"))}


@pytest.mark.requires("persistent")
def test_inspect_shows_collections_journals_and_subscriptions_and_stores_nothing(
    store_url: str, tmp_path: Path, cli: Cli
) -> None:
    leave_a_subscription_behind(store_url)
    kill(start_child("pending", store_url, tmp_path))

    ran = cli("inspect", store_url, "--json")
    assert ran.code == 0, ran.err
    found = json.loads(ran.out)
    assert set(found) == {
        "url",
        "database",
        "collections",
        "journals",
        "outbox",
        "subscriptions",
    }
    assert found["database"]["backend"] in ("sqlite", "files", "postgresql")
    assert {"backend", "server", "location", "bytes", "layout"} <= set(found["database"])
    collections = {c["name"]: c for c in found["collections"]}
    person, note = collections["cli_person"], collections["cli_note"]
    assert person["rows"] == 35 and person["ready"] is True
    indexes = {(i["name"], i["kind"]) for i in person["indexes"]}
    if found["database"]["backend"] == "files":  # it keeps no columns (_files_catalog)
        assert indexes == set()
    else:
        assert indexes == {("name", "text"), ("age", "integer")}
    assert note["rows"] == 10 + LAG and note["indexes"] == []
    assert collections.get("cli_doc", {"rows": 0})["rows"] == 0  # pending, not stored
    assert not any(name.startswith("statekeep") for name in collections), collections

    (journal,) = found["journals"]
    assert journal["pending"] == PENDING
    assert journal["held"] is False  # its process was killed
    assert journal["dead_letters"] == 0
    assert isinstance(journal["oldest_pending_age"], float) and journal["oldest_pending_age"] >= 0
    assert journal["bytes"] > 0

    (subscription,) = found["subscriptions"]
    assert subscription["name"] == "mailer"
    assert subscription["lag"] == LAG
    assert subscription["active"] is False and subscription["behind"] is True
    assert subscription["position"] > 0
    assert found["outbox"]["events"] >= LAG and found["outbox"]["capped"] is False

    # the same, drawn for people
    directory = Path(journal["directory"])
    before = segment_files(directory)
    assert before
    ran = cli("inspect", store_url)
    assert ran.code == 0, ran.err
    assert "cli_person" in ran.out
    if found["database"]["backend"] != "files":
        assert "name (text)" in ran.out and "age (integer)" in ran.out
    journal_row = next(line for line in ran.out.splitlines() if directory.name in line)
    assert "free" in journal_row
    cells = [cell.strip() for cell in journal_row.split("│")]
    assert cells[3:6] == ["2", "3", "4"], journal_row  # CRITICAL, NORMAL, LOW
    assert "mailer" in ran.out and "not running" in ran.out

    # neither did an export read them (it reads what is stored)
    ran = cli("export", store_url, "-o", str(tmp_path / "dump.jsonl"))
    assert ran.code == 0, ran.err
    assert '"cli_doc"' not in (tmp_path / "dump.jsonl").read_text("utf-8")

    # inspect stored nothing, took nothing over: the writes wait in the journal
    assert segment_files(directory) == before
    with ops.open_quietly(store_url) as quiet:
        assert quiet.backend.get_many("cli_doc", PENDING_IDS) == {}
    with statekeep.open(store_url) as store:  # a store of the application: it recovers them
        assert store.flush(30)
        stored = store.get_many(Doc, PENDING_IDS)
        assert sorted(stored) == sorted(PENDING_IDS)
        assert {doc.title for doc in stored.values()} == set(PENDING)
        assert store.get(Person, "p00").name == "Ann"
    ran = cli("inspect", store_url, "--json")
    assert [j["pending"] for j in json.loads(ran.out)["journals"]] == [dict.fromkeys(PENDING, 0)]


@pytest.mark.requires("persistent")
def test_inspect_reports_a_journal_a_running_store_holds(
    store_url: str, tmp_path: Path, cli: Cli
) -> None:
    child = start_child("hold", store_url, tmp_path)
    try:
        ran = cli("inspect", store_url, "--json")
    finally:
        kill(child)
    assert ran.code == 0, ran.err
    (journal,) = json.loads(ran.out)["journals"]
    assert journal["held"] is True
    assert sum(journal["pending"].values()) == 0


@pytest.mark.requires("persistent")
def test_inspect_of_an_empty_store(store_url: str, cli: Cli) -> None:
    statekeep.open(store_url).close()
    ran = cli("inspect", store_url, "--json")
    assert ran.code == 0, ran.err
    found = json.loads(ran.out)
    assert found["collections"] == [] and found["journals"] == []
    assert found["subscriptions"] == [] and found["outbox"]["events"] == 0


def test_inspect_hides_the_password_of_a_url(cli: Cli, make_url: MakeUrl) -> None:
    url = make_url("postgresql")
    statekeep.open(url).close()
    scheme, _, rest = url.partition("://")
    if "@" not in rest:
        pytest.skip("the test server's URL has no user part")
    user, _, host = rest.partition("@")
    ran = cli("inspect", f"{scheme}://{user.partition(':')[0]}:s3cret@{host}", "--json")
    assert "s3cret" not in ran.out + ran.err  # shown or not (a trusting server ignores it)


def test_inspect_of_a_missing_sqlite_file_fails_and_creates_nothing(
    tmp_path: Path, cli: Cli
) -> None:
    missing = tmp_path / "nope.db"
    ran = cli("inspect", f"sqlite:///{missing}")
    assert ran.code == 1
    line = one_line(ran.err)
    assert line.startswith("statekeep inspect: ") and "nope.db" in line
    assert ran.out == ""
    assert list(tmp_path.iterdir()) == []


def test_inspect_of_a_missing_sqlite_file_in_a_process(tmp_path: Path) -> None:
    done = run_process("inspect", "sqlite:///nope.db", "--json", cwd=tmp_path)
    assert done.returncode == 1
    assert one_line(done.stderr).startswith("statekeep inspect: no database at nope.db")
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_inspect_of_a_missing_postgresql_schema_creates_nothing(cli: Cli) -> None:
    """As for a missing file: `?schema=typo` names no database to inspect,
    and inspect (which only reads) must not make one."""
    import psycopg

    from _postgres import drop_schema, fresh_schema, server_url, with_query

    base, schema = server_url(), fresh_schema()
    try:
        ran = cli("inspect", with_query(base, schema=schema), "--json")
        with psycopg.connect(base, autocommit=True) as conn:
            made = conn.execute(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
                (schema,),
            ).fetchone()
    finally:
        drop_schema(base, schema)
    assert made == (0,), f"inspect created the schema {schema}"
    assert ran.code == 1 and schema in one_line(ran.err)


def test_inspect_of_a_missing_folder_creates_nothing(tmp_path: Path, cli: Cli) -> None:
    ran = cli("inspect", f"files:///{tmp_path / 'absent'}")
    assert ran.code == 1 and one_line(ran.err).startswith("statekeep inspect: ")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_scheme_is_one_line_and_exit_1() -> None:
    done = run_process("inspect", "foo://x")
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith("statekeep inspect: ") and "foo://x" in line
    assert "sqlite://" in line  # it says which schemes there are
    assert done.stdout == ""


def test_a_failure_shows_the_traceback_with_debug() -> None:
    done = run_process("--debug", "inspect", "foo://x")
    assert done.returncode == 1
    assert "Traceback" in done.stderr and "ConfigurationError" in done.stderr


def test_inspect_without_a_url_is_a_usage_error() -> None:
    done = run_process("inspect")
    assert done.returncode == 2
    assert "Missing argument 'URL'" in done.stderr and done.stdout == ""
