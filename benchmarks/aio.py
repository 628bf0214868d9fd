"""statekeep.aio, the async facade, beside the sync Store it runs on.

Every async contender has its own event loop (an asyncio.Runner made in the
trial, untimed), its store or engine opened and warmed on it before the
clock starts; the timed part is only the gets or the save_many on that loop.
An AsyncStore runs the sync Store's calls on worker threads, so the sync
Store is the limit of each comparison: the figures say what the hop to the
worker and back costs.

get of N random ids (all different) from a table of stored entities, with
time-ordered ids (statekeep's own) and random uuid4 hex ids, on SQLite and
PostgreSQL (the server of _postgres.py; its rows say why when none answers):
- the limit: a loop of the sync `store.get`;
- `await store.get` one at a time;
- `asyncio.gather` of `store.get` BATCH at a time (no target: for reference);
- SQLAlchemy's async ORM, `AsyncSession.get` one at a time from one session,
  on `sqlite+aiosqlite://` (with statekeep's pragmas) or on
  `postgresql+psycopg://` (psycopg's async connection).
The warm-up before the clock: the stores count the table and get BATCH ids
outside the timed ones, the way the contender then reads (the gather
contender all at once, which starts every worker thread of the AsyncStore
and its connection); the ORM session checks its connection out with a
`SELECT 1`, as in get.py.

save_many of N new entities into an empty table, one transaction: the sync
`store.save_many(list)` (the limit) and `await store.save_many(list)`; on
SQLite also the async one with a probe task on the loop that sleeps 1 ms
again and again and records how late each wake-up was (the event-loop lag
while the save_many runs on its worker thread): p50, p99 and max of each
round, the median of the rounds judged, and an idle loop for a baseline
(the probed run's time includes the probe's last sleep, up to a few ms).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

import statekeep
import statekeep.aio

from . import _models, _orm, _postgres
from ._writebehind import ID_KINDS, ids
from .harness import (
    Cleanup,
    ExtraTable,
    Progress,
    Result,
    Run,
    Sizes,
    Trial,
    best_of,
    percentile,
    ratio_target,
    remove_db,
    rounds,
)

BATCH = 100  # gets per asyncio.gather
PROBE = 0.001  # the probe task's sleep, in seconds
LAG_P99_MS = 5.0

SYNC_GET = "statekeep get, sync Store (limit)"
AIO_GET = "statekeep.aio await get, one at a time"
AIO_GATHER = f"statekeep.aio get, {BATCH} at a time (asyncio.gather)"
SYNC_SAVE = "statekeep save_many, sync Store (limit)"
AIO_SAVE = "statekeep.aio await save_many"
RAW_ASYNC = "psycopg AsyncConnection SELECT + model_validate_json"
AIO_PROBED = "statekeep.aio await save_many, loop probed every 1 ms"
LAG = "a task sleeping 1 ms on the loop: how late it wakes"

model = _models.BenchTodo


@dataclass(frozen=True)
class Place:
    """Where a comparison runs: a SQLite file or a PostgreSQL schema."""

    store_url: str
    orm_name: str  # the SQLAlchemy contender
    orm_engine: Callable[[], AsyncEngine]  # made on the loop that uses it
    raw: Trial | None = None  # the raw async driver, where there is one (PostgreSQL)


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result | ExtraTable]:
    results: list[Result | ExtraTable] = []
    for number, kind in enumerate(ID_KINDS):
        results += sqlite_get(sizes, workdir, progress, kind, number)
    results += sqlite_save_many(sizes, workdir, progress)
    url = _postgres.configured_url()
    progress(f"aio, PostgreSQL: connecting to {_postgres.where(url)}")
    problem = _postgres.problem(url)
    if problem is not None:
        results.append(
            Result(
                "PostgreSQL aio get, save_many",
                "skipped: no server",
                detail=f"{_postgres.where(url)}: {problem}; set {_postgres.VARIABLE}",
            )
        )
        return results
    with _postgres.fresh_schema(url) as schema:
        for kind in ID_KINDS:
            results += postgres_get(sizes, url, schema, progress, kind)
        results += postgres_save_many(sizes, url, schema, progress)
    return results


# -- the trials ------------------------------------------------------------------
async def _open(url: str, warm: Sequence[str], together: bool) -> statekeep.aio.AsyncStore:
    """An AsyncStore with its table known and the warm ids read, as the
    contender will read: all at once (which starts every worker thread, each
    with its connection) or one at a time (one worker)."""
    store = await statekeep.aio.open(url)
    await store.count(model)
    if together:
        await asyncio.gather(*(store.get(model, id) for id in warm))
    else:
        for id in warm:
            await store.get(model, id)
    return store


def _sync_get(url: str, wanted: list[str], warm: Sequence[str]) -> tuple[Run, Cleanup]:
    store = statekeep.open(url)
    store.count(model)
    get = store.get
    for id in warm:
        get(model, id)

    def read() -> None:
        for id in wanted:
            get(model, id)

    return read, store.close


def _aio_get(
    url: str, wanted: list[str], warm: Sequence[str], batch: int | None
) -> tuple[Run, Cleanup]:
    """await get of each id, or a gather of batch gets at a time."""
    runner = asyncio.Runner()
    store = runner.run(_open(url, warm, together=batch is not None))
    get = store.get

    async def one_at_a_time() -> None:
        for id in wanted:
            await get(model, id)

    async def gathered(size: int) -> None:
        for start in range(0, len(wanted), size):
            await asyncio.gather(*(get(model, id) for id in wanted[start : start + size]))

    def cleanup() -> None:
        runner.run(store.close())
        runner.close()

    if batch is None:
        return lambda: runner.run(one_at_a_time()), cleanup
    return lambda: runner.run(gathered(batch)), cleanup


def _orm_get(make_engine: Callable[[], AsyncEngine], wanted: list[str]) -> tuple[Run, Cleanup]:
    runner = asyncio.Runner()
    engine = make_engine()
    session = AsyncSession(engine)
    runner.run(session.execute(sa.select(1)))  # the connection is checked out

    async def read() -> None:
        get = session.get
        for id in wanted:
            await get(_orm.OrmTodo, id)

    async def close() -> None:
        await session.close()
        await engine.dispose()

    def cleanup() -> None:
        runner.run(close())
        runner.close()

    return lambda: runner.run(read()), cleanup


def _raw_postgres_get(url: str, schema: str, wanted: list[str]) -> tuple[Run, Cleanup]:
    """psycopg's own async connection, a prepared SELECT per id: what any
    async layer over it can reach at most, one await at a time."""
    import psycopg
    from psycopg.types.string import TextLoader

    runner = asyncio.Runner()
    conn = runner.run(
        psycopg.AsyncConnection.connect(
            _postgres.server_url(url), autocommit=True, options=f"-c search_path={schema}"
        )
    )
    conn.adapters.register_loader("jsonb", TextLoader)  # bodies as JSON text, as statekeep's
    load = model.model_validate_json
    select = "SELECT body FROM bench_todo WHERE id = %s"

    async def read() -> None:
        execute = conn.execute
        for id in wanted:
            row = await (await execute(select, (id,), prepare=True)).fetchone()
            assert row is not None
            load(row[0])

    def cleanup() -> None:
        runner.run(conn.close())
        runner.close()

    return lambda: runner.run(read()), cleanup


def _get_trials(place: Place, wanted: list[str], warm: Sequence[str]) -> dict[str, Trial]:
    url = place.store_url
    trials: dict[str, Trial] = {
        SYNC_GET: lambda: _sync_get(url, wanted, warm),
        AIO_GET: lambda: _aio_get(url, wanted, warm, None),
        AIO_GATHER: lambda: _aio_get(url, wanted, warm, BATCH),
        place.orm_name: lambda: _orm_get(place.orm_engine, wanted),
    }
    if place.raw is not None:
        trials[RAW_ASYNC] = place.raw
    return trials


def _get_rows(label: str, place: Place, n: int, best: dict[str, float]) -> list[Result]:
    ops = {name: n / seconds for name, seconds in best.items()}
    orm = place.orm_name
    over_orm = ops[AIO_GET] / ops[orm]
    detail = f"statekeep.aio one at a time is {over_orm:.1f}x"
    rows = [
        Result(label, SYNC_GET, ops[SYNC_GET], 1.0),
        ratio_target(label, AIO_GET, ops[AIO_GET], ops[SYNC_GET], 0.5),
        Result(label, AIO_GATHER, ops[AIO_GATHER], ops[AIO_GATHER] / ops[SYNC_GET]),
    ]
    if RAW_ASYNC in ops:  # the driver's own async ceiling, for the 5x target's sake
        rows.append(Result(label, RAW_ASYNC, ops[RAW_ASYNC], ops[RAW_ASYNC] / ops[SYNC_GET]))
        detail += f"; the raw async driver itself is {ops[RAW_ASYNC] / ops[orm]:.1f}x"
    rows.append(
        Result(
            label,
            orm,
            ops[orm],
            ops[orm] / ops[SYNC_GET],
            target="statekeep.aio >= 5x this",
            passed=over_orm >= 5,
            detail=detail,
        )
    )
    return rows


def _sync_save(url: str, models: list[_models.BenchTodo], cleanup: Cleanup) -> tuple[Run, Cleanup]:
    store = statekeep.open(url)
    store.count(model)  # the table exists, as for the others

    def write() -> None:
        _saved(store.save_many(models), len(models))

    def close() -> None:
        store.close()
        cleanup()

    return write, close


def _aio_save(
    url: str,
    models: list[_models.BenchTodo],
    cleanup: Cleanup,
    lags: list[list[float]] | None = None,
) -> tuple[Run, Cleanup]:
    """await save_many; with lags, a probe runs on the loop meanwhile and its
    lags (seconds) are appended to lags as one list."""
    runner = asyncio.Runner()
    store = runner.run(_open(url, (), together=False))

    async def write() -> None:
        _saved(await store.save_many(models), len(models))

    async def probed(found: list[float]) -> None:
        async with _probe(found):
            await write()

    def run() -> None:
        if lags is None:
            runner.run(write())
        else:
            found: list[float] = []
            runner.run(probed(found))
            lags.append(found)

    def close() -> None:
        runner.run(store.close())
        runner.close()
        cleanup()

    return run, close


def _saved(saved: int, expected: int) -> None:
    if saved != expected:
        raise RuntimeError(f"save_many stored {saved} of {expected} entities")


@asynccontextmanager
async def _probe(lags: list[float]) -> AsyncIterator[None]:
    """A task on the running loop that sleeps PROBE seconds again and again,
    appending each overshoot (wake-up - PROBE) to lags, until the block ends
    (its last sleep, begun in the block, is counted). The wake-up is late by
    whatever kept the loop from running: its timer's resolution, work done on
    the loop, or the GIL held by another thread."""
    stop = False

    async def probe() -> None:
        clock, sleep = time.perf_counter, asyncio.sleep
        while not stop:
            start = clock()
            await sleep(PROBE)
            lags.append(clock() - start - PROBE)

    task = asyncio.get_running_loop().create_task(probe())
    await asyncio.sleep(0)  # the probe is asleep before the block's work starts
    try:
        yield
    finally:
        stop = True
        await task


async def _idle(seconds: float, lags: list[float]) -> None:
    async with _probe(lags):
        await asyncio.sleep(seconds)


# -- SQLite ----------------------------------------------------------------------
def _sqlite_engine(path: str) -> Callable[[], AsyncEngine]:
    """sqlite+aiosqlite on path, with statekeep's pragmas (WAL, synchronous=NORMAL)."""

    def make() -> AsyncEngine:
        eng = create_async_engine(f"sqlite+aiosqlite:///{path}")

        @event.listens_for(eng.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return eng

    return make


def sqlite_get(
    sizes: Sizes, workdir: str, progress: Progress, kind: str, number: int
) -> list[Result]:
    n, stored = sizes.aio_get, sizes.aio_stored
    progress(f"aio get: storing {stored:,} entities to read ({kind})")
    rows = _models.field_rows(stored, seed=3)
    keys = ids(kind, stored)
    path, orm_path = f"{workdir}/aio_get_{number}.db", f"{workdir}/aio_get_orm_{number}.db"
    with statekeep.open(f"sqlite:///{path}") as store:
        store.save_many(_models.entities(rows, keys))
    engine = _orm.engine(orm_path)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(_orm.OrmTodo),
            [{"id": id, "version": 1, **row} for id, row in zip(keys, rows, strict=True)],
        )
    engine.dispose()
    del rows
    wanted, warm = _sample(keys, n)
    place = Place(
        f"sqlite:///{path}",
        "SQLAlchemy async ORM AsyncSession.get (aiosqlite)",
        _sqlite_engine(orm_path),
    )
    try:
        best = best_of(
            _get_trials(place, wanted, warm),
            sizes,
            progress,
            f"aio get ({kind})",
            slow=(place.orm_name,),
        )
    finally:
        remove_db(path)
        remove_db(orm_path)
    return _get_rows(f"aio get {n:,} random of {stored:,} ({kind})", place, n, best)


