"""`statekeep bench`: the installed statekeep against raw sqlite3, on this machine.

Each path runs side by side with its raw twin: sqlite3 doing the same work on
the same rows with statekeep's settings (WAL, synchronous=NORMAL), the same
table (its indexed column and that column's index) and the same pydantic work
(model_dump_json per entity to write, model_validate_json per row to read).
The reads read the very file statekeep wrote. The write-behind path's twin is
the raw bulk insert of the same rows: the limit of storing them at all.

Rounds interleave the two and alternate who goes first, each on fresh files
and objects after a garbage collection, so a noisy spell of the machine hits
both. The median round is reported, the best beside it; items/s are of the
median, and ratio = statekeep items/s / raw items/s (below 1: slower).

Peak memory is tracemalloc's peak of Python allocations during one more,
untimed statekeep run (tracing slows a run, so it is never the timed one).
SQLite's own page cache is allocated outside Python and is not counted.
"""

from __future__ import annotations

import gc
import itertools
import os
import platform
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import pydantic
from rich.table import Table

import statekeep

__all__ = ["BenchProgress", "BenchReport", "BenchRow", "bench_table", "run_bench"]

BenchProgress = Callable[[str, int, int], None]  # (step just done, done, total)
Run = Callable[[], int]  # the timed work; returns how many items it handled
Trial = Callable[[], tuple[Run, Callable[[], None]]]  # untimed: (run, cleanup)

MEMORY = (
    "peak memory: tracemalloc peak of Python allocations in one more, untimed "
    "statekeep run (SQLite's page cache not counted)"
)
_TABLE = "bench_item"
_RAW_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {_TABLE} (id TEXT PRIMARY KEY NOT NULL, "
    "version INTEGER NOT NULL, body TEXT NOT NULL, owner TEXT)",
    f"CREATE INDEX IF NOT EXISTS {_TABLE}__owner ON {_TABLE} (owner)",
)
_INSERT = f"INSERT INTO {_TABLE} (id, version, body, owner) VALUES (?, ?, ?, ?)"
_CHUNK = 1000  # rows per raw executemany, as statekeep chunks save_many
_TAGS = ("home", "work", "urgent", "later", "errand", "idea", "call", "read")
_EPOCH = datetime(2024, 1, 1, 9, 30)


class BenchItem(statekeep.Entity, collection=_TABLE):
    """Six fields, one of them indexed (a real column with an index)."""

    title: str
    owner: Annotated[str, statekeep.Indexed()]
    done: bool = False
    priority: int = 0
    tags: list[str]
    created: datetime


@dataclass(frozen=True)
class _Sizes:
    save_many: int
    save: int
    get: int
    stored: int  # rows the reads read from
    finds: int
    per_find: int  # rows each find returns
    enqueue: int
    rounds: int


_QUICK = _Sizes(2_000, 300, 2_000, 4_000, 100, 20, 2_000, rounds=3)
_FULL = _Sizes(20_000, 2_000, 5_000, 20_000, 250, 20, 10_000, rounds=5)


@dataclass(frozen=True)
class BenchRow:
    """One path: statekeep's figures, its raw twin's, and their ratio."""

    path: str
    items: int
    median_s: float
    best_s: float
    items_per_s: float  # items / median_s
    raw_median_s: float
    raw_best_s: float
    raw_items_per_s: float
    ratio: float  # items_per_s / raw_items_per_s: below 1, statekeep is slower
    peak_bytes: int

    @classmethod
    def of(cls, path: str, items: int, mine: list[float], raw: list[float], peak: int) -> BenchRow:
        median, raw_median = statistics.median(mine), statistics.median(raw)
        ops, raw_ops = items / median, items / raw_median
        return cls(
            path, items, median, min(mine), ops, raw_median, min(raw), raw_ops, ops / raw_ops, peak
        )


