"""`statekeep export` and `statekeep import`: dumps between every kind of store.

Round trips keep every entity equal at its version, with `find` on indexed
fields working on the target; a dump that is not whole (corrupted, cut short,
tampered with) fails with exit 1, keeps the chunks it committed and nothing
else, and `--resume` then completes it with the same checksums."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

import statekeep
from statekeep import ops

from ._data import assert_same, populate
from .conftest import Cli, MakeUrl, one_line, run_process
from .models import Note, Person, Reading

PAIRS = [
    ("sqlite-file", "sqlite-file"),
    ("sqlite-file", "postgresql"),
    ("postgresql", "files"),
    ("files", "sqlite-file"),
    ("postgresql", "postgresql"),
    ("files", "files"),
]


def lines_of(dump: str) -> list[str]:
    """A dump's lines, without their newlines: split at "\n" only (a body may
    hold U+2028, which str.splitlines() splits at too)."""
    return dump.rstrip("\n").split("\n")


def kept_lines(dump: str) -> list[str]:
    """A dump's lines, each with its newline."""
    return [line + "\n" for line in lines_of(dump)]


def end_of(dump: str) -> dict[str, dict[str, object]]:
    """The end line's {collection: {rows, checksum}}."""
    last = json.loads(lines_of(dump)[-1])
    assert last["statekeep_dump_end"] == 1, last
    collections: dict[str, dict[str, object]] = last["collections"]
    return collections


def content_of(dump: str) -> dict[str, tuple[int, str]]:
    """Each collection's (rows, order- and spelling-free checksum) of a dump's
    rows: what two databases holding the same data agree on (the end line's
    digest is of the lines as written, which PostgreSQL's jsonb spells anew)."""
    sums: dict[str, ops.Checksum] = {}
    for line in lines_of(dump)[1:]:
        row = json.loads(line)
        if isinstance(row, list):
            collection, id, version, body = row
            total = sums.setdefault(collection, ops.Checksum())
            total.add(id, version, json.dumps(body))
    for name in end_of(dump):
        sums.setdefault(name, ops.Checksum())
    return {name: (total.rows, total.hex) for name, total in sums.items()}


def exported(url: str) -> str:
    """The dump of url's store, written by ops.export."""
    out = io.StringIO()
    with ops.open_existing(url) as store:
        ops.export(store, out)
    return out.getvalue()


def notes_url(make_url: MakeUrl, kind: str = "sqlite-file", count: int = 2500) -> str:
    url = make_url(kind)
    with statekeep.open(url) as store:
        store.save_many([Note(id=f"n{n:05}", text=f"note {n}") for n in range(count)])
        for n in range(0, count, 500):  # a few at version 2
            again = store.get(Note, f"n{n:05}")
            again.text += " (edited)"
            store.save(again)
    return url


def note_count(url: str) -> int:
    with statekeep.open(url) as store:
        return store.count(Note)


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_export_then_import_keeps_every_entity_and_version(
    source: str, target: str, make_url: MakeUrl, tmp_path: Path, cli: Cli
) -> None:
    origin, into = make_url(source), make_url(target)
    with statekeep.open(origin) as store:
        populate(store)
    dump = tmp_path / "dump.jsonl"
    ran = cli("export", origin, "-o", str(dump))
    assert ran.code == 0, ran.err
    assert ran.out == ""  # the dump went to the file
    assert "exported 45 rows of 2 collection(s)" in ran.err
    ran = cli("import", into, "-i", str(dump))
    assert ran.code == 0, ran.err
    assert "imported 45 rows" in ran.err
    with statekeep.open(origin) as a, statekeep.open(into) as b:
        assert_same(a, b)
    # the target's own dump has the same rows and checksums
    assert content_of(exported(into)) == content_of(dump.read_text("utf-8"))