def _sample(keys: list[str], n: int) -> tuple[list[str], list[str]]:
    """n distinct ids to get, and BATCH other stored ids for the warm-up."""
    chosen = random.Random(4).sample(keys, n + BATCH)
    return chosen[:n], chosen[n:]


def sqlite_save_many(sizes: Sizes, workdir: str, progress: Progress) -> list[Result | ExtraTable]:
    n = sizes.aio_save_many
    rows = _models.field_rows(n)
    keys = _models.new_ids(n)
    names = (f"{workdir}/aio_save_many_{i}.db" for i in itertools.count())
    lags: list[list[float]] = []

    def trial(
        make: Callable[[str, list[_models.BenchTodo], Cleanup], tuple[Run, Cleanup]],
    ) -> Trial:
        def fresh() -> tuple[Run, Cleanup]:
            path = next(names)
            return make(f"sqlite:///{path}", _models.entities(rows, keys), lambda: remove_db(path))

        return fresh

    times = rounds(
        {
            SYNC_SAVE: trial(_sync_save),
            AIO_SAVE: trial(_aio_save),
            AIO_PROBED: trial(lambda url, models, done: _aio_save(url, models, done, lags)),
        },
        sizes.repeats,
        progress,
        "aio save_many",
    )
    best = {name: min(seconds) for name, seconds in times.items()}  # as best_of
    ops = {name: n / seconds for name, seconds in best.items()}
    label = f"aio save_many {n:,}"
    results: list[Result | ExtraTable] = [
        Result(label, SYNC_SAVE, ops[SYNC_SAVE], 1.0),
        ratio_target(label, AIO_SAVE, ops[AIO_SAVE], ops[SYNC_SAVE], 0.8),
        Result(label, AIO_PROBED, ops[AIO_PROBED], ops[AIO_PROBED] / ops[SYNC_SAVE]),
    ]

    progress("aio save_many: the probe on an idle loop")
    idle: list[float] = []
    with asyncio.Runner() as runner:
        runner.run(_idle(statistics.median(times[AIO_PROBED]), idle))
    results += _lag(label, lags, idle)
    return results


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.2f}"


