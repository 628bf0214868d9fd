"""Advice: patterns seen in a store's own calls that a change would speed
up, each with its evidence, the exact change, and the time it would save.

Every rule fires only on the pattern it names and stays silent where its
change would not help (tests/metrics/test_advice.py runs each on both).
`gain` is the seconds of calls' time in the last minute (ten, for finds)
that the change would have saved, by the store's own measurements where it
has them; advice comes ranked by it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from . import _names as n
from ._patterns import COALESCE, Patterns
from ._snapshot import Snapshot

# thresholds: below them a change is not worth a line of advice
FIND_MIN_CALLS = 10  # unindexed finds of a collection in 10 minutes
FIND_MIN_MEAN = 0.0005  # seconds a find takes on average (a scan of a few rows is not worth it)
LOOP_MIN_RATE = 100  # saves a second of one collection, each its own commit
AGAIN_MIN_SAVES = 50  # saves of one collection in a minute
AGAIN_MIN_SHARE = 0.2  # of them, of an id saved less than COALESCE s before
BATCH_MIN_BATCHES = 50  # NORMAL write-behind batches in a minute
BATCH_SMALL = 3.0  # rows a batch on average
HANDLER_MIN_CALLS = 20
HANDLER_MIN_MEAN = 0.001  # seconds a sync handler takes on average
CONFLICT_MIN = 10  # calls that met a ConflictError in a minute
CONFLICT_MIN_SHARE = 0.05
SAVE_MANY_SPEEDUP = 10.0  # per entity, save_many over a save loop (benchmarks/save_many.py)


@dataclass(frozen=True)
class Advice:
    rule: str
    subject: str  # a collection, a handler, an operation
    title: str
    evidence: str
    change: str  # the exact change to make
    gain: float  # seconds of calls' time it would have saved (see the module's docstring)

    def __str__(self) -> str:
        return f"{self.title}\n  evidence: {self.evidence}\n  change: {self.change}"


def advise(snapshot: Snapshot, patterns: Patterns) -> list[Advice]:
    found = [
        *_unindexed_finds(snapshot, patterns),
        *_save_loops(snapshot, patterns),
        *_saved_again(snapshot, patterns),
        *_small_batches(snapshot, patterns),
        *_slow_handlers(snapshot),
        *_conflicts(snapshot, patterns),
    ]
    return sorted(found, key=lambda a: -a.gain)


def _mean(snapshot: Snapshot, name: str, window: int | str = 60, **labels: str) -> float:
    series = snapshot.get(name, **labels)
    return series.window(window).mean if series is not None else math.nan


def _unindexed_finds(snapshot: Snapshot, patterns: Patterns) -> list[Advice]:
    advice = []
    by_collection: dict[str, list[tuple[tuple[str, ...], int]]] = {}
    for (collection, fields), count in list(patterns.unindexed_fields.items()):
        by_collection.setdefault(collection, []).append((fields, count))
    for collection, field_sets in by_collection.items():
        series = snapshot.get(n.FIND, collection=collection, index="no")
        if series is None:
            continue
        window = series.window(600)
        if window.count < FIND_MIN_CALLS or not window.mean >= FIND_MIN_MEAN:
            continue
        fields, _ = max(field_sets, key=lambda f: f[1])
        indexed = ", ".join(f"{f}: Annotated[..., Indexed()]" for f in fields)
        advice.append(
            Advice(
                "index_a_field",
                collection,
                f"find() on {collection} filters on {', '.join(fields)}, which no index serves",
                f"{window.count:,} finds in the last 10 minutes with no indexed condition, "
                f"mean {window.mean * 1e3:.2f} ms, p99 {window.p99 * 1e3:.2f} ms: each reads "
                "every row",
                f"declare the field indexed in the entity class ({indexed}); "
                "the column and its index are made when the store next opens the collection",
                window.sum * 0.9,
            )
        )
    return advice


def _save_loops(snapshot: Snapshot, patterns: Patterns) -> list[Advice]:
    advice = []
    for collection in patterns.collections():
        seconds = patterns.saves(collection)
        peak = max((s.alone for s in seconds), default=0)
        if peak < LOOP_MIN_RATE:
            continue
        alone = sum(s.alone for s in seconds)
        mean = _mean(snapshot, n.OPERATION, operation="save")
        per_entity = _mean(snapshot, n.SAVE_MANY_ENTITY)
        if math.isnan(mean):
            continue
        if math.isnan(per_entity):
            measured = f"save_many stores about {SAVE_MANY_SPEEDUP:.0f}x faster an entity"
            per_entity = mean / SAVE_MANY_SPEEDUP
        else:
            measured = (
                f"save_many took {per_entity * 1e6:.1f} µs an entity here, "
                f"{mean / per_entity:.1f}x less than a save"
            )
        if per_entity >= mean:
            continue
        advice.append(
            Advice(
                "save_many",
                collection,
                f"save() runs in a loop on {collection}, a commit each",
                f"up to {peak:,} saves a second outside a transaction ({alone:,} in the last "
                f"minute), mean {mean * 1e6:.0f} µs each; {measured}",
                "collect them and call store.save_many(entities) (or save them inside one "
                "`with store.transaction():`)",
                alone * (mean - per_entity),
            )
        )
    return advice


def _saved_again(snapshot: Snapshot, patterns: Patterns) -> list[Advice]:
    advice = []
    for collection in patterns.collections():
        seconds = patterns.saves(collection)
        saves = sum(s.saves for s in seconds)
        again = sum(s.again for s in seconds)
        if saves < AGAIN_MIN_SAVES or again < AGAIN_MIN_SHARE * saves:
            continue
        mean = _mean(snapshot, n.OPERATION, operation="save")
        if math.isnan(mean):
            continue
        advice.append(
            Advice(
                "enqueue",
                collection,
                f"the same {collection} entities are saved again and again",
                f"{again:,} of {saves:,} saves in the last minute were of an entity saved less "
                f"than {COALESCE * 1e3:.0f} ms before: write-behind would have coalesced them, "
                f"storing {again / saves:.0%} fewer writes (mean save {mean * 1e6:.0f} µs)",
                "store.enqueue(entity) instead of store.save(entity): it returns at once, and "
                "saves of one entity within the batch window become one write",
                again * mean,
            )
        )
    return advice


def _small_batches(snapshot: Snapshot, patterns: Patterns) -> list[Advice]:
    series = snapshot.get(n.BATCH_ROWS, priority="normal")
    limits = patterns.batch_limits
    if series is None or limits is None:
        return []
    window, max_batch = limits
    w = series.window(60)
    if w.count < BATCH_MIN_BATCHES:
        return []
    seconds = _mean(snapshot, n.BATCH_SECONDS, priority="normal")
    if w.mean <= BATCH_SMALL:
        return [
            Advice(
                "batch_window",
                "writebehind",
                "write-behind's NORMAL batches are small: a commit every few rows",
                f"{w.count:,} batches in the last minute, {w.mean:.1f} rows each on average, "
                f"{seconds * 1e3:.2f} ms each, with the window at {window * 1e3:.0f} ms",
                f"raise the window: writebehind={{'window': {window * 4:g}}} (each batch is "
                "one commit; a longer window gathers more rows into it)",
                w.count * seconds * 0.5,
            )
        ]
    if w.p50 >= max_batch:
        return [
            Advice(
                "batch_size",
                "writebehind",
                "write-behind's NORMAL batches are full: the queue is cut at max_batch",
                f"{w.count:,} batches in the last minute, half of them at max_batch ({max_batch:,} "
                "rows)",
                f"raise it: writebehind={{'max_batch': {max_batch * 4:,}}}",
                w.count * seconds * 0.25,
            )
        ]
    return []


def _slow_handlers(snapshot: Snapshot) -> list[Advice]:
    advice = []
    for series in snapshot.select(n.HANDLER):
        w = series.window(60)
        if w.count < HANDLER_MIN_CALLS or not w.mean >= HANDLER_MIN_MEAN:
            continue
        handler = series.labels.get("handler", "?")
        advice.append(
            Advice(
                "slow_handler",
                handler,
                f"the event handler {handler} slows every write that fires it",
                f"{w.count:,} calls in the last minute on the committing thread, "
                f"mean {w.mean * 1e3:.2f} ms, p99 {w.p99 * 1e3:.2f} ms",
                "make it `async def` (it then runs on an event loop, not in the caller's "
                "thread), or a durable subscription (store.subscribe(name, ...)) that "
                "catches up on its own",
                w.sum,
            )
        )
    return advice


def _conflicts(snapshot: Snapshot, patterns: Patterns) -> list[Advice]:
    advice = []
    for operation in ("send", "transition_many", "save", "save_many", "delete"):
        conflicts = patterns.conflicts(operation)
        if conflicts < CONFLICT_MIN:
            continue
        series = snapshot.get(n.OPERATION, operation=operation)
        calls = conflicts + (series.window(60).count if series is not None else 0)
        if conflicts < CONFLICT_MIN_SHARE * calls:
            continue
        mean = _mean(snapshot, n.OPERATION, operation=operation)
        retry = (
            "store.send(entity, event, retry=3)"
            if operation == "send"
            else ("read it again and retry the change (or let one writer own each entity)")
        )
        advice.append(
            Advice(
                "conflicts",
                operation,
                f"{operation}() often meets a ConflictError: another writer saved first",
                f"{conflicts:,} of {calls:,} calls in the last minute",
                f"{retry}; if many writers change the same entities, give each its own "
                "entity (one per user or per shard) or move the changes through one queue",
                conflicts * (0.0 if math.isnan(mean) else mean),
            )
        )
    return advice
