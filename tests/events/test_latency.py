"""Delivery latency, save to durable handler: measured and printed, not asserted.

Each Tick carries the wall-clock time taken just before its save; the durable
handler notes how long after that it got the event (so a figure includes the
save's own commit, whose median is printed beside it). The writer is a
thread of this process (commits of the same process wake the subscription at
once) or another process (SQLite and files: the subscription polls, every
~6 ms after activity backing off to 50 ms when idle; PostgreSQL: LISTEN/NOTIFY).

By default a short smoke run checks the harness. STATEKEEP_MEASURE=1 runs the
measurement (500 saves 2 ms apart, and 60 saves 50 ms apart, for each writer)
and prints a line per case; run with `-s -k latency` to see them.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import statekeep

from ._support import wait_for
from .models import Tick

pytestmark = pytest.mark.requires("persistent")

CHILD = str(Path(__file__).with_name("_child.py"))
MEASURE = os.environ.get("STATEKEEP_MEASURE", "") not in ("", "0")
CASES = [(500, 0.002), (60, 0.05)] if MEASURE else [(30, 0.002)]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def thread_writer(store: statekeep.Store, count: int, pause: float) -> list[float]:
    """Saves count Ticks from a thread; returns how long each save took."""
    took: list[float] = []

    def write() -> None:
        for n in range(count):
            sent = time.time()
            store.save(Tick(id=f"tick{n:05}", sent=sent))
            took.append(time.time() - sent)
            time.sleep(pause)

    writer = threading.Thread(target=write)
    writer.start()
    writer.join()
    return took


def process_writer(url: str, count: int, pause: float, output: Path) -> list[float]:
    """Saves count Ticks from another process; returns how long each save took."""
    with output.open("wb") as out:
        child = subprocess.run(
            [sys.executable, CHILD, "ticks", url, str(count), str(pause)],
            stdout=out,
            stderr=out,
            timeout=120,
            check=False,
        )
    assert child.returncode == 0, output.read_text()
    return [
        float(line.split()[1]) for line in output.read_text().splitlines() if line[:5] == "took "
    ]


def measure(
    store: statekeep.Store, url: str, writer: str, case: int, output: Path
) -> tuple[list[float], list[float]]:
    """(latencies, save durations) of one case, in seconds."""
    count, pause = CASES[case]
    latencies: list[float] = []

    def handle(event: statekeep.Event) -> None:
        if isinstance(event, Tick.Created):
            latencies.append(time.time() - event.entity.sent)

    # a subscription of its own per case, caught up (past the earlier cases) first
    subscription = store.subscribe(f"latency-{case}", handle, events=[Tick.Created])
    assert subscription.wait_idle(20)
    latencies.clear()
    if writer == "thread":
        took = thread_writer(store, count, pause)
    else:
        took = process_writer(url, count, pause, output)
    wait_for(lambda: len(latencies) >= count, 30, f"{count} ticks")
    subscription.stop()
    assert len(latencies) == count
    for n in range(count):  # the next case saves the same ids again
        store.delete(Tick, f"tick{n:05}")
    return latencies, took


@pytest.mark.parametrize("writer", ["thread", "process"])
def test_delivery_latency(
    outbox_store: statekeep.Store,
    store_url: str,
    tmp_path: Path,
    backend: object,
    writer: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = outbox_store
    store.save(Tick(id="warm-up"))  # the collection and the outbox exist first
    for case, (count, pause) in enumerate(CASES):
        latencies, took = measure(store, store_url, writer, case, tmp_path / f"{case}.txt")
        if not MEASURE:
            continue
        ms = [1000 * value for value in latencies]
        name = backend.name  # type: ignore[attr-defined]
        with capsys.disabled():
            print(
                f"\nlatency {name:<11} writer={writer:<7} {count} saves "
                f"{1000 * pause:.0f} ms apart: p50 {percentile(ms, 0.5):.2f} ms, "
                f"p99 {percentile(ms, 0.99):.2f} ms, max {max(ms):.2f} ms, "
                f"save p50 {1000 * statistics.median(took):.2f} ms"
            )
