"""A persisted app state survives SIGKILL: a child process (_state_child.py)
floods a store.state() with updates (NORMAL at a high rate, every 25th
CRITICAL), acknowledges each version wait_durable() returns, and is killed
at a random moment. The parent then opens the store (recovery runs there)
and restores the state: it must be a version the child had, with that
version's value, and at least the last version acknowledged durable.

The rounds go on in one store, as an application restarts: each child
starts from what the round before restored. Two kinds of update stream
(the child's MODE): "steady" writes over the same dict keys, "churn" adds a
key and removes an older one with every update. And after a few kills and a
clean run, no delta of an older full snapshot is left in the store.

The restored version must be the one acknowledged or a later one; which it
is depends on timing, so a lost acknowledged version (a snapshot chain that
does not reach it) shows in some runs only: STATEKEEP_STRESS=1 looks harder.

STATEKEEP_STRESS=1 runs 30 rounds per backend and mode instead of 3;
STATEKEEP_CRASH_SEED=n replays one run's random choices (kill times, streams);
STATEKEEP_CRASH_KILLS=n sets the number of rounds.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import statekeep
from statekeep.state import StateSnapshot
from statekeep.state._snapshot import full_id

from ._state_child import Studio, expected, initial, step

CHILD = str(Path(__file__).with_name("_state_child.py"))
STRESS = os.environ.get("STATEKEEP_STRESS", "") not in ("", "0")
ROUNDS = int(os.environ.get("STATEKEEP_CRASH_KILLS", 30 if STRESS else 3))
LATEST_KILL = 0.3  # seconds after the child's first acknowledgement
NAME = "studio"
MODES = ("steady", "churn")


@pytest.mark.parametrize("mode", MODES)
def test_expected_is_what_the_updates_give(mode: str) -> None:
    """The parent's oracle: expected(n, mode) is the state after n step() updates."""
    plain = initial()
    for count in range(1, 200):
        step(plain, mode)
        assert plain == expected(count, mode), count


def lines(path: Path) -> list[str]:
    """The whole lines of a file a killed child appended to (a torn last one is left out)."""
    if not path.exists():
        return []
    return path.read_text().split("\n")[:-1]  # after the last "\n": torn or nothing


class ChildError(Exception):
    pass


