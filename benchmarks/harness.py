"""What every benchmark shares: sizes, results, and interleaved best-of timing."""

from __future__ import annotations

import contextlib
import gc
import math
import os
import sqlite3
import statistics
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

# A trial is made untimed (fresh file, fresh objects) and returns the timed
# work and the clean-up: make() -> (run, cleanup).
Run = Callable[[], object]
Cleanup = Callable[[], None]
Trial = Callable[[], tuple[Run, Cleanup]]
Progress = Callable[[str], None]

RAW_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS {table} "
    "(id TEXT PRIMARY KEY NOT NULL, version INTEGER NOT NULL, body TEXT NOT NULL)"
)


@dataclass(frozen=True)
class Sizes:
    save_many: int = 100_000
    save: int = 10_000
    get: int = 10_000
    get_stored: int = 100_000  # rows in the table the gets read from
    memory: int = 1_000_000
    # PostgreSQL (skipped when no server answers) and files
    pg_save_many: int = 100_000
    pg_get: int = 10_000
    pg_get_stored: int = 100_000
    files_save_many: int = 10_000
    # statekeep.aio against the sync Store (SQLite, and PostgreSQL when a server answers)
    aio_get: int = 10_000
    aio_stored: int = 100_000  # rows in the table the gets read from
    aio_save_many: int = 100_000
    # statekeep.flow
    flow_calls: int = 200_000  # throttle acquires, retried calls, debounced calls
    flow_items: int = 200_000  # no-op items through a Batcher
    flow_store: int = 50_000  # entities through store.batcher, against save_many
    # statekeep.state (issue 14)
    state_keys: int = 100_000  # keys of the state's meters dict
    state_subscribers: int = 1_000  # subscriptions on keys the updates do not change
    state_updates: int = 20_000  # set() calls per round (of immutables' and pyrsistent's too)
    state_copies: int = 200  # dict.copy() + set per round
    state_batches: int = 200  # batches of 100 updates per round
    state_versions: int = 100  # versions measured for sharing and memory
    state_snapshots: int = 1_000  # compressions (and restores) of the studio state per round
    # statekeep.machines
    machine_sends: int = 200_000  # in-memory sends per round (transitions a quarter, psm 1/40)
    machine_entities: int = 100_000  # bound for memory; moved by transition_many
    machine_stored: int = 10_000  # store.send and store.save calls per round
    # events
    dispatch: int = 200_000  # events handed to the handlers
    dispatch_saves: int = 20_000  # save() calls with 0, 1 and 10 handlers
    durable: int = 20_000  # events through a durable subscription
    latency_saves: int = 500  # single saves, 2 ms apart
    outbox_rows: int = 100_000  # per save_many of the PostgreSQL outbox writers
    # write-behind (store.enqueue): every part runs wb_rounds rounds and
    # reports the median (the best round beside it)
    wb_rounds: int = 3
    enqueue_many: int = 100_000  # new entities / updates until stored, against save_many
    offered_rate: int = 50_000  # writes/s of the paced runs (enqueue and durable latency)
    offered_seconds: float = 1.0  # length of each paced run
    durable_sample: int = 10  # acknowledged -> durable: every n-th receipt is watched
    queue: int = 10_000  # against persist-queue, which is ~30x slower
    caller: int = 10_000  # against a loop of save() in the caller (a quarter when strict)
    curve_rates: tuple[int, ...] = (100, 1_000, 10_000, 50_000)
    curve_seconds: float = 1.0  # per offered rate
    repeats: int = 5
    slow_repeats: int = 3  # for SQLAlchemy and hand-written files: their ratios need less precision

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            save_many=2_000,
            save=500,
            get=500,
            get_stored=2_000,
            memory=20_000,
            pg_save_many=2_000,
            pg_get=500,
            pg_get_stored=2_000,
            files_save_many=300,
            aio_get=500,
            aio_stored=2_000,
            aio_save_many=2_000,
            flow_calls=4_000,
            flow_items=2_000,
            flow_store=1_000,
            state_keys=2_000,
            state_subscribers=100,
            state_updates=500,
            state_copies=20,
            state_batches=10,
            state_snapshots=10,
            machine_sends=4_000,
            machine_entities=2_000,
            machine_stored=300,
            dispatch=2_000,
            dispatch_saves=300,
            durable=300,
            latency_saves=20,
            outbox_rows=1_000,
            wb_rounds=2,
            enqueue_many=2_000,
            offered_seconds=0.05,
            durable_sample=5,
            queue=300,
            caller=500,
            curve_seconds=0.1,
            repeats=2,
            slow_repeats=1,
        )


@dataclass(frozen=True)
class Result:
    """One row of the table. ratio is ops/s relative to the benchmark's limit."""

    benchmark: str
    contender: str
    ops_per_s: float | None = None
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None  # None: no target on this row
    detail: str = ""  # what the target was judged on, when it is not the ratio


@dataclass(frozen=True)
class ExtraTable:
    """A table of figures that do not fit the results' columns, printed and
    written after the results (e.g. the write-behind batch-size curve)."""

    title: str
    headers: tuple[str, ...]
    rows: list[tuple[str, ...]]
    note: str = ""


def percentile(ordered: Sequence[int | float], fraction: float) -> float:
    """The nearest-rank percentile of already sorted values (fraction in [0, 1])."""
    if not ordered:
        return math.nan
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return float(ordered[rank - 1])


def raw_connection(path: str, *, autocommit: bool) -> sqlite3.Connection:
    """A plain sqlite3 connection with statekeep's settings: WAL, synchronous=NORMAL."""
    conn = sqlite3.connect(path, isolation_level=None if autocommit else "DEFERRED")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def remove_db(path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + suffix)


