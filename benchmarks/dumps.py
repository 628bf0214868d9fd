"""Dumps (issue 18): `statekeep export` and `import` against the database's own
dump and load of the same table, and their memory at 1M entities.

Throughput (Sizes.save_many entities, the save_many model, with time-ordered
ids and with random uuid4 hex ids; Sizes.wb_rounds rounds, interleaved with a
rotating start; the median round is judged, the best beside it):

- SQLite export: `ops.export` of the table to a file, against the sqlite3
  command-line shell writing the same table to a file: `.dump bench_todo`
  (CREATE TABLE + an INSERT per row) and `.mode csv` (the rows as CSV, what
  `.import` reads). The faster of the two is the limit.
- SQLite import: `ops.import_dump` of statekeep's dump into an empty file,
  against the shell loading its own dumps into an empty file: `.read` of the
  `.dump` SQL, and the table's CREATE TABLE + `.import --csv`. The faster is
  the limit. (The shell makes a file with its defaults, a rollback journal
  and synchronous=FULL; all of it is one transaction there, so it syncs a
  few times in all, as statekeep's WAL with synchronous=NORMAL does.)
- PostgreSQL export: `ops.export` against `pg_dump -t schema.bench_todo` (the
  plain format: CREATE TABLE, COPY ... FROM stdin with the rows, then the
  primary key), each into a file.
- PostgreSQL import: `ops.import_dump` into a fresh, empty schema, against
  `psql -f` of the pg_dump file into an empty schema of the same name (in a
  database of its own, made for the run and dropped after it: the dump
  names its schema). A CHECKPOINT precedes every PostgreSQL trial.

Every import is checked afterwards (untimed): all N rows are there, and
statekeep's import read the dump's end line with matching checksums.
Target for each: >= 0.5x the limit's rows/s, per round (the round's limit
time / statekeep's time), median of the rounds.

Memory (flat): export of Sizes.memory entities (1M; time-ordered ids) from
a SQLite file to a dump file, and import of that dump into an empty file,
each in a child process of its own (_dumps_child), and the same at a tenth
of that (100k). A child's growth is its peak RSS (VmHWM) less its RSS
before the work. The rule: flat when the 1M growth <= 1.5x the 100k growth
+ 16 MB. Memory that grows with N (a list of every id, the dump held whole)
would grow ten-fold and fail it; a bounded cache reached only by the larger
run (SQLite's page cache is 2 MB by default) passes.

How long (measured on 2 cores that other processes kept 55-75% busy): the
whole module 7-11 minutes. The throughput parts 4-7 minutes, nearly all of
it statekeep's own export and import (4-10 s and 5-13 s a round at 100k);
the memory part 3-4 minutes (the 1M export 41-65 s, its import 63-83 s,
making the 1M file most of the rest). `--quick` takes 40-60 s.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import statistics
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import statekeep
from statekeep import ops

from . import _models, _postgres, load
from ._writebehind import ID_KINDS, ids, ratio_detail, ratio_spread
from .harness import (
    Cleanup,
    ExtraTable,
    Progress,
    Result,
    Run,
    Sizes,
    Trial,
    remove_db,
    rounds,
)
from .memory import child_report

TABLE = "bench_todo"
MINIMUM = 0.5  # of the native dump's / load's rows/s (issue 18)
FLAT_FACTOR = 1.5  # memory: 1M growth <= FLAT_FACTOR x the 100k growth + FLAT_MB
FLAT_MB = 16

EXPORT = "statekeep export"
IMPORT = "statekeep import"
SQLITE_DUMP = "sqlite3 .dump"
SQLITE_CSV = "sqlite3 .mode csv"
SQLITE_READ = "sqlite3 .read of the .dump"
SQLITE_IMPORT = "sqlite3 CREATE TABLE + .import --csv"
PG_DUMP = "pg_dump -t schema.bench_todo"
PSQL = "psql -f of the pg_dump"

_MB = 1024 * 1024


# -- running the native tools -----------------------------------------------------
def _tool(args: list[str], stdout: Any = subprocess.DEVNULL) -> None:
    """Runs a command-line tool; RuntimeError with its last words if it fails."""
    done = subprocess.run(args, stdout=stdout, stderr=subprocess.PIPE, text=True, check=False)
    if done.returncode != 0:
        said = (done.stderr.strip().splitlines() or ["(nothing on stderr)"])[-1]
        raise RuntimeError(f"{Path(args[0]).name} failed ({done.returncode}): {said}")


def _fresh(workdir: str, suffix: str) -> str:
    return f"{workdir}/dumps_{uuid.uuid4().hex[:12]}{suffix}"


def _count(path: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])
    finally:
        conn.close()


def _export_file(url: str, path: str) -> int:
    store = ops.open_existing(url)
    try:
        with open(path, "w", encoding="utf-8") as out:
            return ops.export(store, out).rows
    finally:
        store.close()


# -- trials shared by both backends ----------------------------------------------
def _export_trial(url: str, workdir: str, n: int, before: Callable[[], None]) -> Trial:
    """A trial of ops.export of url's collections into a fresh file."""

    def trial() -> tuple[Run, Cleanup]:
        out = _fresh(workdir, ".jsonl")
        before()
        store = ops.open_existing(url)
        got: list[int] = []

        def write() -> None:
            with open(out, "w", encoding="utf-8") as file:
                got.append(ops.export(store, file).rows)

        def cleanup() -> None:
            store.close()
            os.remove(out)
            if got != [n]:
                raise RuntimeError(f"statekeep exported {got} rows of {n}")

        return write, cleanup

    return trial


