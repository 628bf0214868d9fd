"""Issue 11: writers in several processes share one database and are killed
with SIGKILL at random moments (some while the engine pauses between a
batch's commit and its journal marker: STATEKEEP_TEST_PAUSE_AFTER_COMMIT).
After one reopen and a flush, every write a receipt acknowledged durable is
stored with its last acknowledged content, and nothing is stored that a
receipt reported failed or shed.

Each round starts WRITERS children (_exact_child.py stress, forked by a
spawner: a kill point costs about 0.4 s), each writing its own ids under
policy shed_low, its writes based on the versions it read at its start; they
report every receipt's news over a FIFO as it happens (D durable, S stored,
F failed, R refused). Each is killed at a random moment
of its stream (a kill point); one store then opens the database and flushes.

Acknowledged: stored (S), or durable (D) at NORMAL or CRITICAL priority. A
durable LOW write may still be shed afterwards (policy shed_low), and a
child killed meanwhile never says so: it is checked only through the writes
after it.

It runs on the databases processes share (SQLite file, PostgreSQL). A
normal run makes a few kill points on each, in seconds. STATEKEEP_STRESS=1
makes STATEKEEP_STRESS_KILLS (default 500) on each: 1,000 in all, about
7 minutes on 2 cores. STATEKEEP_STRESS_SEED=n replays a run's rounds.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

import statekeep
from _backends import Backend

from ._exact import Plain, payload_of, stress_plan
from ._processes import SHARED_DATABASES, Children, Process, Spawner, shared_database
from ._support import db_path

STRESS = os.environ.get("STATEKEEP_STRESS", "") not in ("", "0")
KILLS = int(os.environ.get("STATEKEEP_STRESS_KILLS", 500 if STRESS else 3))  # per backend
WRITERS = 3
WRITES, IDS = 10_000, 300  # IDS: the stress child's max_pending is 250
LATEST_KILL = 0.7  # seconds after the child is ready (its stream lasts about a second)
PAUSES = ("", "0.01", "0.05")  # STATEKEEP_TEST_PAUSE_AFTER_COMMIT of a child ("": none)
PAUSE = "STATEKEEP_TEST_PAUSE_AFTER_COMMIT"


class Writer:
    """One stress child of a round, and what it reported."""

    def __init__(self, child: Process, prefix: str, seed: int, pause: str) -> None:
        self.child, self.prefix, self.seed, self.pause = child, prefix, seed, pause
        self.names = [f"{prefix}{n}" for n in range(IDS)]

    def check(self, start: dict[str, int], found: dict[str, Plain]) -> list[str]:
        """What is wrong with the stored state of this writer's ids."""
        acked: dict[str, int] = {}
        failed: set[tuple[str, int]] = set()
        news = [line.split() for line in self.child.lines() if line[:2] in ("D ", "S ", "F ", "R ")]
        for kind, id, counter, *_ in news:
            if kind in ("F", "R"):
                failed.add((id, int(counter)))
        for kind, id, counter, priority, *_ in news:
            if (id, int(counter)) in failed:
                continue
            if kind == "S" or (kind == "D" and int(priority) > 0):
                acked[id] = max(acked.get(id, 0), int(counter))
        planned: dict[str, int] = defaultdict(int)
        for id, number, _ in stress_plan(self.seed, WRITES, self.names, start):
            planned[id] = number
        kinds = {line[4] for line in news if line[0] == "F"}
        problems = [f"a receipt failed with {kind}" for kind in kinds - {"QueueFullError"}]
        for id in self.names:
            stored = found[id].counter if id in found else 0
            if stored < acked.get(id, 0):
                problems.append(f"{id}: lost: acknowledged {acked[id]}, stored {stored}")
            if stored < start[id]:
                problems.append(f"{id}: went back from {start[id]} to {stored}")
            if (id, stored) in failed:
                problems.append(f"{id}: stored {stored}, which its receipt reported failed")
            if stored > max(planned.get(id, 0), start[id]):
                problems.append(f"{id}: stored {stored}, never enqueued")
            if id in found and found[id].payload != payload_of(id, stored):
                problems.append(f"{id}: content {found[id].payload!r} is not counter {stored}'s")
        return problems

    def acks(self) -> int:
        return sum(1 for line in self.child.lines() if line[:2] in ("D ", "S "))


def integrity(url: str) -> str:
    connection = sqlite3.connect(db_path(url))
    try:
        return "; ".join(row[0] for row in connection.execute("PRAGMA integrity_check"))
    finally:
        connection.close()


@pytest.fixture(params=SHARED_DATABASES, ids=lambda backend: backend.name)
def shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Backend, str]]:
    for url in shared_database(request.param, tmp_path / "main"):
        yield request.param, url


@pytest.mark.timeout(3600 if STRESS else 300)
def test_acknowledged_writes_of_killed_writers_sharing_a_database(
    shared: tuple[Backend, str], tmp_path: Path
) -> None:
    backend, store_url = shared
    with contextlib.ExitStack() as stack:
        spawners = {
            pause: stack.enter_context(
                Spawner(tmp_path / f"spawner-{n}.log", {PAUSE: pause} if pause else None)
            )
            for n, pause in enumerate(PAUSES)
        }
        run(backend, store_url, spawners, tmp_path)


def run(backend: Backend, store_url: str, spawners: dict[str, Spawner], tmp_path: Path) -> None:
    seed = int(os.environ.get("STATEKEEP_STRESS_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    start: dict[str, int] = defaultdict(int)  # stored counters, as the next round starts
    problems: list[str] = []
    kills = rounds = acks = 0
    began = time.monotonic()
    while kills < KILLS and len(problems) < 50:
        directory = tmp_path / f"round-{rounds}"
        directory.mkdir()
        where = f"stress seed {seed}, round {rounds}"
        with Children(directory) as children:
            writers = []
            for prefix in "abc"[:WRITERS]:
                child_seed, pause = rng.randrange(2**32), rng.choice(PAUSES)
                child = children.spawn(
                    spawners[pause],
                    prefix,
                    "stress",
                    store_url,
                    str(child_seed),
                    str(WRITES),
                    str(IDS),
                    prefix,
                )
                writers.append(Writer(child, prefix, child_seed, pause))
            for writer in writers:
                writer.child.wait_line("ready")
            ready = time.monotonic()
            delays = [rng.uniform(0, LATEST_KILL) for _ in writers]
            for delay, writer in sorted(zip(delays, writers, strict=True), key=lambda p: p[0]):
                time.sleep(max(0.0, ready + delay - time.monotonic()))  # the random kill point
                kills += writer.child.kill()
        rounds += 1

        with statekeep.open(store_url) as store:  # one reopen: recovery runs here
            assert store.flush(timeout=120), where
            found = {p.id: p for p in store.find(Plain)}
            letters = store.writebehind.dead_letters()
        if "sqlite" in backend.capabilities:
            assert integrity(store_url) == "ok", where
        for writer in writers:
            bad = writer.check(start, found)
            acks += writer.acks()
            problems.extend(
                f"{where}, writer {writer.prefix} (seed {writer.seed}, pause {writer.pause or 0}): "
                f"{p}"
                for p in bad[:5]
            )
            for id in writer.names:
                start[id] = found[id].counter if id in found else 0
        if letters:
            problems.append(f"{where}: dead letters {letters[:3]}")
    elapsed = time.monotonic() - began
    summary = f"{kills} kill points in {rounds} rounds, {acks} acknowledgements, {elapsed:.0f} s"
    print(f"{backend.name}: {summary}")
    assert not problems, summary + "\n" + "\n".join(problems[:30])
    assert kills >= KILLS, summary
