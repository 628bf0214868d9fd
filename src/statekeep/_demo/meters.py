"""The demo's level meters: readings in bursts, through a statekeep.flow Pipeline.

Every session's recorder sends its input level many times a second; the app
keeps one LevelMeter per session (its latest level) for a dashboard. The
readings go through a Pipeline: debounced per session (the last reading of
a burst goes on, at least every 50 ms while the burst lasts), throttled to
`rate` meter writes a second, and saved in batches (`save_many`) into the
store. The summary shows the pipeline's figures.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from rich.console import Console

import statekeep
from statekeep.flow import FlowStats, Pipeline

from .recordings import SEED, RecordingSession

METER_RATE = 1_000  # meter writes a second, at most (statekeep demo --meter-rate)
READINGS_PER_SEGMENT = 2  # level readings a session sends per segment it records
QUIET = 0.01  # seconds without a reading that end a session's burst
MAX_WAIT = 0.05  # seconds a burst's latest reading waits at most


class LevelMeter(statekeep.Entity, last_write_wins=True):
    """A session's latest input level (its id is the session's)."""

    level_db: float
    readings: int = 0  # readings folded into this one so far


@dataclass
class MetersReport:
    readings: int = 0
    meters: int = 0  # LevelMeter entities stored at the end
    seconds: float = 0.0
    stats: dict[str, FlowStats] = field(default_factory=dict)


def levels(sessions: list[RecordingSession]) -> Iterator[tuple[str, float]]:
    """The sessions' input level readings, (session id, dB), each session in
    turn, for ever: made up, but seeded, so every run reads the same levels.
    The pipeline below takes them as fast as they come; the studio state
    (statekeep._demo.studio) takes them at the meters' own pace."""
    rng = random.Random(SEED + 2)
    ids = [session.id for session in sessions]
    for n in itertools.count():
        yield ids[n % len(ids)], round(rng.uniform(-60.0, 0.0), 1)


def meters(
    store: statekeep.Store,
    sessions: list[RecordingSession],
    readings: int,
    rate: int,
    console: Console,
) -> MetersReport:
    """Sends the readings through the pipeline, drains it, and reports."""
    report = MetersReport(readings=readings)
    counts: dict[str, int] = {}

    def reading(item: tuple[str, float]) -> LevelMeter:
        session, level = item
        counts[session] = counts.get(session, 0) + 1
        return LevelMeter(id=session, level_db=level, readings=counts[session])

    def save(batch: list[LevelMeter]) -> None:
        """The batch's latest meter of each session, over what is stored (an
        upsert: the stored version read in the same transaction)."""
        latest = {meter.id: meter for meter in batch}  # a session twice: its last reading
        with store.transaction():
            stored = store.get_many(LevelMeter, latest)
            for id, meter in latest.items():
                meter.version = stored[id].version if id in stored else 0
            store.save_many(list(latest.values()))

    pipeline = (
        Pipeline("level meters")
        .debounce(wait=QUIET, max_wait=MAX_WAIT, key=lambda item: item[0])
        .map(reading)
        .throttle(rate=rate, burst=max(1, rate // 20))
        .batch(save, max_size=200, max_delay=0.02)
    )
    started = time.perf_counter()
    for item in itertools.islice(levels(sessions), readings):
        pipeline.put(item)
    pipeline.close()
    report.seconds = time.perf_counter() - started
    report.stats = pipeline.stats()
    report.meters = store.count(LevelMeter)
    forwarded = report.stats["debounce"].counts["invocations"]
    batches = report.stats["batch"].counts["batches"]
    console.print(
        f"   level meters: {readings:,} readings through a flow Pipeline "
        f"(debounced per session, at most {rate:,}/s, batched): "
        f"{forwarded:,} meter writes in {batches:,} batches, {report.seconds:.2f} s"
    )
    return report


def meter_rows(report: MetersReport) -> list[tuple[str, str]]:
    """The summary's rows for the pipeline."""
    if not report.stats:
        return []
    debounced, throttled, batched = (report.stats[k] for k in ("debounce", "throttle", "batch"))
    wait = throttled.timings["wait"]
    return [
        ("flow: level readings in", f"{report.readings:,}"),
        ("flow: after the debounce (per session)", f"{debounced.counts['invocations']:,}"),
        (
            "flow: throttle waits / longest wait",
            f"{throttled.counts['waits']:,} / {wait.max * 1000:,.1f} ms",
        ),
        ("flow: batches saved", f"{batched.counts['batches']:,}"),
        ("flow: level meters stored", f"{report.meters:,}"),
    ]
