"""Write-behind under a paced load: enqueue()'s own time, acknowledged ->
durable, and batch size and latency by offered rate.

Paced, open loop: each producer thread has a schedule of send times (its
share of the offered rate, the threads staggered so the rate stays even),
sleeps until a write is due and writes at once when it is late; so a slow
call delays the calls after it, it does not lower the rate asked for. Each
enqueue() call is timed on its own with perf_counter_ns (the time a call
waited for its turn is not in it: the achieved rate shows how far the
schedule slipped). The entities made beforehand are frozen out of the garbage
collector (gc.freeze) while the producers run: they are the benchmark's, and
a producer making each just before enqueuing it would not keep them alive.

Acknowledged -> durable: every n-th receipt is watched by one thread that
looks at `receipt.durable` of all it watches every 0.2 ms (an attribute read,
no lock), from the moment its enqueue() returned until it reads True.
"""

from __future__ import annotations

import gc
import itertools
import statistics
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import statekeep
from statekeep.backends import Backend, open_backend, register_backend

from . import _models
from ._writebehind import (
    MODE_LABELS,
    MODES,
    NO_MODES,
    Shared,
    close_store,
    ms,
    open_store,
    runnable,
    us,
)
from .harness import ExtraTable, Progress, Result, Sizes, percentile

# issue 11: enqueue at 50k/s offered, from 1 and from 4 threads; durable p99
ONE_THREAD = {0.5: 4_000, 0.99: 20_000, 0.999: 100_000}  # ns by percentile
FOUR_THREADS = {0.99: 50_000, 0.999: 100_000}
DURABLE_P99 = 10_000_000  # ns
POLL = 0.0002  # s between looks at the watched receipts
_NAMES = {0.5: "p50", 0.99: "p99", 0.999: "p99.9"}


@dataclass
class Paced:
    """What one paced run measured (times in ns)."""

    latencies: list[int]  # of each enqueue() call, sorted
    offered: float  # writes/s achieved
    watched: list[int] = field(default_factory=list)  # enqueue -> stored/durable, sorted
    unresolved: int = 0  # watched receipts never seen durable (within 30 s)


def _pace(
    store: statekeep.Store,
    models: Sequence[_models.BenchTodo],
    interval: float,
    first_due: int,
    latencies: list[int],
    sent: list[tuple[int, int, statekeep.Receipt]],
    every: int,
) -> int:
    """Enqueues models one every interval ns from first_due on, each call
    timed; every every-th receipt goes to sent with the call's start and end
    (every=0: none). Returns when the last call ended."""
    enqueue, clock, sleep = store.enqueue, time.perf_counter_ns, time.sleep
    note, keep = latencies.append, sent.append
    end = first_due
    for i, model in enumerate(models):
        due = first_due + int(i * interval)
        now = clock()
        if due > now:
            sleep((due - now) / 1e9)
        start = clock()
        receipt = enqueue(model)
        end = clock()
        note(end - start)
        if every and i % every == 0:
            keep((start, end, receipt))
    return end


def _watch_stored(
    sent: list[tuple[int, int, statekeep.Receipt]], done: threading.Event, out: list[int]
) -> None:
    """Waits for the receipts in the order they were enqueued, from each
    call's start; every one found stored in one look gets the same time (one
    batch, one commit)."""
    at = 0
    while True:
        if at >= len(sent):
            if done.is_set() and at >= len(sent):  # done first: sent is complete then
                return
            time.sleep(POLL)
            continue
        sent[at][2].wait_stored(60)
        now = time.perf_counter_ns()
        while at < len(sent) and sent[at][2].stored:
            out.append(now - sent[at][0])
            at += 1


def _watch_durable(
    sent: list[tuple[int, int, statekeep.Receipt]], done: threading.Event, out: list[int]
) -> int:
    """Looks at every watched receipt not yet durable each POLL seconds;
    returns how many were never seen durable (failed, or not within 30 s
    of the last enqueue)."""
    watching: list[tuple[int, statekeep.Receipt]] = []
    seen = 0
    clock = time.perf_counter_ns
    give_up: int | None = None
    while True:
        finished = done.is_set()
        if seen < len(sent):
            fresh = sent[seen:]
            seen += len(fresh)
            watching.extend((end, receipt) for _, end, receipt in fresh)
        now = clock()
        waiting = []
        for end, receipt in watching:
            if receipt.durable:
                out.append(now - end)
            elif receipt.error is None:
                waiting.append((end, receipt))
        watching = waiting  # a failed receipt drops out: counted as never durable
        if finished and seen == len(sent):
            if not watching:
                return len(sent) - len(out)
            give_up = give_up or now + 30_000_000_000
            if now > give_up:
                return len(sent) - len(out)
        time.sleep(POLL)