def _lag(label: str, lags: list[list[float]], idle: list[float]) -> list[Result | ExtraTable]:
    """The judged row (median over the rounds of each figure) and the table of rounds."""
    runs = [sorted(found) for found in lags if found]
    if not runs:
        return [Result(f"{label}: event-loop lag", LAG, detail="no probe wake-ups recorded")]
    figures = [(percentile(r, 0.5), percentile(r, 0.99), r[-1]) for r in runs]
    p50, p99, top = (statistics.median(f[i] for f in figures) for i in range(3))
    passed = p99 * 1000 <= LAG_P99_MS
    sign = "<=" if passed else ">"
    best = min(f[1] for f in figures)
    target = f"p99 <= {LAG_P99_MS:g} ms"
    row = Result(
        f"{label}: event-loop lag",
        LAG,
        target=target,
        passed=passed,
        detail=(
            f"p50 {_ms(p50)} ms, p99 {_ms(p99)} ms {sign} {LAG_P99_MS:g}, max {_ms(top)} ms; "
            f"median of {len(runs)} rounds, best round p99 {_ms(best)} ms"
        ),
    )

    def verdict(value: float) -> str:
        return "PASS" if value * 1000 <= LAG_P99_MS else "FAIL"

    table_rows: list[tuple[str, ...]] = [
        (f"round {i}", f"{len(r):,}", _ms(a), _ms(b), _ms(c), verdict(b))
        for i, (r, (a, b, c)) in enumerate(zip(runs, figures, strict=True), 1)
    ]
    table_rows.append(
        ("median of the rounds", "", _ms(p50), _ms(p99), _ms(top), "PASS" if passed else "FAIL")
    )
    if idle:
        quiet = sorted(idle)
        table_rows.append(
            (
                "idle loop, as long (baseline)",
                f"{len(quiet):,}",
                _ms(percentile(quiet, 0.5)),
                _ms(percentile(quiet, 0.99)),
                _ms(quiet[-1]),
                "",
            )
        )
    table = ExtraTable(
        f"{label.replace('aio ', 'statekeep.aio: ', 1)} on SQLite: event-loop lag",
        ("while", "wake-ups", "p50 ms", "p99 ms", "max ms", target),
        table_rows,
        note=(
            "A task on the loop sleeps 1 ms again and again while await save_many runs on its "
            "worker thread; lag = wake-up - 1 ms. A thread waiting for the GIL asks the holder "
            f"for it after sys.getswitchinterval() = {sys.getswitchinterval() * 1000:g} ms."
        ),
    )
    return [row, table]


