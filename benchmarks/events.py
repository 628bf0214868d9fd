"""Events: in-process dispatch against blinker, and durable subscriptions.

1. Dispatch: the same committed event handed to 1 and to 10 plain handlers,
   by statekeep's bus (the call `save()` makes after its commit) and by
   blinker's `Signal.send` (what a user would otherwise connect the same
   handlers to). Target: statekeep's dispatch no slower than blinker's.
   For orientation, the whole cost a listener adds to a `save()` (making the
   event, with its own copy of the entity, and dispatching it) is a second
   table: save() into memory:// with 0, 1 and 10 handlers.
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
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import statekeep

from . import _models, _postgres
from .harness import ExtraTable, Progress, Result, Sizes, best_of, percentile

DISPATCH = "event dispatch, {n} handler{s}"
STATEKEEP = "statekeep bus (what save() runs after commit)"
BLINKER = "blinker Signal.send (reference)"


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result | ExtraTable]:
    results: list[Result | ExtraTable] = []
    for handlers in (1, 10):
        results.extend(_dispatch(sizes, progress, handlers))
    results.append(_save_overhead(sizes, progress))
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


def _save_overhead(sizes: Sizes, progress: Progress) -> ExtraTable:
    n = sizes.dispatch_saves
    rows = _models.field_rows(n, seed=6)
    timings: dict[int, float] = {}
    for handlers in (0, 1, 10):

        def trial(handlers: int = handlers) -> tuple[Callable[[], object], Callable[[], None]]:
            store = statekeep.open("memory://")
            for _ in range(handlers):
                store.on(_models.BenchTodo.Created, _noop)
            models = _models.entities(rows, _models.new_ids(n))
            save = store.save

            def work() -> None:
                for model in models:
                    save(model)

            return work, store.close

        best = best_of({"save": trial}, sizes, progress, f"save() with {handlers} handlers")
        timings[handlers] = best["save"] / n * 1e6
    base = timings[0]
    table_rows: list[tuple[str, ...]] = [
        (f"{h}", f"{timings[h]:.1f}", f"{timings[h] - base:+.1f}") for h in (0, 1, 10)
    ]
    return ExtraTable(
        "save() into memory:// with in-process handlers",
        ("handlers", "us per save", "added by events"),
        table_rows,
        note="The added time includes making the event and its own copy of the entity "
        "(parsed from the stored JSON), then the dispatch measured above.",
    )


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