def paced_run(
    store: statekeep.Store,
    models: list[_models.BenchTodo],
    rate: float,
    threads: int,
    *,
    watch: str | None = None,
    every: int = 1,
) -> Paced:
    """Offers models at rate writes/s from threads threads (thread k takes
    every threads-th model). watch="stored": also the time from each call's
    start until its receipt is stored; "durable": from every every-th call's
    return until its receipt is durable (the run ends once all are)."""
    interval = threads * 1e9 / rate
    slices = [models[k::threads] for k in range(threads)]
    latencies: list[list[int]] = [[] for _ in range(threads)]
    ends = [0] * threads
    sent: list[tuple[int, int, statekeep.Receipt]] = []
    watched: list[int] = []
    unresolved = [0]
    done = threading.Event()

    def offer(k: int) -> None:
        ends[k] = _pace(
            store,
            slices[k],
            interval,
            start + int(k * interval / threads),
            latencies[k],
            sent,
            every if watch else 0,
        )

    def watcher() -> None:
        if watch == "stored":
            _watch_stored(sent, done, watched)
        else:
            unresolved[0] = _watch_durable(sent, done, watched)

    workers = [threading.Thread(target=offer, args=(k,)) for k in range(threads)]
    if watch:
        workers.append(threading.Thread(target=watcher))
    gc.collect()
    gc.freeze()
    start = time.perf_counter_ns() + 20_000_000  # every thread is waiting by then
    try:
        for worker in workers:
            worker.start()
        for worker in workers[:threads]:
            worker.join()
        done.set()
        for worker in workers[threads:]:
            worker.join()
    finally:
        gc.unfreeze()
    offered = len(models) / ((max(ends) - start) / 1e9)
    return Paced(sorted(itertools.chain(*latencies)), offered, sorted(watched), unresolved[0])


def _judge(figures: dict[float, float], targets: dict[float, int]) -> tuple[bool, str]:
    """Each percentile beside its target: 'p99 12 us <= 20'."""
    parts = []
    for fraction, value in figures.items():
        name = _NAMES.get(fraction, "max")
        limit = targets.get(fraction)
        if limit is None:
            parts.append(f"{name} {us(value)}")
        else:
            sign = "<=" if value <= limit else ">"
            parts.append(f"{name} {us(value)} {sign} {limit / 1000:g}")
    return all(figures[f] <= limit for f, limit in targets.items()), ", ".join(parts)


def _target(targets: dict[float, int], unit: str = "us") -> str:
    scale = 1000 if unit == "us" else 1_000_000
    return ", ".join(f"{_NAMES[f]} <= {limit / scale:g} {unit}" for f, limit in targets.items())


