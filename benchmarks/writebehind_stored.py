"""Write-behind end to end: enqueue N entities until stored, against save_many.

Two workloads: N new entities into a fresh file, and an update of each of N
existing entities (a copy of a file that holds them at version 1, made once,
untimed). Each with time-ordered ids (statekeep's own) and with random uuid4
hex ids (B-tree inserts all over the index), and each in both durability
modes. The caller enqueues every entity as fast as it can, then flush(): the
time until all are stored. The reference is save_many of the same entities
into an equal file, in the same round; the ratio is save_many's time / the
write-behind's, per round, and the median of the rounds is judged.

The write-behind contenders share one list of entities per workload and id
kind (see Shared); save_many, which sets their versions, gets a fresh list
each time.
"""

from __future__ import annotations

import itertools
import shutil
import statistics
from collections.abc import Callable
from typing import Any

import statekeep

from . import _models
from ._writebehind import (
    COMMIT,
    ID_KINDS,
    JOURNAL,
    MODE_LABELS,
    MODES,
    NO_MODES,
    Shared,
    close_store,
    ids,
    open_store,
    ratio_detail,
    ratio_spread,
    runnable,
    updates,
)
from .harness import Cleanup, Progress, Result, Run, Sizes, remove_db, rounds

NEW_MIN = {JOURNAL: 0.7, COMMIT: 0.85}  # of save_many (issue 11)
UPDATE_MIN = {JOURNAL: 0.6, COMMIT: 0.6}
SAVE_MANY = "statekeep save_many (reference)"


def _contender(mode: str) -> str:
    return f"enqueue + flush, {MODE_LABELS[mode]}"


def _workload(
    sizes: Sizes,
    workdir: str,
    progress: Progress,
    *,
    kind: str,
    update: bool,
) -> list[Result]:
    n = sizes.enqueue_many
    rows = _models.field_rows(n, seed=3)
    keys = ids(kind, n)
    tag = f"{'update' if update else 'new'}_{ID_KINDS.index(kind)}"
    names = (f"{workdir}/stored_{tag}_{i}.db" for i in itertools.count())
    template = ""
    if update:  # the file every trial starts from: N entities at version 1
        progress(f"write-behind: {n:,} entities to update ({kind})")
        template = f"{workdir}/stored_{tag}_template.db"
        with statekeep.open(f"sqlite:///{template}") as store:
            store.save_many(_models.entities(rows, keys))

    def fresh() -> list[_models.BenchTodo]:
        return updates(rows, keys) if update else _models.entities(rows, keys)

    def new_file() -> str:
        path = next(names)
        if template:
            shutil.copyfile(template, path)
        return path

    def verify(store: statekeep.Store) -> None:
        """An update must have stored the edit, not only kept the row."""
        if update:
            for id in keys[:: max(n // 50, 1)]:
                got = store.get(_models.BenchTodo, id)
                if got.version != 2 or not got.title.endswith("(edited)"):
                    raise RuntimeError(f"{id} not updated: version {got.version}")

    def save_many_trial() -> tuple[Run, Cleanup]:
        path = new_file()
        models = fresh()
        store = statekeep.open(f"sqlite:///{path}")
        store.count(_models.BenchTodo)

        def cleanup() -> None:
            verify(store)
            close_store(store, path, n)

        return lambda: store.save_many(models), cleanup

    shared = Shared(fresh, 1 if update else 0)

    def enqueue_trial(mode: str) -> Callable[[], tuple[Run, Cleanup]]:
        def trial() -> tuple[Run, Cleanup]:
            path = new_file()
            models = shared.take()
            store = open_store(path, mode)

            def write() -> None:
                enqueue = store.enqueue
                for model in models:
                    enqueue(model)
                if not store.flush(120):
                    raise RuntimeError("write-behind did not drain within 120 s")

            def cleanup() -> None:
                verify(store)
                close_store(store, path, n)

            return write, cleanup

        return trial

    modes = [mode for mode in MODES if runnable(mode)]
    trials: dict[str, Any] = {SAVE_MANY: save_many_trial}
    trials.update({_contender(mode): enqueue_trial(mode) for mode in modes})
    what = "updates" if update else "new entities"
    times = rounds(trials, sizes.wb_rounds, progress, f"write-behind, {n:,} {what} ({kind})")
    if template:
        remove_db(template)

    label = (
        f"enqueue {n:,} {'updates of existing entities' if update else 'new entities'} "
        f"until stored, vs save_many ({kind})"
    )
    reference = times[SAVE_MANY]
    results = [Result(label, SAVE_MANY, n / statistics.median(reference), 1.0)]
    minimum = UPDATE_MIN if update else NEW_MIN
    for mode in MODES:
        name = _contender(mode)
        target = f">= {minimum[mode]:.2f}x save_many"
        if name not in times:
            results.append(Result(label, name, target=target, detail=NO_MODES))
            continue
        spread = ratio_spread(reference, times[name])
        results.append(
            Result(
                label,
                name,
                n / statistics.median(times[name]),
                spread.median,
                target=target,
                passed=spread.median >= minimum[mode],
                detail=ratio_detail(spread),
            )
        )
    return results


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    results: list[Result] = []
    for update in (False, True):
        for kind in ID_KINDS:
            results += _workload(sizes, workdir, progress, kind=kind, update=update)
    return results
