"""Breaking `statekeep import` / `export` with hostile dumps and outputs.

Each test reproduces one break found by trying the commands as a hostile new
user would; each fails today."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import statekeep

from .conftest import Cli, MakeUrl, one_line
from .models import Note

ZERO = "0" * 32


def header(name: str, indexes: list[list[object]], rows: int = 0) -> str:
    return json.dumps(
        {"statekeep_dump": 1, "collections": [{"name": name, "indexes": indexes, "rows": rows}]}
    )


def end(name: str) -> str:
    """The end line of a dump that holds no row of name."""
    return json.dumps(
        {"statekeep_dump_end": 1, "collections": {name: {"rows": 0, "checksum": ZERO}}}
    )


def notes(url: str, count: int = 3) -> dict[str, str]:
    with statekeep.open(url) as store:
        store.save_many([Note(id=f"n{n}", text=f"note {n}") for n in range(count)])
    return {f"n{n}": f"note {n}" for n in range(count)}


def test_a_dump_naming_the_outbox_table_does_not_break_the_outbox(
    make_url: MakeUrl, cli: Cli
) -> None:
    """A dump whose collection is `statekeep_outbox` (statekeep's own table,
    a name no Entity may take) made, on a SQLite file, a table of that name
    shaped as a collection: the application's outbox then fails on every
    save (NOT NULL constraint failed: statekeep_outbox.id) and `inspect`
    fails (no such column: position). It should be refused as the header is
    read."""
    url = make_url("sqlite-file")
    dump = (
        "\n".join(
            [
                header("statekeep_outbox", []),
                json.dumps(["statekeep_outbox", "x", 1, {"id": "x", "version": 1}]),
            ]
        )
        + "\n"
    )
    ran = cli("import", url, stdin=dump)
    assert ran.code == 1
    with statekeep.open(url, outbox=True) as store:
        store.save(Note(id="after", text="the outbox still works"))
    ran = cli("inspect", url)
    assert ran.code == 0, ran.err


@pytest.mark.parametrize("column", ["body", "version"])
def test_a_header_index_named_like_a_base_column_keeps_the_stored_rows(
    make_url: MakeUrl, cli: Cli, column: str
) -> None:
    """`import --merge` of a dump with no rows, whose header lists an indexed
    column named `body` (or `version`) for an existing collection, dropped
    that column of the SQLite table and made it an index column: every
    stored entity is gone (get fails; `export` then crashes with a
    traceback), and the import said exit 0. Such a header must be refused
    before anything is changed."""
    url = make_url("sqlite-file")
    stored = notes(url)
    dump = header("cli_note", [[column, "text", None]]) + "\n" + end("cli_note") + "\n"
    ran = cli("import", "--merge", url, stdin=dump)
    assert ran.code == 1, "a header that names a base column as an index is refused"
    with statekeep.open(url) as store:
        assert {n.id: n.text for n in store.find(Note)} == stored
        assert store.get(Note, "n0").version == 1


def _import_bytes(url: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "statekeep.cli", "import", url],
        input=data,
        capture_output=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "250"},
        check=False,
    )


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xff\xfe{\x00}\x00\n\x00", id="utf16"),
    ],
)
def test_a_dump_that_is_not_utf8_on_stdin_fails_with_one_line(
    make_url: MakeUrl, data: bytes
) -> None:
    """`statekeep import URL < app.jsonl.gz` (the docs' `export -o todo.jsonl.gz`
    fed to stdin), or a dump saved as UTF-16 (PowerShell's `>`), printed a
    UnicodeDecodeError traceback. Exit 1 with one line on stderr is the
    documented failure."""
    url = make_url("sqlite-file")
    ran = _import_bytes(url, data)
    assert ran.returncode == 1
    one_line(ran.stderr.decode("utf-8", "replace"))


def test_a_gzip_dump_on_stdin_imports(make_url: MakeUrl, cli: Cli, tmp_path: Path) -> None:
    """`statekeep import URL < app.jsonl.gz`: told by its first bytes, and read."""
    origin, into = make_url("sqlite-file"), make_url("sqlite-file")
    with statekeep.open(origin) as store:
        store.save_many([Note(id=f"n{k}", text="t") for k in range(3)])
    dump = tmp_path / "app.jsonl.gz"
    assert cli("export", origin, "-o", str(dump)).code == 0
    ran = _import_bytes(into, dump.read_bytes())
    assert ran.returncode == 0, ran.stderr
    with statekeep.open(into) as store:
        assert store.count(Note) == 3


def test_a_dump_with_a_byte_order_mark_imports(make_url: MakeUrl, cli: Cli) -> None:
    """A dump re-saved by an editor that writes a UTF-8 BOM (Notepad, Excel)
    was refused as `not a statekeep dump: the first line is not its header`,
    which is misleading: the header is there. Reading the dump as utf-8-sig
    (or naming the BOM in the error) is what a user expects."""
    source, target = make_url("sqlite-file"), make_url("sqlite-file")
    notes(source)
    dump = cli("export", source).out
    ran = cli("import", target, stdin="\ufeff" + dump)
    assert ran.code == 0, ran.err
    with statekeep.open(target) as store:
        assert store.count(Note) == 3


def test_a_failed_export_leaves_an_existing_output_file_alone(
    make_url: MakeUrl, cli: Cli, tmp_path: Path
) -> None:
    """`statekeep export URL -c typo -o backup.jsonl` truncated backup.jsonl
    to 0 bytes before it found out that there is no collection `typo`:
    a typo destroys yesterday's backup. A failed export must not touch -o
    (check first, or write a temporary file and rename it at the end)."""
    url = make_url("sqlite-file")
    notes(url)
    backup = tmp_path / "backup.jsonl"
    backup.write_text("yesterday's dump\n")
    ran = cli("export", url, "-c", "typo", "-o", str(backup))
    assert ran.code == 1
    assert backup.read_text() == "yesterday's dump\n"