def _import_trial(dump: str, n: int, target: Callable[[], tuple[str, Callable[[], None]]]) -> Trial:
    """A trial of ops.import_dump of dump into the empty store target() names
    (target returns the URL and what removes it afterwards)."""

    def trial() -> tuple[Run, Cleanup]:
        url, remove = target()
        store = ops.open_quietly(url)
        got: list[ops.Imported] = []

        def read() -> None:
            with open(dump, encoding="utf-8") as lines:
                got.append(ops.import_dump(store, lines))

        def cleanup() -> None:
            try:
                stored = store.count(_models.BenchTodo)
            finally:
                store.close()
                remove()
            if not got or not got[0].complete or got[0].rows != n or stored != n:
                raise RuntimeError(f"statekeep import stored {stored} of {n} rows")

        return read, cleanup

    return trial


def _tool_trial(
    command: Callable[[str], list[str]],
    target: Callable[[], str],
    check: Callable[[str], None],
    *,
    to_file: bool,
) -> Trial:
    """A trial of a native tool: command(target()) run, its standard output
    into the target file when to_file; check(target) afterwards (untimed)."""

    def trial() -> tuple[Run, Cleanup]:
        path = target()
        args = command(path)

        def run() -> None:
            if to_file:
                with open(path, "wb") as out:
                    _tool(args, stdout=out)
            else:
                _tool(args)

        return run, lambda: check(path)

    return trial


def _judged(
    label: str,
    n: int,
    times: dict[str, list[float]],
    natives: tuple[str, ...],
    mine: str,
) -> list[Result]:
    """The rows of one direction: the faster native (by its median) is the
    limit; the others' ratios are taken per round against it."""
    limit = min(natives, key=lambda name: statistics.median(times[name]))
    reference = times[limit]

    def best(name: str) -> str:
        return f"best {n / min(times[name]):,.0f} rows/s"

    results = [
        Result(label, f"{limit} (limit)", n / statistics.median(reference), 1.0, detail=best(limit))
    ]
    for name in natives:
        if name != limit:
            spread = ratio_spread(reference, times[name])
            results.append(
                Result(
                    label,
                    name,
                    n / statistics.median(times[name]),
                    spread.median,
                    detail=best(name),
                )
            )
    spread = ratio_spread(reference, times[mine])
    results.append(
        Result(
            label,
            mine,
            n / statistics.median(times[mine]),
            spread.median,
            target=f">= {MINIMUM:.2f}x limit",
            passed=spread.median >= MINIMUM,
            detail=f"{ratio_detail(spread)}; {best(mine)}",
        )
    )
    return results


