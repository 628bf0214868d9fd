"""Crash safety with real processes: a child writes through enqueue() and is
killed with SIGKILL; what it was told is durable must be there after the store
is opened again (recovery runs at open).

STATEKEEP_STRESS=1 runs 200 kill points instead of 20;
STATEKEEP_CRASH_SEED=n replays one run's kill points and streams;
STATEKEEP_CRASH_KILLS=n sets the number of kill points.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Annotated

import pytest

import statekeep
from statekeep import Entity, Indexed

from ._child import stream_plan
from ._support import db_path, segments
from .models import Doc, Reading, Tag, payload_of

CHILD = str(Path(__file__).with_name("_child.py"))
STRESS = os.environ.get("STATEKEEP_STRESS", "") not in ("", "0")
KILLS = int(os.environ.get("STATEKEEP_CRASH_KILLS", 200 if STRESS else 20))
WRITES, ENTITIES = 50_000, 5_000
LATEST_KILL = 1.1  # seconds after the first acknowledgement


def integrity(url: str) -> str:
    connection = sqlite3.connect(db_path(url))
    try:
        return "; ".join(row[0] for row in connection.execute("PRAGMA integrity_check"))
    finally:
        connection.close()


def wait_for_file(
    path: Path, child: subprocess.Popen[bytes], log: Path, timeout: float = 60
) -> None:
    end = time.monotonic() + timeout
    while not (path.exists() and path.stat().st_size > 0):
        if child.poll() is not None:
            raise AssertionError(f"the child exited ({child.returncode}): {log.read_text()}")
        if time.monotonic() > end:
            child.kill()
            raise AssertionError(f"the child wrote nothing to {path} in {timeout}s")
        time.sleep(0.002)


def start_ready_child(
    mode: str, store_url: str, directory: Path, *args: str, name: str = "child"
) -> tuple[subprocess.Popen[bytes], Path]:
    """Starts _child.py in mode and waits until it says it is ready; returns
    the process and its log."""
    ready = directory / f"{name}.ready"
    log = directory / f"{name}.log"
    with log.open("wb") as output:
        child = subprocess.Popen(
            [sys.executable, CHILD, mode, store_url, str(ready), *args],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    wait_for_file(ready, child, log)
    return child, log


def read_acks(path: Path) -> tuple[dict[str, int], int, bool]:
    """The highest acknowledged counter by id, how many acks, and whether the child finished."""
    acked: dict[str, int] = {}
    count, done = 0, False
    text = path.read_text() if path.exists() else ""
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            continue  # cannot happen (one os.write per line), but a torn line is no ack
        if line == "done\n":
            done = True
            continue
        id, counter = line.split()
        acked[id] = max(acked.get(id, 0), int(counter))
        count += 1
    return acked, count, done


@pytest.mark.requires("persistent", "sqlite")
def test_acknowledged_writes_survive_kill_9(store_url: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("STATEKEEP_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    before: dict[str, int] = {}  # what the previous round left stored, by id
    problems: list[str] = []
    finished = 0
    for round in range(KILLS):
        stream_seed, base = rng.randrange(2**32), round * WRITES
        acks, log = tmp_path / f"acks-{round}.txt", tmp_path / f"child-{round}.log"
        with log.open("wb") as output:
            child = subprocess.Popen(
                [sys.executable, CHILD, "stream", store_url, str(acks), str(stream_seed)]
                + [str(n) for n in (base, WRITES, ENTITIES)],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        wait_for_file(acks, child, log)
        time.sleep(rng.uniform(0.0, LATEST_KILL))
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.returncode in (-signal.SIGKILL, 0), log.read_text()

        where = f"crash seed {seed}, round {round} (stream seed {stream_seed})"
        assert integrity(store_url) == "ok", where
        acked, ack_count, done = read_acks(acks)
        finished += done
        enqueued: dict[str, int] = defaultdict(int)
        for id, counter, _ in stream_plan(stream_seed, base, WRITES, ENTITIES):
            enqueued[id] = max(enqueued[id], counter)

        with statekeep.open(store_url) as store:  # recovery runs here
            assert store.flush(timeout=120), where
            found = {r.id: r for r in store.find(Reading)}
        assert integrity(store_url) == "ok", where
        assert segments(store_url) == [], f"{where}: journal left after a clean close"

        lost = sorted(
            f"{id}: acknowledged {counter}, stored {found[id].counter if id in found else None}"
            for id, counter in acked.items()
            if id not in found or found[id].counter < counter
        )
        backwards = sorted(
            f"{id}: was {counter}, now {found[id].counter if id in found else None}"
            for id, counter in before.items()
            if id not in found or found[id].counter < counter
        )
        foreign = sorted(
            f"{id}: counter {r.counter}, payload {r.payload!r}"
            for id, r in found.items()
            if r.payload != payload_of(id, r.counter)
            or r.counter > enqueued.get(id, before.get(id, 0))
        )
        for what, bad in (("lost", lost), ("went backwards", backwards), ("foreign", foreign)):
            if bad:
                problems.append(f"{where}, {ack_count} acks: {len(bad)} {what}, e.g. {bad[:3]}")
        before = {id: r.counter for id, r in found.items()}
    assert not problems, "\n".join(problems)
    # most kills must land mid-stream, or the test proves little
    assert finished < KILLS / 2, f"{finished} of {KILLS} children finished before the kill"


@pytest.mark.requires("persistent")
def test_durable_writes_of_a_killed_process_are_stored_at_open(
    store_url: str, tmp_path: Path
) -> None:
    """Durable but never stored (the window is an hour): after SIGKILL, opening
    the store stores them, without any enqueue or flush."""
    child, _ = start_ready_child("hold", store_url, tmp_path, "50")
    child.send_signal(signal.SIGKILL)
    child.wait()
    with statekeep.open(store_url) as store:
        end = time.monotonic() + 30
        while store.count(Doc) < 50 and time.monotonic() < end:
            time.sleep(0.01)
        assert {d.id: d.title for d in store.find(Doc)} == {f"d{n}": f"held {n}" for n in range(50)}
        assert all(d.version == 1 for d in store.find(Doc))


class TagWider(Entity, collection="wb_tag", shared=True):
    """The next version of Tag: codes may be text too (the column is rebuilt as such)."""

    code: Annotated[int | str, Indexed()] = 0


@pytest.mark.requires("persistent")
def test_durable_writes_of_an_older_model_do_not_rebuild_the_newer_ones_columns(
    store_url: str, tmp_path: Path
) -> None:
    """Recovered writes were stored with the spec they were enqueued with, and
    ensuring it rebuilt `code` back in the older kind under the newer version
    (PostgreSQL: every query on it failed; SQLite: text codes became numbers)."""
    with statekeep.open(store_url) as store:
        store.save(Tag(id="first", code=1))  # the table, as the older version makes it
    child, _ = start_ready_child("hold-tags", store_url, tmp_path, "5")
    with statekeep.open(store_url) as store:  # the child is alive: nothing to recover
        assert store.count(TagWider, code=7) == 0  # the newer version's column first
    child.send_signal(signal.SIGKILL)
    child.wait()
    with statekeep.open(store_url) as store:  # recovers the child's five writes
        end = time.monotonic() + 30
        while store.count(TagWider) < 6 and time.monotonic() < end:
            time.sleep(0.01)
        store.flush(timeout=30)
        store.save(TagWider(id="text", code="7"))
        assert sorted(t.id for t in store.find(TagWider, code=7)) == [f"g{n}" for n in range(5)]
        assert [t.id for t in store.find(TagWider, code="7")] == ["text"]


@pytest.mark.requires("persistent")
def test_a_stored_write_is_not_replayed_after_a_crash(store_url: str, tmp_path: Path) -> None:
    """A write stored before the crash needs no recovery: replaying it would
    overwrite what was saved after it."""
    child, _ = start_ready_child("stored-then-saved", store_url, tmp_path)
    child.send_signal(signal.SIGKILL)
    child.wait()
    with statekeep.open(store_url) as store:
        store.flush(timeout=30)
        stored = store.get(Doc, "e")
    assert (stored.title, stored.version) == ("saved", 2)


@pytest.mark.requires("persistent")
@pytest.mark.parametrize("mode", ["exit", "exit-dropped"], ids=["kept", "dropped"])
def test_interpreter_exit_drains_an_unclosed_store(store_url: str, mode: str) -> None:
    """Writes enqueued and never flushed are stored at interpreter exit, whether
    the application still holds the store then or has dropped it."""
    result = subprocess.run(
        [sys.executable, CHILD, mode, store_url, "30"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert segments(store_url) == []  # stored by the child's exit, nothing left to recover
    with statekeep.open(store_url) as store:
        assert store.count(Doc) == 30


@pytest.mark.requires("persistent")
def test_sigterm_drains_the_store_then_ends_the_process(store_url: str, tmp_path: Path) -> None:
    child, log = start_ready_child("hold", store_url, tmp_path, "30")
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=60) == -signal.SIGTERM, log.read_text()
    assert segments(store_url) == []  # stored before the process ended
    with statekeep.open(store_url) as store:
        assert store.count(Doc) == 30
        assert all(d.title.startswith("held") for d in store.find(Doc))


@pytest.mark.requires("persistent")
def test_sigterm_while_the_main_thread_enqueues_never_hangs(store_url: str, tmp_path: Path) -> None:
    """The handler runs on the main thread, possibly inside enqueue while it
    holds the engine's lock: it must not wait for that lock itself."""
    for trial in range(8):
        child, log = start_ready_child(
            "enqueue-forever", store_url, tmp_path, name=f"child-{trial}"
        )
        time.sleep(0.05 + 0.03 * trial)
        child.send_signal(signal.SIGTERM)
        try:
            code = child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            raise AssertionError(f"trial {trial}: still running 30 s after SIGTERM") from None
        assert code == -signal.SIGTERM, log.read_text()