# -- PostgreSQL ------------------------------------------------------------------
def _postgres_engine(url: str, schema: str) -> Callable[[], AsyncEngine]:
    """postgresql+psycopg (psycopg's async connection), its tables in schema."""

    def make() -> AsyncEngine:
        address = sa.engine.make_url(url).set(drivername="postgresql+psycopg")
        return create_async_engine(address, connect_args={"options": f"-c search_path={schema}"})

    return make


def postgres_save_many(sizes: Sizes, url: str, schema: str, progress: Progress) -> list[Result]:
    n = sizes.aio_save_many
    rows = _models.field_rows(n)
    keys = _models.new_ids(n)
    address = _postgres.store_url(url, schema)
    with statekeep.open(address) as store:  # the table exists before any run
        store.save(model(**_models.fields(-1, random.Random(0))))
    admin = _postgres.connect(url, autocommit=True)  # empties the table between runs

    def trial(
        make: Callable[[str, list[_models.BenchTodo], Cleanup], tuple[Run, Cleanup]],
    ) -> Trial:
        def fresh() -> tuple[Run, Cleanup]:
            admin.execute(f'TRUNCATE "{schema}".bench_todo')
            _postgres.settle(admin)
            return make(address, _models.entities(rows, keys), lambda: None)

        return fresh

    try:
        best = best_of(
            {SYNC_SAVE: trial(_sync_save), AIO_SAVE: trial(_aio_save)},
            sizes,
            progress,
            "PostgreSQL aio save_many",
        )
    finally:
        admin.close()
    ops = {name: n / seconds for name, seconds in best.items()}
    label = f"PostgreSQL aio save_many {n:,}"
    return [
        Result(label, SYNC_SAVE, ops[SYNC_SAVE], 1.0),
        ratio_target(label, AIO_SAVE, ops[AIO_SAVE], ops[SYNC_SAVE], 0.8),
    ]