def _source(url: str, kind: str, n: int) -> None:
    with statekeep.open(url) as store:
        store.save_many(_models.entities(_models.field_rows(n), ids(kind, n)))


# -- SQLite --------------------------------------------------------------------------
def _sqlite(sizes: Sizes, workdir: str, progress: Progress, kind: str) -> list[Result]:
    n = sizes.save_many
    label_tail = f"{n:,} entities ({kind})"
    shell = shutil.which("sqlite3")
    if shell is None:
        why = "no sqlite3 command-line shell on PATH (apt-get install sqlite3)"
        return [Result(f"SQLite export / import {label_tail}", "skipped", detail=why)]
    source = _fresh(workdir, ".db")
    source_url = f"sqlite:///{source}"
    progress(f"dumps: {n:,} entities into SQLite ({kind})")
    _source(source_url, kind, n)
    # each contender's own dump of the source, for the imports (untimed)
    mine, sql, csv = (_fresh(workdir, suffix) for suffix in (".jsonl", ".sql", ".csv"))
    _export_file(source_url, mine)
    with open(sql, "wb") as out:
        _tool([shell, "-bail", source, f".dump {TABLE}"], stdout=out)
    csv_rows = [".headers off", ".mode csv", f"SELECT * FROM {TABLE}"]
    with open(csv, "wb") as out:
        _tool([shell, "-bail", source, *csv_rows], stdout=out)
    conn = sqlite3.connect(source)
    create = conn.execute("SELECT sql FROM sqlite_master WHERE name = ?", (TABLE,)).fetchone()[0]
    conn.close()

    def written(path: str) -> None:
        size = os.path.getsize(path)
        os.remove(path)
        if size == 0:
            raise RuntimeError(f"the sqlite3 shell wrote nothing to {path}")

    def loaded(path: str) -> None:
        stored = _count(path)
        remove_db(path)
        if stored != n:
            raise RuntimeError(f"the sqlite3 shell loaded {stored} of {n} rows")

    def new_file() -> tuple[str, Callable[[], None]]:
        path = _fresh(workdir, ".db")
        return f"sqlite:///{path}", lambda: remove_db(path)

    exports = {
        SQLITE_DUMP: _tool_trial(
            lambda _: [shell, "-bail", source, f".dump {TABLE}"],
            lambda: _fresh(workdir, ".sql"),
            written,
            to_file=True,
        ),
        SQLITE_CSV: _tool_trial(
            lambda _: [shell, "-bail", source, *csv_rows],
            lambda: _fresh(workdir, ".csv"),
            written,
            to_file=True,
        ),
        EXPORT: _export_trial(source_url, workdir, n, lambda: None),
    }
    imports = {
        SQLITE_READ: _tool_trial(
            lambda path: [shell, "-bail", path, f'.read "{sql}"'],
            lambda: _fresh(workdir, ".db"),
            loaded,
            to_file=False,
        ),
        SQLITE_IMPORT: _tool_trial(
            lambda path: [shell, "-bail", path, create, f'.import --csv "{csv}" {TABLE}'],
            lambda: _fresh(workdir, ".db"),
            loaded,
            to_file=False,
        ),
        IMPORT: _import_trial(mine, n, new_file),
    }
    outward = rounds(exports, sizes.wb_rounds, progress, f"dumps: SQLite export ({kind})")
    into = rounds(imports, sizes.wb_rounds, progress, f"dumps: SQLite import ({kind})")
    for path in (mine, sql, csv):
        os.remove(path)
    remove_db(source)
    return _judged(
        f"SQLite export {label_tail}", n, outward, (SQLITE_DUMP, SQLITE_CSV), EXPORT
    ) + _judged(f"SQLite import {label_tail}", n, into, (SQLITE_READ, SQLITE_IMPORT), IMPORT)


# -- PostgreSQL --------------------------------------------------------------------
def _database_url(url: str, database: str) -> str:
    parts = urlsplit(_postgres.server_url(url))
    return urlunsplit(parts._replace(path=f"/{database}"))