def start(
    url: str, mode: str, seed: int, directory: Path
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    """Starts a child and waits for its first acknowledgement."""
    versions, acks, log = (directory / f"child.{kind}" for kind in ("versions", "acks", "log"))
    with log.open("wb") as errors:
        child = subprocess.Popen(
            [sys.executable, CHILD, url, NAME, mode, str(seed), str(versions), str(acks)],
            stdout=errors,
            stderr=subprocess.STDOUT,
        )
    end = time.monotonic() + 60
    while not lines(acks):
        if child.poll() is not None:
            raise ChildError(f"the child exited ({child.returncode}): {log.read_text()[-3000:]}")
        if time.monotonic() > end:
            child.kill()
            child.wait()
            raise ChildError(f"the child acknowledged nothing in 60 s: {log.read_text()[-3000:]}")
        time.sleep(0.001)
    return child, versions, acks


def kill(child: subprocess.Popen[bytes], directory: Path) -> None:
    child.send_signal(signal.SIGKILL)
    assert child.wait(60) == -signal.SIGKILL, (directory / "child.log").read_text()


def snapshot_rows(store: statekeep.Store) -> list[tuple[str, int, int, int]]:
    store.flush()
    return sorted((r.kind, r.seq, r.base, r.prev) for r in store.find(StateSnapshot))


@pytest.mark.requires("persistent")
@pytest.mark.parametrize("mode", MODES)
def test_sigkill_restores_a_version_that_existed(store_url: str, mode: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("STATEKEEP_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    problems: list[str] = []
    restored: tuple[int, int] | None = None  # (version, count) the parent restored last
    report: list[str] = []
    for round in range(ROUNDS):
        where = f"mode {mode}, crash seed {seed}, round {round}"
        directory = tmp_path / f"round-{round}"
        directory.mkdir()
        try:
            child, versions_file, acks_file = start(
                store_url, mode, rng.randrange(2**32), directory
            )
        except ChildError as exc:
            problems.append(f"{where}: {exc}")
            break
        # one round in four is killed right after an acknowledgement, the others later
        time.sleep(0.0 if rng.random() < 0.25 else rng.uniform(0.0, LATEST_KILL))
        kill(child, directory)

        versions: dict[int, int] = {}  # version -> count, as the child made them
        for line in lines(versions_file):
            version, count = map(int, line.split())
            assert versions.get(version, count) == count, f"{where}: version {version} twice"
            versions[version] = count
        start_version = int(lines(versions_file)[0].split()[0])
        acked = [int(line) for line in lines(acks_file)]
        if restored is not None and (start_version, versions[start_version]) != restored:
            problems.append(
                f"{where}: the child started from version {start_version} "
                f"(count {versions[start_version]}); the parent had restored {restored}"
            )
        with statekeep.open(store_url) as store:
            try:
                state = store.state(NAME, Studio)
            except Exception as exc:  # noqa: BLE001 - what the restore raised is the finding
                rows = snapshot_rows(store)  # (the journal the child left is stored by now)
                problems.append(f"{where}: the state cannot be restored: {exc!r}; rows {rows}")
                break
            version, value, durable = state.version, state.model(), state.durable_version
            rows = snapshot_rows(store)
        restored = (version, value.count)
        report.append(
            f"{where}: {len(versions)} versions from {start_version}, {len(acked)} acks "
            f"(last {acked[-1]}), restored {version}"
        )
        if version not in versions:
            problems.append(
                f"{where}: restored version {version}, which the child never had "
                f"({min(versions)}..{max(versions)}); rows {rows}"
            )
        elif versions[version] != value.count:
            problems.append(
                f"{where}: restored version {version} with count {value.count}; the child "
                f"had count {versions[version]} at that version; rows {rows}"
            )
        if value != expected(value.count, mode):
            problems.append(f"{where}: the restored value is no version's: {value!r}")
        if version < max(acked):
            problems.append(
                f"{where}: version {max(acked)} was acknowledged durable, "
                f"but {version} was restored; rows {rows}"
            )
        if durable != version:
            problems.append(f"{where}: durable_version {durable} right after restoring {version}")
    print("\n".join(report))
    assert not problems, "\n".join(problems)


@pytest.mark.requires("persistent")
def test_no_delta_rows_outlive_crashes(store_url: str, tmp_path: Path) -> None:
    """After SIGKILLs at random moments and a clean run that stores a full
    snapshot, the deltas of older full snapshots are deleted: none is left
    to pile up, run after run."""
    seed = int(os.environ.get("STATEKEEP_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    for round in range(2):
        directory = tmp_path / f"round-{round}"
        directory.mkdir()
        child, _, _ = start(store_url, "steady", rng.randrange(2**32), directory)
        time.sleep(rng.uniform(0.0, LATEST_KILL))
        kill(child, directory)
    with statekeep.open(store_url) as store:
        state = store.state(NAME, Studio, persist_every=3600, full_every=2)
        for _ in range(4):  # deltas and a full snapshot, each made durable
            state.update(lambda draft: step(draft, "steady"))
            state.wait_durable(30)
        store.flush()
        assert state.durable_version == state.version  # settled: old deltas deleted
        store.flush()
        full = store.get(StateSnapshot, full_id(NAME))
        rows = snapshot_rows(store)
    stale = [row for row in rows if row[0] == "delta" and row[2] != full.seq]
    assert not stale, (
        f"crash seed {seed}: deltas of older full snapshots are left behind "
        f"(the full snapshot is version {full.seq}): {stale}"
    )
