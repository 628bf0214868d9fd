"""The files backend: save_many of N entities into a fresh folder, one transaction.

statekeep (`files:///dir`, a JSON document per entity, committed all at once
through a manifest) with fsync on (the default) and off. The reference is
what a user would otherwise write by hand for durable JSON files: for each
entity, model_dump_json into a temporary file, fsync it, rename it to
<id>.json; then one fsync of the folder. That is durable file by file but not
all or none. Every run gets a fresh folder after an os.sync() (no run pays
for the writeback of the one before); the folders go at the end.

Besides the speed, every row counts the fsync calls its run made: os.fsync
and os.fdatasync are wrapped for the length of each timed run (in this
process only, on every thread, then put back).
"""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import statekeep

from . import _models
from .harness import Cleanup, Progress, Result, Run, Sizes, best_of

REFERENCE = "by hand: a file each, write + fsync + rename (reference)"
STATEKEEP = "statekeep save_many (fsync on, the default)"
NO_FSYNC = "statekeep save_many (fsync=off)"


class SyncCounter:
    """Counts os.fsync and os.fdatasync calls, from any thread, while installed."""

    def __init__(self) -> None:
        self.calls = 0
        self._lock = threading.Lock()

    @contextmanager
    def installed(self) -> Iterator[None]:
        real_fsync, real_fdatasync = os.fsync, os.fdatasync

        def fsync(fd: Any) -> None:
            with self._lock:
                self.calls += 1
            real_fsync(fd)

        def fdatasync(fd: Any) -> None:
            with self._lock:
                self.calls += 1
            real_fdatasync(fd)

        os.fsync, os.fdatasync = fsync, fdatasync
        try:
            yield
        finally:
            os.fsync, os.fdatasync = real_fsync, real_fdatasync


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    n = sizes.files_save_many
    rows = _models.field_rows(n, seed=5)
    ids = _models.new_ids(n)
    folders = (f"{workdir}/files_{i}" for i in itertools.count())
    syncs: dict[str, int] = {}

    def counted(name: str, work: Callable[[], object]) -> Run:
        def timed() -> None:
            counter = SyncCounter()
            with counter.installed():
                work()
            syncs[name] = counter.calls

        return timed

    def statekeep_trial(name: str, fsync: bool) -> tuple[Run, Cleanup]:
        folder = next(folders)
        os.sync()  # no run pays for the writeback of the one before
        models = _models.entities(rows, ids)
        store = statekeep.open(f"files:///{folder}", fsync=fsync)
        store.count(_models.BenchTodo)  # opened and checked, as the others' folders are

        return counted(name, lambda: store.save_many(models)), store.close

    def reference_trial() -> tuple[Run, Cleanup]:
        folder = next(folders)
        os.sync()
        os.makedirs(folder)
        models = _models.entities(rows, ids)

        def write() -> None:
            for m in models:
                path = os.path.join(folder, f"{m.id}.json")
                temporary = path + ".tmp"
                with open(temporary, "wb") as file:
                    file.write(m.model_dump_json().encode())
                    file.flush()
                    os.fsync(file.fileno())
                os.rename(temporary, path)
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        return counted(REFERENCE, write), lambda: None

    try:
        best = best_of(
            {
                REFERENCE: reference_trial,
                STATEKEEP: lambda: statekeep_trial(STATEKEEP, True),
                NO_FSYNC: lambda: statekeep_trial(NO_FSYNC, False),
            },
            sizes,
            progress,
            "files save_many",
            slow=(REFERENCE,),
        )
    finally:  # not between runs: on a file system mounted with discard, deleting
        # ten thousand files slows the next run down several times
        for folder in glob.glob(f"{workdir}/files_*"):
            shutil.rmtree(folder)
    ops = {name: n / seconds for name, seconds in best.items()}
    label = f"files save_many {n:,} (one transaction)"

    def detail(name: str) -> str:
        count = syncs[name]
        return f"{count:,} fsyncs ({count / n:.2f} per entity)"

    return [
        Result(label, name, ops[name], ops[name] / ops[REFERENCE], detail=detail(name))
        for name in (REFERENCE, STATEKEEP, NO_FSYNC)
    ]