# -- enqueue()'s own time at an offered load ----------------------------------------
def latency(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    rate = sizes.offered_rate
    n = max(int(rate * sizes.offered_seconds), 1)
    rows = _models.field_rows(n, seed=5)
    shared = Shared(lambda: _models.entities(rows), 0)
    names = (f"{workdir}/enqueue_latency_{i}.db" for i in itertools.count())
    configs = [(mode, threads) for mode in MODES if runnable(mode) for threads in (1, 4)]
    runs: dict[tuple[str, int], list[Paced]] = {config: [] for config in configs}
    for round_ in range(sizes.wb_rounds):
        shift = round_ % len(configs)
        for mode, threads in configs[shift:] + configs[:shift]:
            progress(
                f"write-behind: enqueue at {rate:,}/s from {threads} thread(s), "
                f"{MODE_LABELS[mode]} (round {round_ + 1}/{sizes.wb_rounds})"
            )
            path = next(names)
            store = open_store(path, mode)
            runs[mode, threads].append(paced_run(store, shared.take(), rate, threads))
            close_store(store, path, n)

    label = f"enqueue() at {rate:,} writes/s offered, paced: each call's own time"
    results = []
    for mode in MODES:
        for threads in (1, 4):
            targets = ONE_THREAD if threads == 1 else FOUR_THREADS
            who = (
                f"{MODE_LABELS[mode]}, 1 thread, {n:,} writes"
                if threads == 1
                else f"{MODE_LABELS[mode]}, 4 threads ({rate // 4:,}/s each), {n:,} writes"
            )
            measured = runs.get((mode, threads))
            if not measured:
                results.append(Result(label, who, target=_target(targets), detail=NO_MODES))
                continue
            figures = {
                fraction: statistics.median(percentile(p.latencies, fraction) for p in measured)
                for fraction in (0.5, 0.99, 0.999)
            }
            figures[1.0] = statistics.median(p.latencies[-1] for p in measured)
            passed, detail = _judge(figures, targets)
            best = min(percentile(p.latencies, 0.99) for p in measured)
            results.append(
                Result(
                    label,
                    who,
                    statistics.median(p.offered for p in measured),
                    target=_target(targets),
                    passed=passed,
                    detail=f"{detail}; median of {len(measured)} runs, best run p99 {us(best)}",
                )
            )
    return results


# -- acknowledged -> durable at an offered load ----------------------------------------
def durable(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    rate = sizes.offered_rate
    n = max(int(rate * sizes.offered_seconds), 1)
    every = sizes.durable_sample
    rows = _models.field_rows(n, seed=9)
    shared = Shared(lambda: _models.entities(rows), 0)
    names = (f"{workdir}/durable_{i}.db" for i in itertools.count())
    modes = [mode for mode in MODES if runnable(mode)]
    runs: dict[str, list[Paced]] = {mode: [] for mode in modes}
    for round_ in range(sizes.wb_rounds):
        shift = round_ % len(modes)
        for mode in modes[shift:] + modes[:shift]:
            progress(
                f"write-behind: acknowledged -> durable at {rate:,}/s, {MODE_LABELS[mode]} "
                f"(round {round_ + 1}/{sizes.wb_rounds})"
            )
            path = next(names)
            store = open_store(path, mode)
            runs[mode].append(
                paced_run(store, shared.take(), rate, 1, watch="durable", every=every)
            )
            close_store(store, path, n)

    label = (
        f"acknowledged -> durable at {rate:,} writes/s offered "
        f"(1 thread, every {every}th receipt watched)"
    )
    target = _target({0.99: DURABLE_P99}, "ms")
    results = []
    for mode in MODES:
        measured = runs.get(mode)
        if not measured:
            results.append(Result(label, MODE_LABELS[mode], target=target, detail=NO_MODES))
            continue
        p50 = statistics.median(percentile(p.watched, 0.5) for p in measured)
        p99 = statistics.median(percentile(p.watched, 0.99) for p in measured)
        top = statistics.median(p.watched[-1] if p.watched else 0 for p in measured)
        best = min(percentile(p.watched, 0.99) for p in measured)
        unresolved = sum(p.unresolved for p in measured)
        sign = "<=" if p99 <= DURABLE_P99 else ">"
        detail = (
            f"p50 {ms(p50)}, p99 {ms(p99)} {sign} {DURABLE_P99 / 1e6:g}, max {ms(top)}; "
            f"median of {len(measured)} runs, best run p99 {ms(best)}"
        )
        if unresolved:
            detail += f"; {unresolved} watched receipts never durable"
        results.append(
            Result(
                label,
                MODE_LABELS[mode],
                statistics.median(p.offered for p in measured),
                target=target,
                passed=p99 <= DURABLE_P99 and not unresolved,
                detail=detail,
            )
        )
    return results


# -- the curve: batch size and enqueue-to-stored latency by offered rate -------------
_COUNTED = "sqlite-counted"
_batch_logs: list[list[int]] = []


def _counted_sqlite(rest: str, options: dict[str, str]) -> Backend:
    """statekeep's own SQLite backend, its put() noting how many rows it got."""
    backend = open_backend(f"sqlite://{rest}", options)
    sizes: list[int] = []
    put = backend.put

    def counted_put(spec: object, rows: Sequence[object]) -> None:
        sizes.append(len(rows))
        put(spec, rows)  # type: ignore[arg-type]

    backend.put = counted_put  # type: ignore[method-assign]
    _batch_logs.append(sizes)
    return backend


register_backend(_COUNTED, _counted_sqlite)

CURVE_HEADERS = (
    "Offered writes/s",
    "Achieved",
    "Writes",
    "Mean batch",
    "Largest batch",
    "enqueue -> stored p50",
    "p99",
    "max",
    "enqueue() p99",
)


def curve(sizes: Sizes, workdir: str, progress: Progress) -> ExtraTable:
    table_rows: list[tuple[str, ...]] = []
    for i, rate in enumerate(sizes.curve_rates):
        n = max(int(rate * sizes.curve_seconds), 20)
        progress(f"write-behind curve: {rate:,} writes/s offered ({n:,} writes)")
        path = f"{workdir}/curve_{i}.db"
        models = _models.entities(_models.field_rows(n, seed=8))
        store = open_store(path, None, scheme=_COUNTED)
        batches = _batch_logs.pop()
        batches.clear()  # the warm-up write
        paced = paced_run(store, models, rate, 1, watch="stored")
        close_store(store, path, n)
        stored = paced.watched
        table_rows.append(
            (
                f"{rate:,}",
                f"{paced.offered:,.0f}",
                f"{n:,}",
                f"{statistics.fmean(batches):,.1f}" if batches else "",
                f"{max(batches, default=0):,}",
                ms(percentile(stored, 0.5)),
                ms(percentile(stored, 0.99)),
                ms(stored[-1]) if stored else "",
                us(percentile(paced.latencies, 0.99)),
            )
        )
    return ExtraTable(
        "Write-behind: batch size and latency by offered rate (NORMAL, one thread, "
        "default options)",
        CURVE_HEADERS,
        table_rows,
        note=(
            "Mean batch: rows per put() call the engine made on its backend (counted; "
            "empty if the engine stores through other calls). enqueue -> stored: from "
            "the enqueue() call to a watcher thread seeing the receipt stored. One run "
            "per rate."
        ),
    )