def postgres_get(
    sizes: Sizes, url: str, schema: str, progress: Progress, kind: str
) -> list[Result]:
    n, stored = sizes.aio_get, sizes.aio_stored
    progress(f"PostgreSQL aio get: storing {stored:,} entities to read ({kind})")
    rows = _models.field_rows(stored, seed=3)
    keys = ids(kind, stored)
    address = _postgres.store_url(url, schema)
    with statekeep.open(address) as store:
        store.save(model(**_models.fields(-1, random.Random(0))))  # the table exists
        with _postgres.connect(url, autocommit=True) as admin:
            admin.execute(f'TRUNCATE "{schema}".bench_todo')  # what the last part left
        store.save_many(_models.entities(rows, keys))
    del rows
    engine = _orm.postgres_engine(url, schema)  # makes the ORM's table
    try:
        _orm.copy_stored(engine)  # the same entities in the ORM's table
    finally:
        engine.dispose()
    wanted, warm = _sample(keys, n)
    place = Place(
        address,
        "SQLAlchemy async ORM AsyncSession.get (psycopg async)",
        _postgres_engine(url, schema),
        lambda: _raw_postgres_get(url, schema, wanted),
    )
    best = best_of(
        _get_trials(place, wanted, warm),
        sizes,
        progress,
        f"PostgreSQL aio get ({kind})",
        slow=(place.orm_name,),
    )
    return _get_rows(f"PostgreSQL aio get {n:,} random of {stored:,} ({kind})", place, n, best)