def _postgres_part(
    sizes: Sizes, workdir: str, progress: Progress, kind: str, url: str, restore: str
) -> list[Result]:
    n = sizes.save_many
    label_tail = f"{n:,} entities ({kind})"
    pg_dump, psql = _tools()
    server = _postgres.server_url(url)
    restore_url = _database_url(url, restore)
    made: list[str] = []  # the schemas statekeep imported into, dropped at the end
    with _postgres.fresh_schema(url) as schema, _postgres.connect(url, autocommit=True) as admin:
        source_url = _postgres.store_url(url, schema)
        progress(f"dumps: {n:,} entities into PostgreSQL ({kind})")
        _source(source_url, kind, n)
        mine, dumped = _fresh(workdir, ".jsonl"), _fresh(workdir, ".sql")
        _export_file(source_url, mine)
        pg_dump_args = [pg_dump, "-d", server, "-t", f'"{schema}".{TABLE}']
        _tool([*pg_dump_args, "-f", dumped])

        def settle() -> None:
            _postgres.settle(admin)

        def dump_file() -> str:
            settle()
            return _fresh(workdir, ".sql")

        def written(path: str) -> None:
            size = os.path.getsize(path)
            os.remove(path)
            if size == 0:
                raise RuntimeError("pg_dump wrote nothing")

        def empty_schema() -> str:
            with _postgres.connect(restore_url, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                conn.execute(f'CREATE SCHEMA "{schema}"')
            settle()
            return restore_url

        def restored(_: str) -> None:
            with _postgres.connect(restore_url, autocommit=True) as conn:
                got = conn.execute(f'SELECT count(*) FROM "{schema}".{TABLE}').fetchone()[0]
                conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
            if got != n:
                raise RuntimeError(f"psql loaded {got} of {n} rows")

        def new_schema() -> tuple[str, Callable[[], None]]:
            target = f"{schema}_in{len(made)}"
            made.append(target)
            admin.execute(f'CREATE SCHEMA "{target}"')
            settle()
            return _postgres.store_url(url, target), lambda: None

        exports = {
            PG_DUMP: _tool_trial(
                lambda path: [*pg_dump_args, "-f", path], dump_file, written, to_file=False
            ),
            EXPORT: _export_trial(source_url, workdir, n, settle),
        }
        psql_args = [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", dumped, "-d"]
        imports = {
            PSQL: _tool_trial(
                lambda target: [*psql_args, target], empty_schema, restored, to_file=False
            ),
            IMPORT: _import_trial(mine, n, new_schema),
        }
        try:
            out = rounds(exports, sizes.wb_rounds, progress, f"dumps: PostgreSQL export ({kind})")
            into = rounds(imports, sizes.wb_rounds, progress, f"dumps: PostgreSQL import ({kind})")
        finally:
            for target in made:
                admin.execute(f'DROP SCHEMA IF EXISTS "{target}" CASCADE')
            os.remove(mine)
            os.remove(dumped)
    return _judged(f"PostgreSQL export {label_tail}", n, out, (PG_DUMP,), EXPORT) + _judged(
        f"PostgreSQL import {label_tail}", n, into, (PSQL,), IMPORT
    )


def _tools() -> tuple[str, str]:
    pg_dump, psql = shutil.which("pg_dump"), shutil.which("psql")
    if pg_dump is None or psql is None:
        raise LookupError("pg_dump or psql not on PATH (apt-get install postgresql-client)")
    return pg_dump, psql


def _postgres_parts(
    sizes: Sizes, workdir: str, progress: Progress
) -> Iterator[tuple[str, list[Result]]]:
    """Both id kinds, with a database made for psql's restores (dropped after)."""
    import psycopg

    url = _postgres.configured_url()
    progress(f"dumps: connecting to PostgreSQL at {_postgres.where(url)}")
    label = "PostgreSQL export / import"
    problem = _postgres.problem(url)
    if problem is not None:
        why = f"{_postgres.where(url)}: {problem}; set {_postgres.VARIABLE}"
        yield "PostgreSQL", [Result(label, "skipped: no server", detail=why)]
        return
    try:
        _tools()
    except LookupError as exc:
        yield "PostgreSQL", [Result(label, "skipped: no client tools", detail=str(exc))]
        return
    restore = f"sk_bench_restore_{uuid.uuid4().hex[:12]}"
    try:
        with _postgres.connect(url, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{restore}"')
    except psycopg.Error as exc:
        why = f"cannot make a database for psql's restores: {str(exc).strip().splitlines()[0]}"
        yield "PostgreSQL", [Result(label, "skipped", detail=why)]
        return
    try:
        for kind in ID_KINDS:
            yield (
                f"PostgreSQL ({kind})",
                _postgres_part(sizes, workdir, progress, kind, url, restore),
            )
    finally:
        with _postgres.connect(url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{restore}" WITH (FORCE)')


# -- memory ----------------------------------------------------------------------------
def _child(args: list[str]) -> dict[str, Any]:
    """_dumps_child's JSON report for args (see memory.child_report)."""
    return child_report("benchmarks._dumps_child", *args)


def _memory(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    big = sizes.memory
    small = max(big // 10, 1)
    reports: dict[tuple[str, int], dict[str, Any]] = {}
    for n in (small, big):
        source, dump, target = (_fresh(workdir, suffix) for suffix in (".db", ".jsonl", ".db"))
        progress(f"dumps memory: {n:,} entities to export")
        with statekeep.open(f"sqlite:///{source}") as store:
            store.save_many(_models.stream(n))
        for what, args in (("export", [source, dump]), ("import", [dump, target])):
            progress(f"dumps memory: {what} of {n:,} entities in a child process")
            report = reports[what, n] = _child([what, *args])
            if report["rows"] != n:
                raise RuntimeError(f"the {what} child moved {report['rows']} of {n} rows")
            if what == "export":
                remove_db(source)
        os.remove(dump)
        remove_db(target)

    def growth(report: dict[str, Any]) -> float:
        return float(report["peak"] - (report["baseline"] or 0)) / _MB

    label = f"export / import {big:,} vs {small:,} entities: peak RSS"
    results = []
    for what in ("export", "import"):
        allowed = FLAT_FACTOR * growth(reports[what, small]) + FLAT_MB
        for n in (small, big):
            report = reports[what, n]
            detail = (
                f"peak {report['peak'] / _MB:.0f} MB, +{growth(report):.1f} MB over start, "
                f"{report['seconds']:.1f} s"
            )
            contender = f"statekeep {what}, {n:,} entities"
            ops_per_s = n / report["seconds"]
            if n == small:
                results.append(Result(label, contender, ops_per_s, detail=detail))
                continue
            results.append(
                Result(
                    label,
                    contender,
                    ops_per_s,
                    target=f"growth <= {FLAT_FACTOR}x {small:,}'s + {FLAT_MB} MB",
                    passed=growth(report) <= allowed,
                    detail=f"{detail}; allowed +{allowed:.1f} MB",
                )
            )
    return results


NOTE = (
    "Dumps: statekeep export / import against the database's own dump and load of the "
    "same table (sqlite3 .dump / .mode csv, .read / .import; pg_dump -t / psql -f), "
    "the faster native the limit, median of the rounds judged (see benchmarks/dumps.py)."
)


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result | ExtraTable]:
    results: list[Result | ExtraTable] = []
    loads: list[tuple[str, load.Load]] = []
    first = load.snapshot()

    def parts() -> Iterator[tuple[str, list[Result]]]:
        for kind in ID_KINDS:
            yield f"SQLite ({kind})", _sqlite(sizes, workdir, progress, kind)
        yield from _postgres_parts(sizes, workdir, progress)
        yield "memory (child processes)", _memory(sizes, workdir, progress)

    before = first
    for name, got in parts():
        loads.append((name, load.between(before, load.snapshot())))
        results.extend(got)
        before = load.snapshot()
    loads.append(("all of dumps", load.between(first, load.snapshot())))
    results.append(load.load_table("Dumps: the machine's other load during each part", loads, NOTE))
    return results