def best_of(
    trials: dict[str, Trial],
    sizes: Sizes,
    progress: Progress,
    label: str,
    slow: Collection[str] = (),
) -> dict[str, float]:
    """The best wall time of each trial over sizes.repeats rounds (the slow
    ones take part in the first sizes.slow_repeats rounds only): see rounds()."""
    times = rounds(trials, sizes.repeats, progress, label, slow, sizes.slow_repeats)
    return {name: min(seconds) for name, seconds in times.items()}


@dataclass(frozen=True)
class Timings:
    """Each trial's median and best wall time over its rounds, in seconds."""

    median: dict[str, float]
    best: dict[str, float]

    def ops(self, name: str, n: int) -> float:
        """Operations per second at the median round."""
        return n / self.median[name]


def medians_of(
    trials: dict[str, Trial],
    sizes: Sizes,
    progress: Progress,
    label: str,
    slow: Collection[str] = (),
) -> Timings:
    """The median (judged) and the best wall time of each trial over
    sizes.repeats rounds (the slow ones: sizes.slow_repeats): see rounds()."""
    times = rounds(trials, sizes.repeats, progress, label, slow, sizes.slow_repeats)
    return Timings(
        {name: statistics.median(seconds) for name, seconds in times.items()},
        {name: min(seconds) for name, seconds in times.items()},
    )


def median_target(
    benchmark: str,
    contender: str,
    timings: Timings,
    limit: str,
    n: int,
    minimum: float,
) -> Result:
    """contender's row judged on the median ratio to limit's median; the
    best-of ratio beside it."""
    ratio = timings.median[limit] / timings.median[contender]
    best = timings.best[limit] / timings.best[contender]
    return Result(
        benchmark,
        contender,
        timings.ops(contender, n),
        ratio,
        target=f">= {minimum:.2f}x limit (median)",
        passed=ratio >= minimum,
        detail=f"median {ratio:.2f}x, best-of {best:.2f}x",
    )


def median_row(benchmark: str, contender: str, timings: Timings, limit: str, n: int) -> Result:
    """A row without a target: ops/s and ratio at the median, best-of beside
    (the limit's row says it is the limit)."""
    if contender == limit:
        return Result(benchmark, f"{contender} (limit)", timings.ops(contender, n), 1.0)
    best = timings.best[limit] / timings.best[contender]
    return Result(
        benchmark,
        contender,
        timings.ops(contender, n),
        timings.median[limit] / timings.median[contender],
        detail=f"best-of {best:.2f}x",
    )


def times_faster(
    benchmark: str, contender: str, timings: Timings, limit: str, mine: str, n: int, times: float
) -> Result:
    """contender's row (an alternative, far slower), judged on statekeep
    (`mine`) being at least `times` as fast at the median."""
    over = timings.median[contender] / timings.median[mine]
    return Result(
        benchmark,
        contender,
        timings.ops(contender, n),
        timings.median[limit] / timings.median[contender],
        target=f"statekeep >= {times:g}x this",
        passed=over >= times,
        detail=f"statekeep is {over:.1f}x (medians)",
    )


def rounds(
    trials: dict[str, Trial],
    repeats: int,
    progress: Progress,
    label: str,
    slow: Collection[str] = (),
    slow_repeats: int | None = None,
) -> dict[str, list[float]]:
    """The wall time of each trial in each of repeats rounds (the slow ones
    take part in the first slow_repeats rounds only), in round order.

    Rounds interleave the contenders and rotate who goes first, so a slow
    spell of a noisy machine hits all of them, not one, and the times of one
    round can be paired. Every trial runs on fresh objects and files, after a
    full garbage collection."""
    times: dict[str, list[float]] = {name: [] for name in trials}
    names = list(trials)
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            if name in slow and slow_repeats is not None and round_ >= slow_repeats:
                continue
            progress(f"{label}: {name} (round {round_ + 1}/{repeats})")
            run, cleanup = trials[name]()
            gc.collect()
            start = time.perf_counter()
            run()
            elapsed = time.perf_counter() - start
            cleanup()
            del run, cleanup
            times[name].append(elapsed)
    return times


def ratio_target(
    benchmark: str,
    contender: str,
    ops: float,
    limit_ops: float,
    minimum: float,
) -> Result:
    ratio = ops / limit_ops
    return Result(
        benchmark,
        contender,
        ops,
        ratio,
        target=f">= {minimum:.2f}x limit",
        passed=ratio >= minimum,
    )


def micros(seconds: float) -> str:
    """A short time: microseconds below a millisecond, else milliseconds."""
    return f"{seconds * 1e6:.2f} us" if abs(seconds) < 1e-3 else f"{seconds * 1e3:.2f} ms"


class CallCosts:
    """Per-call costs from rounds() of loops: each trial's time a call,
    above the `baseline` trial's (the loop's own cost), median and best."""

    def __init__(self, times: dict[str, list[float]], calls: dict[str, int], baseline: str) -> None:
        per_call = {name: [t / calls[name] for t in seconds] for name, seconds in times.items()}
        self.median = {name: statistics.median(t) for name, t in per_call.items()}
        self.best = {name: min(t) for name, t in per_call.items()}
        self.baseline = baseline

    def cost(self, name: str, best: bool = False) -> float:
        figures = self.best if best else self.median
        return max(figures[name] - figures[self.baseline], 1e-12)

    def text(self, name: str) -> str:
        return f"{micros(self.cost(name))} a call (best {micros(self.cost(name, True))})"
