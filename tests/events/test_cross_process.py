"""Durable subscriptions across processes: a subscriber process sees every
event other processes commit, in commit order; and a consumer killed with
SIGKILL in mid-stream resumes from its checkpoint, seeing every event at
least once, each entity's in version order.

STATEKEEP_CRASH_SEED=n replays one run's kill points; STATEKEEP_CRASH_KILLS=n
sets how many (default 4).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import statekeep

from ._support import Recorder, outbox_events, start_child
from .models import Item

pytestmark = pytest.mark.requires("persistent")

CHILD = str(Path(__file__).with_name("_child.py"))
KILLS = int(os.environ.get("STATEKEEP_CRASH_KILLS", 4))
EVENTS, POOL, TRANSACTIONS = 10_000, 1_500, 10

OpenStore = Callable[..., statekeep.Store]


@dataclass(frozen=True)
class Line:
    event_id: str
    name: str
    entity_id: str
    version: int


def read_log(path: Path) -> list[Line]:
    if not path.exists():
        return []
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]  # a line cut by SIGKILL is not handled
    return [
        Line(fields[0], fields[1], fields[2], int(fields[3]))
        for fields in (line.split() for line in complete.splitlines())
    ]


def count_lines(path: Path) -> int:
    try:
        with path.open("rb") as file:
            return file.read().count(b"\n")
    except FileNotFoundError:
        return 0


def spawn(*args: str, log: Path) -> subprocess.Popen[bytes]:
    return start_child([sys.executable, CHILD, *args], log)


def wait_until(
    condition: Callable[[], bool],
    child: subprocess.Popen[bytes],
    log: Path,
    timeout: float,
    what: str,
) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if child.poll() is not None:
            raise AssertionError(f"the child exited ({child.returncode}): {log.read_text()}")
        if time.monotonic() > end:
            child.kill()
            child.wait()
            raise AssertionError(f"waited {timeout}s for {what}: {log.read_text()[-2000:]}")
        time.sleep(0.001)


def terminate(child: subprocess.Popen[bytes], log: Path) -> None:
    child.send_signal(signal.SIGTERM)
    try:
        assert child.wait(20) == 0, log.read_text()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def start_consumer(
    url: str, name: str, directory: Path, run: int, retention: str = "none"
) -> tuple[subprocess.Popen[bytes], Path]:
    ready = directory / f"ready-{name}-{run}"
    output = directory / f"output-{name}-{run}.txt"
    log = str(directory / f"{name}.log")
    child = spawn("consume", url, name, log, str(ready), retention, log=output)
    wait_until(ready.exists, child, output, 60, "the consumer to subscribe")
    return child, output


def test_a_subscriber_process_sees_every_event_of_writer_processes(
    outbox_store: statekeep.Store, store_url: str, tmp_path: Path
) -> None:
    """One consumer process; two writer processes and this one write at once."""
    store = outbox_store
    consumer, consumer_output = start_consumer(store_url, "mirror", tmp_path, 0)
    go = tmp_path / "go"
    writers = []
    for prefix in ("a", "b"):
        ready, output = tmp_path / f"ready-{prefix}", tmp_path / f"output-{prefix}.txt"
        writer = spawn("write", store_url, prefix, "300", str(ready), str(go), log=output)
        wait_until(ready.exists, writer, output, 60, "a writer to open the store")
        writers.append((writer, output))
    go.touch()
    for n in range(100):  # this process writes too, in transactions and batches
        if n % 10 == 0:
            store.save_many([Item(id=f"p{n}-{k}", n=n) for k in range(20)])
        else:
            store.save(Item(id=f"p{n}", n=n))
    for writer, output in writers:
        assert writer.wait(60) == 0, output.read_text()

    committed = outbox_events(store)
    assert len(committed) == 2 * (270 + 60) + 90 + 10 * 20
    log = tmp_path / "mirror.log"
    wait_until(
        lambda: count_lines(log) >= len(committed),
        consumer,
        consumer_output,
        60,
        f"{len(committed)} events in the consumer's log",
    )
    terminate(consumer, consumer_output)

    seen = read_log(log)
    assert [line.event_id for line in seen] == [e.event_id for e in committed]  # once, in order
    assert [(line.name, line.entity_id, line.version) for line in seen] == [
        (e.name, e.entity_id, e.version) for e in committed
    ]
    versions: dict[str, int] = {}
    for line in seen:  # each entity's versions one after another
        assert line.version == versions.get(line.entity_id, 0) + 1, line
        versions[line.entity_id] = line.version


def write_plan(store: statekeep.Store, seed: int) -> None:
    """EVENTS changes in TRANSACTIONS save_many transactions, each over a
    random sample of a pool of POOL items (so most items get several versions)."""
    rng = random.Random(seed)
    items: dict[str, Item] = {}
    per_transaction = EVENTS // TRANSACTIONS
    for _ in range(TRANSACTIONS):
        batch = []
        for n in rng.sample(range(POOL), per_transaction):
            item = items.setdefault(f"i{n:04}", Item(id=f"i{n:04}"))
            item.n += 1
            batch.append(item)
        store.save_many(batch, chunk_size=500)
        time.sleep(0.02)


@pytest.mark.slow
def test_a_consumer_killed_in_mid_stream_sees_every_event_at_least_once(
    outbox_store: statekeep.Store, store_url: str, tmp_path: Path
) -> None:
    """The consumers prune the outbox as they go (outbox_retention=0)."""
    store = outbox_store
    seed = int(os.environ.get("STATEKEEP_CRASH_SEED", random.randrange(1_000_000)))
    rng = random.Random(seed)
    context = f"(STATEKEEP_CRASH_SEED={seed})"
    log = tmp_path / "projector.log"
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            write_plan(store, seed)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    committed = Recorder()  # one writer thread: its handlers see the commit order
    store.on(Item, committed)  # its writes (not the store's own alerts, under load)
    writing = threading.Thread(target=writer)
    writing.start()
    boundaries = []  # the log's line count when each run ended
    try:
        for run in range(KILLS):
            start = count_lines(log)
            kill_after = rng.randrange(300, 2_000)
            child, output = start_consumer(store_url, "projector", tmp_path, run, "0")

            def handled(start: int = start, kill_after: int = kill_after) -> bool:
                return count_lines(log) >= start + kill_after

            wait_until(
                handled,
                child,
                output,
                60,
                f"{kill_after} events handled in run {run} {context}",
            )
            child.send_signal(signal.SIGKILL)
            assert child.wait(20) == -signal.SIGKILL
            boundaries.append(count_lines(log))
    finally:
        writing.join()
    assert errors == [], context

    ids = [event.event_id for event in committed.events]
    assert len(ids) == EVENTS, context
    child, output = start_consumer(store_url, "projector", tmp_path, KILLS, "0")
    wait_until(
        lambda: bool(read_log(log)) and read_log(log)[-1].event_id == ids[-1],
        child,
        output,
        60,
        f"the last event {context}",
    )
    terminate(child, output)
    boundaries.append(count_lines(log))

    seen = read_log(log)
    index = {event_id: n for n, event_id in enumerate(ids)}
    assert set(index) == {line.event_id for line in seen}, f"an event was missed {context}"
    runs, begin, reached = [], 0, 0
    for end in boundaries:
        segment = seen[begin:end]
        begin = end
        if not segment:
            continue
        first = index[segment[0].event_id]
        # each run handled a stretch of the commit order, without gaps, from at
        # or before where the last one got to (its checkpoint)
        assert [line.event_id for line in segment] == ids[first : first + len(segment)], context
        assert first <= reached, f"events {reached}..{first} were skipped {context}"
        versions: dict[str, int] = {}
        for line in segment:  # per entity: versions in order
            previous = versions.get(line.entity_id)
            assert previous is None or line.version == previous + 1, (line, context)
            versions[line.entity_id] = line.version
        runs.append((first, first + len(segment), min(reached, first + len(segment)) - first))
        reached = max(reached, first + len(segment))
    print(f"seed {seed}: runs (first, end, redelivered) {runs}")  # shown on failure, or -s
    assert reached == len(ids), context
    assert len(runs) == KILLS + 1, (runs, context)
    assert all(end < len(ids) for _, end, _ in runs[:-1]), f"a kill was not mid-stream {runs}"
    redelivered = len(seen) - len(ids)
    assert redelivered == sum(again for _, _, again in runs), context
