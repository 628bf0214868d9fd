"""Several processes update the same entities through one PostgreSQL schema.

Four worker processes (_worker.py), released together by a barrier file, do
read-modify-write rounds on a few shared Tallies and retry on ConflictError.
Every saved increment and every conflict is logged; the logs must show
optimistic concurrency working across processes:

- no lost update: each stored total is the number of increments saved for it;
- the saved versions of each entity are exactly 2 .. N (1 is the seed), each
  saved once, and each save was built on the version before it (total = version - 1);
- every ConflictError was deserved: the version the worker held was stale
  (the stored version was newer just after), and another worker saved held + 1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import _postgres
import statekeep

from .models import Tally

WORKER = str(Path(__file__).with_name("_worker.py"))
WORKERS = 4
RUN_TIMEOUT = 120.0  # a hang guard: a run takes a few seconds
ROUNDS_MANY, ENTITIES_MANY, BATCH = 60, 5, 3


class Race(NamedTuple):
    url: str
    logs: list[dict[str, Any]]


def run_workers(url: str, directory: Path, mode: str, *args: int) -> list[dict[str, Any]]:
    """Starts the workers, releases them together, waits, and returns their logs."""
    children: list[tuple[subprocess.Popen[bytes], Path]] = []
    for index in range(WORKERS):
        log = directory / f"worker-{index}.log"
        with log.open("wb") as output:
            command = [sys.executable, WORKER, mode, url, str(directory), str(index)]
            command += [str(a) for a in (*args[:2], 1000 + index, *args[2:])]
            children.append(
                (subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT), log)
            )
    try:
        end = time.monotonic() + RUN_TIMEOUT
        while not all((directory / f"ready-{i}").exists() for i in range(WORKERS)):
            for child, log in children:
                if child.poll() is not None:
                    raise AssertionError(f"a worker exited early: {log.read_text()}")
            assert time.monotonic() < end, "the workers did not get ready"
            time.sleep(0.005)
        (directory / "go").write_text("go")
        for child, log in children:
            code = child.wait(timeout=max(1.0, end - time.monotonic()))
            assert code == 0, log.read_text()
    finally:
        for child, _ in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    return [json.loads((directory / f"result-{i}.json").read_text()) for i in range(WORKERS)]


def check_history(store: statekeep.Store, logs: list[dict[str, Any]], entities: int) -> None:
    """The checks of the module docstring, on the workers' logs and the stored Tallies."""
    stored = {t.id: t for t in store.find(Tally)}
    assert sorted(stored) == sorted(f"t{i}" for i in range(entities))
    saved_by: dict[tuple[str, int], list[int]] = defaultdict(list)  # (id, version) -> workers
    increments: Counter[str] = Counter()
    for worker, log in enumerate(logs):
        assert log["restored"] == 0, f"worker {worker}: a failed save changed an entity's version"
        for id, version, total in log["successes"]:
            saved_by[(id, version)].append(worker)
            increments[id] += 1
            assert total == version - 1, f"{id} v{version} was not built on v{version - 1}"

    for id, tally in stored.items():
        assert tally.total == increments[id], f"{id}: lost updates"
        assert tally.version == increments[id] + 1
        versions = sorted(version for (i, version) in saved_by if i == id)
        assert versions == list(range(2, tally.version + 1)), f"{id}: gaps or extras"
    twice = {key: workers for key, workers in saved_by.items() if len(workers) > 1}
    assert not twice, f"versions saved more than once: {twice}"

    for worker, log in enumerate(logs):
        for id, held, after in log["conflicts"]:
            assert after > held, f"worker {worker}: conflict on {id} v{held}, yet not stale"
            winners = saved_by.get((id, held + 1), [])
            assert winners and worker not in winners, (
                f"worker {worker}: conflict on {id} at v{held}, "
                f"but v{held + 1} was saved by {winners or 'nobody'}"
            )


def seed(url: str, entities: int) -> None:
    with statekeep.open(url) as store:
        store.save_many(Tally(id=f"t{i}") for i in range(entities))


def summary(logs: list[dict[str, Any]]) -> tuple[int, int, int]:
    return (
        sum(len(log["successes"]) for log in logs),
        sum(len(log["conflicts"]) for log in logs),
        sum(len(log["transient"]) for log in logs),
    )


def test_concurrent_saves_from_four_processes_lose_no_update(pg_url: str, tmp_path: Path) -> None:
    rounds, entities = 150, 3
    seed(pg_url, entities)
    logs = run_workers(pg_url, tmp_path, "save", rounds, entities)
    successes, conflicts, transient = summary(logs)
    print(f"save: {successes} increments, {conflicts} conflicts, {transient} transient")
    assert successes == WORKERS * rounds
    assert transient == 0, [log["transient"][:3] for log in logs]
    assert conflicts > 0, "no conflict at all: the processes did not race"
    with statekeep.open(pg_url) as store:
        check_history(store, logs, entities)


@pytest.fixture(scope="module")
def save_many_race(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Race]:
    """One race of save_many batches (3 of 5 Tallies, in random orders), shared
    by the tests that check it. A deadlock is reported after 50 ms, not 1 s."""
    server = _postgres.server_url()
    schema = _postgres.fresh_schema()
    url = _postgres.with_query(server, schema=schema, options="-c%20deadlock_timeout%3D50")
    try:
        seed(url, ENTITIES_MANY)
        logs = run_workers(
            url, tmp_path_factory.mktemp("race"), "save_many", ROUNDS_MANY, ENTITIES_MANY, BATCH
        )
        yield Race(url, logs)
    finally:
        _postgres.drop_schema(server, schema)


def test_concurrent_save_many_batches_from_four_processes_lose_no_update(
    save_many_race: Race,
) -> None:
    """Each batch is atomic: on a conflict none of it is stored (else the totals
    and version sequences would show it), and the conflict names a stale entity.
    A transient failure (a deadlock, see below) is retried by the worker."""
    logs = save_many_race.logs
    successes, conflicts, transient = summary(logs)
    print(f"save_many: {successes} increments, {conflicts} conflicts, {transient} transient")
    assert successes == WORKERS * ROUNDS_MANY * BATCH
    assert conflicts > 0, "no conflict at all: the processes did not race"
    with statekeep.open(save_many_race.url) as store:
        check_history(store, logs, ENTITIES_MANY)


def test_concurrent_save_many_batches_do_not_deadlock(save_many_race: Race) -> None:
    """Batches lock their rows in one order (id), so two batches sharing
    entities wait for each other instead of deadlocking. Locked in scan order
    (`WHERE id = ANY(%s) FOR UPDATE`, as at first), the order differs between
    processes as updates move rows: PostgreSQL then breaks a deadlock after
    deadlock_timeout (1 s by default) and the loser gets TransientBackendError
    where a ConflictError or success was due (7 in this race, before the fix)."""
    deadlocks = [
        message
        for log in save_many_race.logs
        for message in log["transient"]
        if "deadlock" in message
    ]
    assert not deadlocks, f"{len(deadlocks)} deadlocks, e.g. {deadlocks[0]}"
    assert all(not log["transient"] for log in save_many_race.logs)