@dataclass(frozen=True)
class BenchReport:
    """The rows, and the machine they ran on (for a bug report)."""

    rows: tuple[BenchRow, ...]
    statekeep_version: str
    python_version: str
    sqlite_version: str
    pydantic_version: str
    platform: str
    cpu_count: int | None
    load_average: tuple[float, float, float] | None  # os.getloadavg() at the start
    total_seconds: float
    quick: bool
    rounds: int
    memory: str = MEMORY

    def context(self) -> str:
        load = (
            "n/a" if self.load_average is None else " ".join(f"{x:.2f}" for x in self.load_average)
        )
        return (
            f"statekeep {self.statekeep_version} · Python {self.python_version} · "
            f"SQLite {self.sqlite_version} · pydantic {self.pydantic_version} · {self.platform} · "
            f"{self.cpu_count or '?'} CPUs · load {load} at start · {self.total_seconds:.1f} s · "
            f"{'--quick, ' if self.quick else ''}median of {self.rounds} rounds · "
            f"ratio = statekeep items/s / raw sqlite3 items/s (below 1: slower) · {self.memory}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (`statekeep bench --json`)."""
        data = asdict(self)
        data["rows"] = [asdict(row) for row in self.rows]
        data["load_average"] = None if self.load_average is None else list(self.load_average)
        return data


def run_bench(
    *,
    quick: bool = False,
    directory: Path | None = None,
    progress: BenchProgress | None = None,
) -> BenchReport:
    """Runs every path and its raw twin on SQLite files in a temporary folder
    (inside directory, when given; removed after). progress(step, done, total)
    is called after each step, done counting up to total."""
    sizes = _QUICK if quick else _FULL
    load = _load_average()
    started = time.perf_counter()
    frozen = gc.get_freeze_count()
    gc.collect()
    gc.freeze()  # all there is now is never scanned again: each trial's collect is quick
    try:
        with tempfile.TemporaryDirectory(prefix="statekeep-bench-", dir=directory) as folder:
            rows = _run(sizes, _Files(Path(folder)), progress)
    finally:
        if not frozen:  # the caller's own freeze stays
            gc.unfreeze()
    return BenchReport(
        rows=tuple(rows),
        statekeep_version=_version(),
        python_version=f"{platform.python_version()} ({platform.python_implementation()})",
        sqlite_version=sqlite3.sqlite_version,
        pydantic_version=pydantic.VERSION,
        platform=platform.platform(),
        cpu_count=os.cpu_count(),
        load_average=load,
        total_seconds=time.perf_counter() - started,
        quick=quick,
        rounds=sizes.rounds,
    )


def bench_table(report: BenchReport) -> Table:
    table = Table(
        title="statekeep bench" + (" --quick" if report.quick else ""),
        caption=report.context(),
        caption_justify="left",
    )
    table.add_column("path")
    for header in ("items", "median s", "best s", "items/s", "raw items/s", "ratio", "peak memory"):
        table.add_column(header, justify="right")
    for row in report.rows:
        table.add_row(
            row.path,
            f"{row.items:,}",
            f"{row.median_s:.4f}",
            f"{row.best_s:.4f}",
            f"{row.items_per_s:,.0f}",
            f"{row.raw_items_per_s:,.0f}",
            f"{row.ratio:.2f}",
            _size(row.peak_bytes),
        )
    return table


# -- the paths ---------------------------------------------------------------------
def _run(sizes: _Sizes, files: _Files, progress: BenchProgress | None) -> list[BenchRow]:
    reads = files.name("read")
    owners = sizes.stored // sizes.per_find
    paths = [
        ("save_many, time-ordered ids", sizes.save_many, _save_many(files, sizes.save_many, False)),
        ("save_many, random uuid4 ids", sizes.save_many, _save_many(files, sizes.save_many, True)),
        ("save, a commit each", sizes.save, _save(files, sizes.save)),
        (f"get by id, of {sizes.stored:,}", sizes.get, _get(reads, sizes)),
        (f"find on an indexed field, {sizes.per_find} a query", sizes.finds * sizes.per_find,
         _find(reads, owners, sizes.finds)),
        ("enqueue + flush (write-behind)", sizes.enqueue, _enqueue(files, sizes.enqueue)),
    ]  # fmt: skip
    total = 1 + len(paths) * (2 * sizes.rounds + 1)
    done = itertools.count(1)

    def step(name: str) -> None:
        if progress is not None:
            progress(name, next(done), total)

    with statekeep.open(f"sqlite:///{reads}") as store:
        store.save_many(_Rows(sizes.stored, random_ids=False, owners=owners, seed=3).models())
    step(f"storing {sizes.stored:,} rows to read")
    rows = []
    for path, items, (mine, raw) in paths:
        times: dict[str, list[float]] = {"statekeep": [], "raw sqlite3": []}
        for round_ in range(sizes.rounds):  # who goes first alternates
            for who, trial in [("statekeep", mine), ("raw sqlite3", raw)][:: 1 - 2 * (round_ % 2)]:
                times[who].append(_timed(trial, items))
                step(f"{path}: {who}, round {round_ + 1} of {sizes.rounds}")
        peak = _peak(mine, items)
        step(f"{path}: peak memory")
        rows.append(BenchRow.of(path, items, times["statekeep"], times["raw sqlite3"], peak))
    return rows


def _save_many(files: _Files, n: int, random_ids: bool) -> tuple[Trial, Trial]:
    rows = _Rows(n, random_ids=random_ids)

    def mine() -> tuple[Run, Callable[[], None]]:
        path, models = files.name("save_many"), rows.models()
        store = _store(path)
        return lambda: store.save_many(models), _closing(store, path, n)

    def raw() -> tuple[Run, Callable[[], None]]:
        path, models = files.name("save_many"), rows.unchanged()
        conn = _raw(path, create=True)
        return lambda: _insert_all(conn, models), _closing_raw(conn, path, n)

    return mine, raw


def _save(files: _Files, n: int) -> tuple[Trial, Trial]:
    rows = _Rows(n, random_ids=False, seed=2)

    def mine() -> tuple[Run, Callable[[], None]]:
        path, models = files.name("save"), rows.models()
        store = _store(path)
        save = store.save

        def run() -> int:
            for model in models:
                save(model)
            return len(models)

        return run, _closing(store, path, n)

    def raw() -> tuple[Run, Callable[[], None]]:
        path, models = files.name("save"), rows.unchanged()
        conn = _raw(path, create=True, autocommit=False)  # sqlite3 begins before each INSERT
        execute, commit = conn.execute, conn.commit

        def run() -> int:
            for m in models:
                execute(_INSERT, (m.id, 1, m.model_dump_json(), m.owner))
                commit()
            return len(models)

        return run, _closing_raw(conn, path, n)

    return mine, raw


def _get(path: Path, sizes: _Sizes) -> tuple[Trial, Trial]:
    chosen: list[str] = []

    def wanted() -> list[str]:  # all different, so no cache can answer
        if not chosen:  # read once the file is written
            with closing(_raw(path)) as conn:
                ids = [id for (id,) in conn.execute(f"SELECT id FROM {_TABLE} ORDER BY id")]
            chosen.extend(random.Random(4).sample(ids, sizes.get))
        return chosen

    def mine() -> tuple[Run, Callable[[], None]]:
        store, ids = _store(path), wanted()
        get = store.get

        def run() -> int:
            return sum(1 for id in ids if get(BenchItem, id).id == id)

        return run, store.close

    def raw() -> tuple[Run, Callable[[], None]]:
        conn, ids = _raw(path), wanted()
        execute, load = conn.execute, BenchItem.model_validate_json
        select = f"SELECT body FROM {_TABLE} WHERE id = ?"

        def run() -> int:
            return sum(1 for id in ids if load(execute(select, (id,)).fetchone()[0]).id == id)

        return run, conn.close

    return mine, raw


def _find(path: Path, owners: int, finds: int) -> tuple[Trial, Trial]:
    wanted = [f"owner-{i}" for i in random.Random(5).sample(range(owners), finds)]

    def mine() -> tuple[Run, Callable[[], None]]:
        store = _store(path)
        find = store.find
        return lambda: sum(len(list(find(BenchItem, owner=o))) for o in wanted), store.close

    def raw() -> tuple[Run, Callable[[], None]]:
        conn = _raw(path)
        execute, load = conn.execute, BenchItem.model_validate_json
        select = f"SELECT body FROM {_TABLE} WHERE owner = ? ORDER BY id"  # statekeep's order

        def run() -> int:
            return sum(len([load(body) for (body,) in execute(select, (o,))]) for o in wanted)

        return run, conn.close

    return mine, raw


def _enqueue(files: _Files, n: int) -> tuple[Trial, Trial]:
    rows = _Rows(n, random_ids=False, seed=4)

    def mine() -> tuple[Run, Callable[[], None]]:
        path, models = files.name("enqueue"), rows.models()
        store = _store(path)
        warm = _Rows(1, random_ids=True, seed=6).models()[0]  # starts the engine, untimed
        if not store.enqueue(warm).wait_stored(30):
            raise RuntimeError("write-behind did not start within 30 s")
        store.delete(BenchItem, warm.id)
        enqueue = store.enqueue

        def run() -> int:
            for model in models:
                enqueue(model)
            if not store.flush(120):
                raise RuntimeError("write-behind did not drain within 120 s")
            return len(models)

        return run, _closing(store, path, n)

    def raw() -> tuple[Run, Callable[[], None]]:
        path, models = files.name("enqueue"), rows.unchanged()
        conn = _raw(path, create=True)
        return lambda: _insert_all(conn, models), _closing_raw(conn, path, n)

    return mine, raw


# -- timing, memory, files ---------------------------------------------------------
def _timed(trial: Trial, items: int) -> float:
    run, cleanup = trial()
    try:
        gc.collect()
        started = time.perf_counter()
        done = run()
        elapsed = time.perf_counter() - started
    finally:
        cleanup()
    _check(done, items)
    return max(elapsed, 1e-9)


def _peak(trial: Trial, items: int) -> int:
    run, cleanup = trial()
    tracing = tracemalloc.is_tracing()  # -X tracemalloc: keep the caller's tracing on
    try:
        gc.collect()
        if not tracing:
            tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        done = run()
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        if not tracing:
            tracemalloc.stop()
        cleanup()
    _check(done, items)
    return peak


def _check(done: int, items: int) -> None:
    if done != items:
        raise RuntimeError(f"a benchmark run handled {done} items, not {items}")


class _Files:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._numbers = itertools.count()

    def name(self, stem: str) -> Path:
        return self.folder / f"{stem}-{next(self._numbers)}.db"


def _remove(path: Path) -> None:
    """The database and all beside it: -wal, -shm, the write-behind journal."""
    for found in path.parent.glob(path.name + "*"):
        if found.is_dir():
            shutil.rmtree(found)
        else:
            found.unlink()


def _store(path: Path) -> statekeep.Store:
    store = statekeep.open(f"sqlite:///{path}")
    store.count(BenchItem)  # makes or checks the table before any clock starts
    return store


def _closing(store: statekeep.Store, path: Path, expected: int) -> Callable[[], None]:
    def cleanup() -> None:
        try:
            stored = store.count(BenchItem)
        finally:
            store.close()
            _remove(path)
        _check(stored, expected)

    return cleanup


def _raw(path: Path, *, create: bool = False, autocommit: bool = True) -> sqlite3.Connection:
    """A plain sqlite3 connection with statekeep's settings."""
    conn = sqlite3.connect(path, isolation_level=None if autocommit else "DEFERRED")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    if create:
        for sql in _RAW_SCHEMA:
            conn.execute(sql)
        conn.commit()
    return conn


def _closing_raw(conn: sqlite3.Connection, path: Path, expected: int) -> Callable[[], None]:
    def cleanup() -> None:
        try:
            (stored,) = conn.execute(f"SELECT count(*) FROM {_TABLE}").fetchone()
        finally:
            conn.close()
            _remove(path)
        _check(stored, expected)

    return cleanup


def _insert_all(conn: sqlite3.Connection, models: list[BenchItem]) -> int:
    """One transaction, a thousand rows an executemany (faster than one of all)."""
    conn.execute("BEGIN")
    for start in range(0, len(models), _CHUNK):
        rows = [(m.id, 1, m.model_dump_json(), m.owner) for m in models[start : start + _CHUNK]]
        conn.executemany(_INSERT, rows)
    conn.execute("COMMIT")
    return len(models)


class _Rows:
    """The same n entities for every trial of a path: ids and fields made once,
    models made afresh (a save sets their versions)."""

    def __init__(self, n: int, *, random_ids: bool, owners: int = 100, seed: int = 1) -> None:
        rng = random.Random(seed)
        self.fields = [_fields(i, rng, owners) for i in range(n)]
        if random_ids:
            self.ids = [uuid.UUID(int=rng.getrandbits(128), version=4).hex for _ in range(n)]
        else:  # time-ordered, from statekeep's own id factory
            factory = BenchItem.model_fields["id"].default_factory
            assert factory is not None
            self.ids = [factory() for _ in range(n)]  # type: ignore[call-arg]

        self._unchanged: list[BenchItem] = []

    def models(self) -> list[BenchItem]:
        return [BenchItem(id=id, **row) for id, row in zip(self.ids, self.fields, strict=True)]

    def unchanged(self) -> list[BenchItem]:
        """One list for every raw trial: raw sqlite3 changes no model."""
        if not self._unchanged:
            self._unchanged = self.models()
        return self._unchanged


def _fields(i: int, rng: random.Random, owners: int) -> dict[str, Any]:
    return {
        "title": f"item number {i}: buy milk and call the plumber",
        "owner": f"owner-{i % owners}",
        "done": i % 3 == 0,
        "priority": rng.randrange(5),
        "tags": rng.sample(_TAGS, 3),
        "created": _EPOCH + timedelta(seconds=i, microseconds=rng.randrange(1_000_000)),
    }


# -- the machine -------------------------------------------------------------------
def _version() -> str:
    try:
        return metadata.version("statekeep")
    except metadata.PackageNotFoundError:  # run from a source tree
        return statekeep.__version__


def _load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except (AttributeError, OSError):  # Windows has none
        return None


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = n / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
