"""Events: in-process dispatch against blinker, and durable subscriptions.

1. Dispatch: the same committed event handed to 1 and to 10 plain handlers,
   by statekeep's bus (the call `save()` makes after its commit) and by
   blinker's `Signal.send` (what a user would otherwise connect the same
   handlers to). Target: statekeep's dispatch no slower than blinker's.
   For orientation, the whole cost a listener adds to a `save()` (making the
   event and dispatching it; the event's own copy of the entity is made from
   the stored JSON only if a handler reads `event.entity`) is a second
   table: save() into memory:// with 0, 1 and 10 handlers, median and best.
   Target (issue 19): a save() into a SQLite file with 1 listener that reads
   only `event.entity_id` costs at most 3 us more than one with none, judged
   on the medians of interleaved rounds.
2. Durable subscriptions on SQLite and PostgreSQL: N entities saved with
   save_many into a store opened with outbox=True, then the time until a
   durable subscription (another Store on the same database) has handled
   every event (events/s from commit to handler); and the delivery latency
   of single saves 2 ms apart, from just before save() to the handler (p50,
   p99), for a subscriber in this process (woken by the commit) -- the
   figures for another process (polling on SQLite, LISTEN/NOTIFY on
   PostgreSQL) are in docs/events.md.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import statekeep

from . import _models, _postgres
from .harness import (
    ExtraTable,
    Progress,
    Result,
    Sizes,
    Trial,
    best_of,
    medians_of,
    percentile,
)

DISPATCH = "event dispatch, {n} handler{s}"
STATEKEEP = "statekeep bus (what save() runs after commit)"
BLINKER = "blinker Signal.send (reference)"


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result | ExtraTable]:
    results: list[Result | ExtraTable] = []
    for handlers in (1, 10):
        results.extend(_dispatch(sizes, progress, handlers))
    results.append(_save_overhead(sizes, progress))
    results.extend(_listener_cost(sizes, progress))
    results.extend(_durable(sizes, progress))
    return results


def _noop(event: Any) -> None:
    pass


def _dispatch(sizes: Sizes, progress: Progress, handlers: int) -> list[Result]:
    from blinker import Signal

    n = sizes.dispatch
    store = statekeep.open("memory://")
    for _ in range(handlers):
        store.on(_models.BenchTodo.Created, _noop)
    bus = store.bus
    todo = _models.entities(_models.field_rows(1, seed=5), _models.new_ids(1))[0]
    event = _models.BenchTodo.Created.made("bench_todo", todo.id, 1, entity=todo)
    batch = [event]
    signal = Signal()
    receivers = [lambda sender, **kwargs: None for _ in range(handlers)]
    for receiver in receivers:
        signal.connect(receiver, weak=False)

    def statekeep_trial() -> tuple[Callable[[], object], Callable[[], None]]:
        dispatch = bus.dispatch

        def work() -> None:
            for _ in range(n):
                dispatch(batch)

        return work, lambda: None

    def blinker_trial() -> tuple[Callable[[], object], Callable[[], None]]:
        send = signal.send

        def work() -> None:
            for _ in range(n):
                send(todo, event=event)

        return work, lambda: None

    label = DISPATCH.format(n=handlers, s="" if handlers == 1 else "s")
    best = best_of({STATEKEEP: statekeep_trial, BLINKER: blinker_trial}, sizes, progress, label)
    store.close()
    ours, theirs = n / best[STATEKEEP], n / best[BLINKER]
    return [
        Result(label, BLINKER, theirs, 1.0),
        Result(
            label,
            STATEKEEP,
            ours,
            ours / theirs,
            target=">= 1.00x blinker",
            passed=ours >= theirs,
        ),
    ]


def _entity_id(event: Any) -> str:
    return str(event.entity_id)


def _save_trial(url: str, n: int, handlers: int, handler: Callable[[Any], Any]) -> Trial:
    """n saves of new entities into a fresh store at url (a SQLite file: a
    fresh file in a folder of its own), with `handlers` subscriptions."""
    rows = _models.field_rows(n, seed=6)

    def trial() -> tuple[Callable[[], object], Callable[[], None]]:
        folder = tempfile.mkdtemp(prefix="statekeep-bench-events-")
        store = statekeep.open(url.format(folder=folder))
        for _ in range(handlers):
            store.on(_models.BenchTodo, handler)
        store.count(_models.BenchTodo)  # the table made before the timing
        models = _models.entities(rows, _models.new_ids(n))
        save = store.save

        def work() -> None:
            for model in models:
                save(model)

        def cleanup() -> None:
            store.close()
            shutil.rmtree(folder, ignore_errors=True)

        return work, cleanup

    return trial


def _save_overhead(sizes: Sizes, progress: Progress) -> ExtraTable:
    """save() into memory:// with 0, 1 and 10 no-op handlers of
    BenchTodo.Created, interleaved: us per save, median and best."""
    n = sizes.dispatch_saves
    counts = (0, 1, 10)
    trials = {f"{h} handlers": _save_trial("memory://", n, h, _noop) for h in counts}
    timings = medians_of(trials, sizes, progress, "save() into memory:// with 0, 1, 10 handlers")
    median = {h: timings.median[f"{h} handlers"] / n * 1e6 for h in counts}
    best = {h: timings.best[f"{h} handlers"] / n * 1e6 for h in counts}
    table_rows: list[tuple[str, ...]] = [
        (
            f"{h}",
            f"{median[h]:.1f}",
            f"{median[h] - median[0]:+.1f}",
            f"{best[h]:.1f}",
            f"{best[h] - best[0]:+.1f}",
        )
        for h in counts
    ]
    return ExtraTable(
        "save() into memory:// with in-process handlers",
        (
            "handlers",
            "us per save (median)",
            "added (median)",
            "us per save (best)",
            "added (best)",
        ),
        table_rows,
        note="The added time is making the event (its entity is made from the stored JSON "
        "only when a handler reads event.entity: these handlers do not) and the dispatch "
        "measured above.",
    )


LISTENER = "save() with 1 listener reading only event.entity_id, SQLite file"
NONE, ONE = "save(), no listener", "save(), 1 listener (event.entity_id)"
ADDED_LIMIT_US = 3.0


def _listener_cost(sizes: Sizes, progress: Progress) -> list[Result]:
    """What one listener that reads only ids adds to a save() into a SQLite
    file (issue 19): judged on the medians, <= +3 us a save over none."""
    n = sizes.dispatch_saves
    url = "sqlite:///{folder}/events.db"
    trials = {
        NONE: _save_trial(url, n, 0, _entity_id),
        ONE: _save_trial(url, n, 1, _entity_id),
    }
    timings = medians_of(trials, sizes, progress, LISTENER)
    none_us, one_us = (timings.median[name] / n * 1e6 for name in (NONE, ONE))
    best_none, best_one = (timings.best[name] / n * 1e6 for name in (NONE, ONE))
    added = one_us - none_us
    return [
        Result(
            LISTENER,
            NONE,
            timings.ops(NONE, n),
            1.0,
            detail=f"median {none_us:.1f} us, best {best_none:.1f} us a save",
        ),
        Result(
            LISTENER,
            ONE,
            timings.ops(ONE, n),
            timings.median[NONE] / timings.median[ONE],
            target=f"<= +{ADDED_LIMIT_US:.0f} us a save over none (median)",
            passed=added <= ADDED_LIMIT_US,
            detail=f"median {one_us:.1f} us ({added:+.1f} us), "
            f"best {best_one:.1f} us ({best_one - best_none:+.1f} us) a save",
        ),
    ]


@contextlib.contextmanager
def _sqlite_url() -> Iterator[str | None]:
    with tempfile.TemporaryDirectory(prefix="statekeep-bench-events-") as folder:
        yield f"sqlite:///{Path(folder) / 'events.db'}"


@contextlib.contextmanager
def _postgres_url() -> Iterator[str | None]:
    url = _postgres.configured_url()
    if _postgres.problem(url) is not None:
        yield None
        return
    with _postgres.fresh_schema(url) as schema:
        yield _postgres.store_url(url, schema)


def _durable(sizes: Sizes, progress: Progress) -> list[Result | ExtraTable]:
    results: list[Result | ExtraTable] = []
    latency_rows: list[tuple[str, ...]] = []
    for name, make_url in (("SQLite", _sqlite_url), ("PostgreSQL", _postgres_url)):
        with make_url() as url:
            label = f"durable subscription, {name}, {sizes.durable:,} events"
            if url is None:
                results.append(Result(label, "skipped: no server", detail="no PostgreSQL"))
                continue
            progress(f"{label}: throughput")
            rate = _throughput(url, sizes.durable)
            results.append(Result(label, "statekeep: commit to handler", rate))
            progress(f"durable subscription, {name}: latency")
            p50, p99 = _latency(url, sizes.latency_saves)
            latency_rows.append((name, f"{sizes.latency_saves}", f"{p50:.2f}", f"{p99:.2f}"))
    results.append(
        ExtraTable(
            "Durable subscription delivery latency (subscriber in this process)",
            ("backend", "saves, 2 ms apart", "p50 ms", "p99 ms"),
            latency_rows,
            note="From just before save() to the durable handler, the save's own commit "
            "included. A subscriber in another process: see docs/events.md.",
        )
    )
    return results


def _throughput(url: str, n: int) -> float:
    writer = statekeep.open(url, outbox=True, outbox_retention=None)
    reader = statekeep.open(url, outbox=True, outbox_retention=None)
    try:
        writer.count(_models.BenchTodo)
        models = _models.entities(_models.field_rows(n, seed=7), _models.new_ids(n))
        done = threading.Event()
        seen = 0

        def handler(event: Any) -> None:
            nonlocal seen
            seen += 1
            if seen == n:
                done.set()

        writer.save_many(models)
        start = time.perf_counter()
        subscription = reader.subscribe("bench", handler, events=[_models.BenchTodo.Created])
        done.wait(600)
        elapsed = time.perf_counter() - start
        subscription.stop()
        return n / elapsed
    finally:
        reader.close()
        writer.close()


def _latency(url: str, n: int) -> tuple[float, float]:
    writer = statekeep.open(url, outbox=True, outbox_retention=None)
    reader = statekeep.open(url, outbox=True, outbox_retention=None)
    try:
        writer.count(_models.BenchTodo)
        sent: dict[str, float] = {}
        delays: list[float] = []
        done = threading.Event()

        def handler(event: Any) -> None:
            start = sent.get(event.entity_id)
            if start is not None:
                delays.append((time.perf_counter() - start) * 1000)
                if len(delays) == n:
                    done.set()

        subscription = reader.subscribe("latency", handler, events=[_models.BenchTodo.Created])
        subscription.wait_idle(600)  # past the throughput run's events first
        models = _models.entities(_models.field_rows(n, seed=8), _models.new_ids(n))
        for model in models:
            sent[model.id] = time.perf_counter()
            writer.save(model)
            time.sleep(0.002)
        done.wait(60)
        subscription.stop()
        ordered = sorted(delays)
        return percentile(ordered, 0.5), percentile(ordered, 0.99)
    finally:
        reader.close()
        writer.close()
