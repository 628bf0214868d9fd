"""Write-behind against what a user would do instead: save() in the caller's
thread, and persist-queue in front of the database.

- The caller's side: a loop of enqueue() against a loop of save() of the
  same new entities, timed as the caller sees it (the engine's background
  work competes for the GIL and counts; the drain after the loop does not),
  at default durability and strict (synchronous=full in the URL, the
  journal's fsync=True: durable across a power loss), each store with its
  engine's default durability mode.
- persist-queue's SQLiteAckQueue: put every entity, then get, save() and
  ack each, in one thread (no lock or GIL contention to slow it), acked rows
  cleared every thousand (else each get() scans past them), its connection
  given statekeep's synchronous=NORMAL. statekeep: enqueue + flush.

Ratios are per round (the two contenders of a round paired); the median of
the rounds is judged, the best-of ratio is shown beside it.
"""

from __future__ import annotations

import itertools
import shutil
import statistics

import persistqueue  # type: ignore[import-untyped, unused-ignore]

import statekeep

from . import _models
from ._writebehind import (
    MODE_LABELS,
    Shared,
    close_store,
    open_store,
    ratio_detail,
    ratio_spread,
)
from .harness import Cleanup, Progress, Result, Run, Sizes, rounds

CALLER_MIN = {False: 5, True: 30}  # times the save() loop (issue 11), by strict
QUEUE_MIN = 20  # times persist-queue
CLEAR_EVERY = 1000  # persist-queue: acked rows deleted this often

SAVE_LOOP = "statekeep save() loop in the caller (reference)"
ENQUEUE_CALLER = f"statekeep enqueue (caller side), {MODE_LABELS[None]}"
PERSIST_QUEUE = "persist-queue SQLiteAckQueue put + get + save + ack (reference)"
ENQUEUE_FLUSH = f"statekeep enqueue + flush, {MODE_LABELS[None]}"


def _caller_side(sizes: Sizes, workdir: str, progress: Progress, *, strict: bool) -> list[Result]:
    n = sizes.caller // 4 if strict else sizes.caller
    rows = _models.field_rows(n, seed=7)
    keys = _models.new_ids(n)
    shared = Shared(lambda: _models.entities(rows, keys), 0)
    names = (f"{workdir}/caller_{strict}_{i}.db" for i in itertools.count())

    def save_trial() -> tuple[Run, Cleanup]:
        path = next(names)
        models = _models.entities(rows, keys)
        store = open_store(path, None, strict=strict)

        def write() -> None:
            save = store.save
            for model in models:
                save(model)

        return write, lambda: close_store(store, path, n)

    def enqueue_trial() -> tuple[Run, Cleanup]:
        path = next(names)
        models = shared.take()
        store = open_store(path, None, strict=strict)

        def write() -> None:
            enqueue = store.enqueue
            for model in models:
                enqueue(model)

        return write, lambda: close_store(store, path, n)  # drained untimed

    kind = "strict: synchronous=full, fsync=True" if strict else "default durability"
    times = rounds(
        {SAVE_LOOP: save_trial, ENQUEUE_CALLER: enqueue_trial},
        sizes.wb_rounds,
        progress,
        f"write-behind vs save() loop ({kind})",
    )
    spread = ratio_spread(times[SAVE_LOOP], times[ENQUEUE_CALLER])
    minimum = CALLER_MIN[strict]
    label = f"{n:,} new entities, time in the caller's thread ({kind})"
    save_us = 1e6 * statistics.median(times[SAVE_LOOP]) / n
    enqueue_us = 1e6 * statistics.median(times[ENQUEUE_CALLER]) / n
    return [
        Result(
            label,
            SAVE_LOOP,
            n / statistics.median(times[SAVE_LOOP]),
            1.0,
            detail=f"{save_us:.1f} us a call",
        ),
        Result(
            label,
            ENQUEUE_CALLER,
            n / statistics.median(times[ENQUEUE_CALLER]),
            spread.median,
            target=f">= {minimum}x save() loop",
            passed=spread.median >= minimum,
            detail=f"{enqueue_us:.1f} us a call; {ratio_detail(spread)}",
        ),
    ]


def against_save(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    return [
        *_caller_side(sizes, workdir, progress, strict=False),
        *_caller_side(sizes, workdir, progress, strict=True),
    ]


def against_queue(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    n = sizes.queue
    rows = _models.field_rows(n, seed=6)
    keys = _models.new_ids(n)
    shared = Shared(lambda: _models.entities(rows, keys), 0)
    names = (f"{workdir}/queue_{i}" for i in itertools.count())

    def statekeep_trial() -> tuple[Run, Cleanup]:
        path = next(names) + ".db"
        models = shared.take()
        store = open_store(path, None)

        def write() -> None:
            enqueue = store.enqueue
            for model in models:
                enqueue(model)
            if not store.flush(120):
                raise RuntimeError("write-behind did not drain within 120 s")

        return write, lambda: close_store(store, path, n)

    def persist_queue_trial() -> tuple[Run, Cleanup]:
        base = next(names)
        models = _models.entities(rows, keys)
        store = statekeep.open(f"sqlite:///{base}.db")
        store.count(_models.BenchTodo)
        queue = persistqueue.SQLiteAckQueue(base + ".queue", auto_resume=False)
        queue._conn.execute("PRAGMA synchronous=NORMAL")  # statekeep's setting: same durability

        def write() -> None:
            put, get, ack, save = queue.put, queue.get, queue.ack, store.save
            for model in models:
                put(model)
            for i in range(n):
                item = get(block=False, raw=True)
                save(item["data"])
                ack(id=item["pqid"])
                if i % CLEAR_EVERY == CLEAR_EVERY - 1:
                    # acked rows stay in the table, and every get() scans past them:
                    # without this it gets slower with every write (4x at 10,000)
                    queue.clear_acked_data(max_delete=CLEAR_EVERY, keep_latest=0)

        def cleanup() -> None:
            left = queue.ready_count() + queue.unack_count()
            queue.close()
            shutil.rmtree(base + ".queue", ignore_errors=True)
            close_store(store, base + ".db", n)
            if left:
                raise RuntimeError(f"persist-queue left {left} items unacknowledged")

        return write, cleanup

    times = rounds(
        {PERSIST_QUEUE: persist_queue_trial, ENQUEUE_FLUSH: statekeep_trial},
        sizes.wb_rounds,
        progress,
        "write-behind vs persist-queue",
    )
    spread = ratio_spread(times[PERSIST_QUEUE], times[ENQUEUE_FLUSH])
    label = f"durable queue, {n:,} new entities until stored"
    return [
        Result(label, PERSIST_QUEUE, n / statistics.median(times[PERSIST_QUEUE]), 1.0),
        Result(
            label,
            ENQUEUE_FLUSH,
            n / statistics.median(times[ENQUEUE_FLUSH]),
            spread.median,
            target=f">= {QUEUE_MIN}x persist-queue",
            passed=spread.median >= QUEUE_MIN,
            detail=ratio_detail(spread),
        ),
    ]