def test_export_to_stdout_and_import_from_stdin_in_processes(make_url: MakeUrl) -> None:
    origin, into = make_url("sqlite-file"), make_url("sqlite-file")
    with statekeep.open(origin) as store:
        populate(store)
    done = run_process("export", origin)
    assert done.returncode == 0, done.stderr
    lines = lines_of(done.stdout)
    assert json.loads(lines[0])["statekeep_dump"] == 1
    assert all(isinstance(json.loads(line), list) for line in lines[1:-1])
    assert len(lines) == 1 + 45 + 1
    assert "exported 45 rows" in done.stderr and "exported" not in done.stdout
    loaded = run_process("import", into, stdin=done.stdout)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout == ""
    with statekeep.open(origin) as a, statekeep.open(into) as b:
        assert_same(a, b)


def test_a_reader_that_leaves_early_ends_the_export_quietly(make_url: MakeUrl) -> None:
    """`statekeep export URL | head -1`: the export stops, without a traceback."""
    origin = notes_url(make_url, count=20_000)
    export = subprocess.Popen(
        [sys.executable, "-m", "statekeep.cli", "export", origin],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert export.stdout is not None and export.stderr is not None
    assert json.loads(export.stdout.readline())["statekeep_dump"] == 1
    export.stdout.close()
    code = export.wait(60)
    error = export.stderr.read().decode()
    export.stderr.close()
    assert code == 1, error
    assert "Traceback" not in error and "Exception ignored" not in error, error


def test_progress_bars_go_to_stderr_and_leave_the_dump_clean(make_url: MakeUrl) -> None:
    """FORCE_COLOR=1: rich draws its bars (on stderr) as on a terminal."""
    origin, into = notes_url(make_url, count=5000), make_url("sqlite-file")
    done = run_process("export", origin, env={"FORCE_COLOR": "1"})
    assert done.returncode == 0, done.stderr
    assert "exporting" in done.stderr and "\x1b[" in done.stderr  # the bar
    assert "\x1b" not in done.stdout
    assert content_of(done.stdout) == content_of(exported(origin))
    loaded = run_process("import", into, stdin=done.stdout, env={"FORCE_COLOR": "1"})
    assert loaded.returncode == 0, loaded.stderr
    assert "importing" in loaded.stderr
    assert content_of(exported(into)) == content_of(done.stdout)
    copied = run_process("copy", origin, make_url("postgresql"), env={"FORCE_COLOR": "1"})
    assert copied.returncode == 0, copied.stderr
    assert "(verifying)" in copied.stderr


def test_the_dump_format(make_url: MakeUrl) -> None:
    origin = make_url("sqlite-file")
    with statekeep.open(origin) as store:
        populate(store)
    header, *rows, end = lines_of(exported(origin))
    head = json.loads(header)
    assert head["statekeep_dump"] == 1 and head["statekeep"] == statekeep.__version__
    assert head["source"]["backend"] == "sqlite"
    listed = {c["name"]: c for c in head["collections"]}
    assert listed["cli_person"]["rows"] == 35 and listed["cli_note"]["rows"] == 10
    assert sorted(map(tuple, listed["cli_person"]["indexes"])) == [
        ("age", "integer", 0),
        ("name", "text", None),
    ]
    for line in rows:
        collection, id, version, body = json.loads(line)
        assert body["id"] == id and body["version"] == version
        assert collection in listed
    assert json.loads(end)["collections"]["cli_person"]["rows"] == 35
    assert 'quote\\"d' in "\n".join(rows)  # ids as JSON strings
    assert "日本語" in "\n".join(rows)  # unicode kept as it is, not escaped


def test_collection_filter(make_url: MakeUrl, tmp_path: Path, cli: Cli) -> None:
    origin, into = make_url("sqlite-file"), make_url("sqlite-file")
    with statekeep.open(origin) as store:
        populate(store)
    dump = tmp_path / "notes.jsonl"
    ran = cli("export", origin, "--collection", "cli_note", "-o", str(dump))
    assert ran.code == 0, ran.err
    text = dump.read_text("utf-8")
    assert [c["name"] for c in json.loads(lines_of(text)[0])["collections"]] == ["cli_note"]
    assert list(end_of(text)) == ["cli_note"]
    assert cli("import", into, "-i", str(dump)).code == 0
    with statekeep.open(into) as store:
        assert store.count(Note) == 10 and store.count(Person) == 0
    # repeated and several
    ran = cli("export", origin, "-c", "cli_person", "-c", "cli_note", "-c", "cli_person")
    assert ran.code == 0
    assert list(end_of(ran.out)) == ["cli_person", "cli_note"]


def test_an_unknown_collection_is_exit_1(make_url: MakeUrl, tmp_path: Path) -> None:
    origin = make_url("sqlite-file")
    with statekeep.open(origin) as store:
        populate(store)
    done = run_process("export", origin, "-c", "cli_note", "-c", "nope")
    assert done.returncode == 1
    line = one_line(done.stderr)
    assert line.startswith("statekeep export: ") and "'nope'" in line
    assert "cli_note, cli_person" in line  # what it holds
    assert done.stdout == ""  # not half a dump


def test_gzip_dumps(make_url: MakeUrl, tmp_path: Path, cli: Cli) -> None:
    origin, into = make_url("sqlite-file"), make_url("files")
    with statekeep.open(origin) as store:
        populate(store)
    dump = tmp_path / "dump.jsonl.gz"
    assert cli("export", origin, "-o", str(dump)).code == 0
    assert dump.read_bytes()[:2] == b"\x1f\x8b"  # gzip's magic
    assert content_of(gzip.decompress(dump.read_bytes()).decode()) == content_of(exported(origin))
    ran = cli("import", into, "-i", str(dump))
    assert ran.code == 0, ran.err
    with statekeep.open(origin) as a, statekeep.open(into) as b:
        assert_same(a, b)


def test_import_from_a_missing_file_is_exit_1(make_url: MakeUrl, tmp_path: Path, cli: Cli) -> None:
    ran = cli("import", make_url("sqlite-file"), "-i", str(tmp_path / "absent.jsonl"))
    assert ran.code == 1
    assert "cannot open" in one_line(ran.err)


def test_import_into_a_store_with_rows_is_refused_and_changes_nothing(
    make_url: MakeUrl, tmp_path: Path, cli: Cli
) -> None:
    origin, into = make_url("sqlite-file"), make_url("postgresql")
    with statekeep.open(origin) as store:
        populate(store)
    with statekeep.open(into) as store:
        store.save(Note(id="mine", text="the target's own"))
    dump = tmp_path / "dump.jsonl"
    assert cli("export", origin, "-o", str(dump)).code == 0
    before = exported(into)
    ran = cli("import", into, "-i", str(dump))
    assert ran.code == 1
    line = one_line(ran.err)
    assert "not empty" in line and "cli_note (1 rows)" in line and "--merge" in line
    assert content_of(exported(into)) == content_of(before)
    with statekeep.open(into) as store:
        assert store.count(Person) == 0 and [n.id for n in store.find(Note)] == ["mine"]


def test_a_corrupted_line_names_its_number_and_keeps_the_chunks_before(
    make_url: MakeUrl, tmp_path: Path, cli: Cli
) -> None:
    """Import commits 2000 rows a chunk: garbage at line 2302 leaves the first
    chunk stored and nothing of the second; fixed, --resume completes it."""
    origin, into = notes_url(make_url), make_url("sqlite-file")
    whole = exported(origin)
    lines = kept_lines(whole)
    broken = [*lines[:2301], '["cli_note", "n02300", 1, {"id": "n02300", garbage\n', *lines[2302:]]
    dump = tmp_path / "broken.jsonl"
    dump.write_text("".join(broken), "utf-8")
    ran = cli("import", into, "-i", str(dump))
    assert ran.code == 1
    line = one_line(ran.err)
    assert line.startswith("statekeep import: line 2302: "), line
    assert "corrupted" in line
    assert note_count(into) == 2000
    stored = exported(into)
    assert {json.loads(row)[1] for row in lines_of(stored)[1:-1]} == {
        f"n{n:05}" for n in range(2000)
    }
    dump.write_text(whole, "utf-8")
    ran = cli("import", into, "--resume", "-i", str(dump))
    assert ran.code == 0, ran.err
    assert "imported 500 rows, skipped 2,000 stored already" in ran.err
    assert content_of(exported(into)) == content_of(whole)


def test_a_dump_cut_short_at_a_line_end_then_resumed(
    make_url: MakeUrl, tmp_path: Path, cli: Cli
) -> None:
    origin, into = notes_url(make_url), make_url("postgresql")
    whole = exported(origin)
    lines = kept_lines(whole)
    dump = tmp_path / "dump.jsonl"
    dump.write_text("".join(lines[:2201]), "utf-8")  # the header and 2200 rows
    ran = cli("import", into, "-i", str(dump))
    assert ran.code == 1
    assert "cut short" in ran.err and "--resume" in ran.err
    assert note_count(into) == 2200  # every row it held
    dump.write_text(whole, "utf-8")
    assert cli("import", into, "-i", str(dump)).code == 1  # not empty any more
    ran = cli("import", into, "--resume", "-i", str(dump))
    assert ran.code == 0, ran.err
    assert "imported 300 rows, skipped 2,200 stored already" in ran.err
    assert content_of(exported(into)) == content_of(whole)
    # resuming a complete import again: all skipped, nothing written
    ran = cli("import", into, "--resume", "-i", str(dump))
    assert ran.code == 0 and "imported 0 rows, skipped 2,500" in ran.err


def test_a_dump_cut_short_in_the_middle_of_a_line_says_it_was_cut_short(
    make_url: MakeUrl, tmp_path: Path, cli: Cli
) -> None:
    """What an export killed half-way leaves: its last line torn, no newline."""
    origin, into = notes_url(make_url), make_url("sqlite-file")
    whole = exported(origin)
    lines = kept_lines(whole)
    torn = "".join(lines[:2201]) + lines[2201][:20]
    dump = tmp_path / "dump.jsonl"
    dump.write_text(torn, "utf-8")
    ran = cli("import", into, "-i", str(dump))
    assert ran.code == 1
    assert "cut short" in ran.err, ran.err
    dump.write_text(whole, "utf-8")
    assert cli("import", into, "--resume", "-i", str(dump)).code == 0
    assert content_of(exported(into)) == content_of(whole)


def test_a_dump_with_windows_line_ends_imports(make_url: MakeUrl, cli: Cli) -> None:
    origin, into = make_url("sqlite-file"), make_url("sqlite-file")
    with statekeep.open(origin) as store:
        populate(store)
    text = exported(origin)
    ran = cli("import", into, stdin="\r\n".join(lines_of(text)) + "\r\n")
    assert ran.code == 0, ran.err
    assert content_of(exported(into)) == content_of(text)


def test_export_into_a_missing_folder_is_exit_1(make_url: MakeUrl, tmp_path: Path) -> None:
    origin = make_url("sqlite-file")
    statekeep.open(origin).close()
    done = run_process("export", origin, "-o", str(tmp_path / "absent" / "dump.jsonl"))
    assert done.returncode == 1
    assert one_line(done.stderr).startswith("statekeep export: cannot open ")


def test_a_tampered_checksum_is_exit_1(make_url: MakeUrl, tmp_path: Path, cli: Cli) -> None:
    origin, into = make_url("sqlite-file"), make_url("sqlite-file")
    with statekeep.open(origin) as store:
        populate(store)
    *body, end = lines_of(exported(origin))
    last = json.loads(end)
    checksum = last["collections"]["cli_note"]["checksum"]
    last["collections"]["cli_note"]["checksum"] = checksum[:-1] + (
        "0" if checksum[-1] != "0" else "1"
    )
    dump = tmp_path / "dump.jsonl"
    dump.write_text("\n".join([*body, json.dumps(last)]) + "\n", "utf-8")
    ran = cli("import", into, "-i", str(dump))
    assert ran.code == 1
    line = one_line(ran.err)
    assert "cli_note: the end line says 10 rows" in line


def test_a_row_changed_in_the_dump_is_caught_by_the_checksum(
    make_url: MakeUrl, tmp_path: Path, cli: Cli
) -> None:
    origin, into = make_url("sqlite-file"), make_url("sqlite-file")
    with statekeep.open(origin) as store:
        populate(store)
    text = exported(origin).replace("note 3 «", "note 4 «")
    ran = cli("import", into, stdin=text)
    assert ran.code == 1
    assert "cli_note: the end line says" in one_line(ran.err)


def test_an_empty_stdin_is_exit_1() -> None:
    done = run_process("import", "sqlite:///:memory:", stdin="")
    assert done.returncode == 1
    assert one_line(done.stderr) == "statekeep import: the dump is empty: no header line"


def test_an_empty_stdin_is_exit_1_and_makes_no_database(tmp_path: Path) -> None:
    done = run_process("import", f"sqlite:///{tmp_path / 'new.db'}", stdin="")
    assert done.returncode == 1
    assert "empty" in one_line(done.stderr)
    assert not (tmp_path / "new.db").exists()


def test_a_dump_that_is_not_one(make_url: MakeUrl, cli: Cli) -> None:
    ran = cli("import", make_url("sqlite-file"), stdin="hello\nworld\n")
    assert ran.code == 1
    assert one_line(ran.err) == (
        "statekeep import: line 1: not a statekeep dump: the first line is not its header"
    )


def test_a_header_without_rows_or_end_line_was_cut_short(make_url: MakeUrl, cli: Cli) -> None:
    origin, into = make_url("sqlite-file"), make_url("sqlite-file")
    with statekeep.open(origin) as store:
        populate(store)
    header = lines_of(exported(origin))[0]
    ran = cli("import", into, stdin=header + "\n")
    assert ran.code == 1
    assert "cut short" in ran.err and "imported 0 rows" in ran.err


def test_a_dump_of_empty_collections_imports(make_url: MakeUrl, cli: Cli) -> None:
    origin, into = make_url("sqlite-file"), make_url("sqlite-file")
    with statekeep.open(origin) as store:
        store.save(Note(id="x"))
        store.delete(Note, "x")
    text = exported(origin)
    assert end_of(text) == {"cli_note": {"rows": 0, "checksum": "0" * 32}}
    ran = cli("import", into, stdin=text)
    assert ran.code == 0, ran.err
    assert [c["name"] for c in json.loads(cli("inspect", into, "--json").out)["collections"]] == [
        "cli_note"
    ]
    # a database with no collection at all
    empty = make_url("sqlite-file")
    statekeep.open(empty).close()
    ran = cli("import", make_url("sqlite-file"), stdin=exported(empty))
    assert ran.code == 0, ran.err


def test_a_row_of_an_unlisted_collection_is_exit_1(make_url: MakeUrl, cli: Cli) -> None:
    origin = make_url("sqlite-file")
    with statekeep.open(origin) as store:
        populate(store)
    header, *rows = lines_of(exported(origin))
    text = "\n".join([header, '["ghost", "g", 1, {"id": "g", "version": 1}]', *rows]) + "\n"
    ran = cli("import", make_url("sqlite-file"), stdin=text)
    assert ran.code == 1
    assert one_line(ran.err).startswith("statekeep import: line 2: a row of 'ghost'")


def test_resume_and_merge_together_is_a_usage_error(make_url: MakeUrl) -> None:
    done = run_process("import", make_url("sqlite-file"), "--resume", "--merge", stdin="")
    assert done.returncode == 2
    assert "--resume or --merge, not both" in done.stderr


def test_resume_refuses_a_row_stored_at_another_version(
    make_url: MakeUrl, tmp_path: Path, cli: Cli
) -> None:
    origin, into = notes_url(make_url, count=100), make_url("sqlite-file")
    whole = exported(origin)
    assert cli("import", into, stdin="".join(kept_lines(whole)[:51])).code == 1
    with statekeep.open(into) as store:  # a writer changed a row meanwhile
        changed = store.get(Note, "n00010")
        changed.text = "changed by the application"
        store.save(changed)
    ran = cli("import", into, "--resume", stdin=whole)
    assert ran.code == 1
    line = one_line(ran.err)
    assert "ConflictError" in line and "n00010" in line and "stored at version 2" in line
    with statekeep.open(into) as store:
        assert store.get(Note, "n00010").text == "changed by the application"


def test_merge_keeps_the_newer_version_of_each_row(make_url: MakeUrl, cli: Cli) -> None:
    origin, into = make_url("sqlite-file"), make_url("postgresql")
    with statekeep.open(origin) as store:
        store.save_many([Note(id=f"m{n}", text="source v1") for n in range(4)])
        for id in ("m0", "m1"):
            newer = store.get(Note, id)
            newer.text = "source v2"
            store.save(newer)
    with statekeep.open(into) as store:
        store.save(Note(id="m0", text="target v1"))  # older than the source's: replaced
        store.save(Note(id="m2", text="target v1"))  # as new as the source's: kept
        three = Note(id="m3", text="target v1")
        store.save(three)
        three.text = "target v2"
        store.save(three)  # newer than the source's: kept
        store.save(Note(id="own", text="only in the target"))
    ran = cli("import", into, "--merge", stdin=exported(origin))
    assert ran.code == 0, ran.err
    assert "imported 2 rows" in ran.err and "kept 2 newer in the target" in ran.err
    with statekeep.open(into) as store:
        found = {n.id: (n.text, n.version) for n in store.find(Note)}
    assert found == {
        "m0": ("source v2", 2),
        "m1": ("source v2", 2),
        "m2": ("target v1", 1),
        "m3": ("target v2", 2),
        "own": ("only in the target", 1),
    }


def test_bodies_postgresql_spells_anew_keep_their_checksums(
    make_url: MakeUrl, tmp_path: Path, cli: Cli
) -> None:
    """SQLite -> PostgreSQL -> export: jsonb reorders keys, drops spaces and
    spells numbers its own way; the dump's checksums must not change."""
    sqlite, pg = make_url("sqlite-file"), make_url("postgresql")
    with statekeep.open(sqlite) as store:
        populate(store)
        store.save(
            Reading(id="small", value=0.1, values=[1.0, -0.0, 2.5e-8, 123.456], nested={"z": 1})
        )
    first = exported(sqlite)
    assert cli("import", pg, stdin=first).code == 0
    again = exported(pg)
    assert content_of(again) == content_of(first)
    assert again != first  # PostgreSQL did spell the bodies anew
    back = make_url("sqlite-file")
    assert cli("import", back, stdin=again).code == 0
    with statekeep.open(sqlite) as a, statekeep.open(back) as b:
        assert_same(a, b)
        assert b.get(Reading, "small") == a.get(Reading, "small")


@pytest.mark.parametrize("value", [1e20, 1e300, 2.0**60, -1.5e17], ids=str)
def test_large_whole_floats_keep_their_checksum_through_postgresql(
    value: float, make_url: MakeUrl, cli: Cli
) -> None:
    """A float with no fraction above 2**53 (1e20) is `1e20` in SQLite's body
    and `100000000000000000000` in jsonb's: one number, one checksum."""
    sqlite, pg = make_url("sqlite-file"), make_url("postgresql")
    with statekeep.open(sqlite) as store:
        store.save(Reading(id="big", value=value, values=[value], nested={"v": value}))
    first = exported(sqlite)
    ran = cli("import", pg, stdin=first)
    assert ran.code == 0, ran.err
    with statekeep.open(pg) as store:
        assert store.get(Reading, "big").value == value
    assert content_of(exported(pg)) == content_of(first)
