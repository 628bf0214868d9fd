"""Several processes opening one new SQLite file at the same moment (workers
of one application starting together): each open succeeds. Turning on WAL
could fail at once with "database is locked", without the busy timeout."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import statekeep


def _open(
    path: str, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue[str]
) -> None:
    barrier.wait()
    try:
        statekeep.open(f"sqlite:///{path}").close()
        results.put("ok")
    except statekeep.StatekeepError as exc:
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_one_new_file_at_once_all_open(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    outcomes: list[str] = []
    for trial in range(20):
        path = str(tmp_path / f"race-{trial}.db")
        barrier = context.Barrier(4)
        results: multiprocessing.Queue[str] = context.Queue()
        processes = [context.Process(target=_open, args=(path, barrier, results)) for _ in range(4)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(30)
        outcomes.extend(results.get(timeout=5) for _ in processes)
    assert set(outcomes) == {"ok"}, [o for o in outcomes if o != "ok"][:3]
