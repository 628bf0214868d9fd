"""The demo's step 2: segments and thumbnails streamed through the write-behind
queue (`store.enqueue`) behind the live panel, one session paused (CRITICAL,
waited for) and resumed on the way, while the studio state takes the meters
at 200 Hz and the transport changes (statekeep._demo.studio); then
`store.flush()` and a wait for the enricher to catch up; and, for
comparison, the same writes with one `save_many` into a scratch file."""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections import deque

from rich.console import Console
from rich.live import Live

import statekeep
from statekeep import Priority, Receipt

from .events import Enricher, SessionChanges
from .panel import Panel
from .recordings import (
    CATCH_UP_TIMEOUT,
    LOOSE_CABLE,
    PAUSE,
    PAUSE_AT,
    RESUME,
    RESUME_AT,
    SEED,
    WAIT_TIMEOUT,
    RecordingSession,
    make_writes,
    thumbnail_count,
)
from .report import Report
from .studio import Desk

SWEEP_STEP = 1_000  # look at the receipts every this many writes
LIVE_REFRESH = 8  # panel refreshes per second (on a terminal)


def stream(
    store: statekeep.Store,
    enricher: Enricher,
    sessions: list[RecordingSession],
    segments: int,
    receipts: Receipts,
    report: Report,
    console: Console,
    desk: Desk,
    transitions: SessionChanges,
) -> None:
    """Enqueues the writes behind a live panel (the studio recording
    meanwhile), flushes, and waits for the enricher to catch up; fills in
    the report."""
    loose = next(session for session in sessions if session.device == LOOSE_CABLE)
    pause_at, resume_at = int(segments * PAUSE_AT), int(segments * RESUME_AT)
    changes = 2 if segments else 0
    panel = Panel(
        store, enricher, segments + thumbnail_count(segments) + changes, segments, transitions
    )
    events = report.events
    started = time.perf_counter()
    before = receipts.count
    spent = longest = 0.0
    number = 0  # segments so far
    with Live(panel, console=console, refresh_per_second=LIVE_REFRESH):
        desk.start(loose)  # the studio follows the take on the loose cable
        for priority, entity in make_writes(random.Random(SEED + 1), sessions, segments):
            if priority is Priority.NORMAL:
                if number == pause_at:
                    desk.transport("paused")
                    for event in PAUSE:
                        loose.send(event)
                    pause(store, loose, receipts, report, console)
                if number == resume_at:
                    desk.transport("recording")
                    for event in RESUME:
                        loose.send(event)
                    receipts.add(Priority.CRITICAL, store.enqueue(loose, Priority.CRITICAL))
                    console.print(
                        f"   {LOOSE_CABLE} is back: {loose.name!r} resumes "
                        "(CRITICAL, not waited for)",
                        markup=False,
                    )
                number += 1
            began = time.perf_counter()
            receipt = store.enqueue(entity, priority)
            took = time.perf_counter() - began
            spent += took
            longest = max(longest, took)
            receipts.add(priority, receipt)
            if receipts.count % SWEEP_STEP == 0:
                receipts.sweep()
                panel.sample(receipts.count - before)
        panel.sample(receipts.count - before)
        # the recording stops: the studio's last version is durable (journaled)
        # before the flush, so it writes nothing once the enricher has caught up
        desk.stop()
        began = time.perf_counter()
        store.flush()
        flushed = time.perf_counter()
        report.timings["flush"] = flushed - began
        report.timings["write segments"] = flushed - started
        panel.finish()
        _, handled, written = enricher.progress()
        events.lag_at_flush = written - handled
        events.caught_up = enricher.wait_idle(CATCH_UP_TIMEOUT)
        events.catch_up = time.perf_counter() - flushed
    if not console.is_terminal:
        console.line()  # rich ends the last render with a new line on terminals only
    report.segments_written = receipts.enqueued[Priority.NORMAL.name]
    report.thumbnails_written = receipts.enqueued[Priority.LOW.name]
    report.state_changes += changes
    report.enqueue_seconds, report.enqueue_longest = spent, longest
    report.peak_pending = panel.peak


def pause(
    store: statekeep.Store,
    session: RecordingSession,
    receipts: Receipts,
    report: Report,
    console: Console,
) -> None:
    """The loose cable: the pause is CRITICAL, and the recorder waits until it is stored."""
    stats = store.writebehind.stats()
    report.normal_pending_at_pause = stats.pending[Priority.NORMAL.name] + stats.in_flight
    began = time.perf_counter()
    receipt = store.enqueue(session, Priority.CRITICAL)
    receipts.add(Priority.CRITICAL, receipt)
    stored = receipt.wait_stored(WAIT_TIMEOUT)
    report.critical_wait = time.perf_counter() - began
    if stored:
        outcome = f"stored {report.critical_wait * 1000:.1f} ms later (wait_stored)"
    else:
        outcome = f"NOT stored within {WAIT_TIMEOUT:.0f} s"
    console.print(
        f"   {LOOSE_CABLE}'s cable came loose: {session.name!r} paused (CRITICAL),\n"
        f"   {outcome} while {report.normal_pending_at_pause:,} NORMAL writes were queued",
        markup=False,
    )


def compare_save_many(sessions: list[RecordingSession], segments: int) -> int:
    """The same segments and thumbnails with one save_many, into a scratch file."""
    folder = tempfile.mkdtemp(prefix="statekeep-demo-save-many-")
    try:
        url = f"sqlite:///{os.path.join(folder, 'scratch.db')}"
        with statekeep.open(url, outbox=True) as scratch:
            writes = make_writes(random.Random(SEED + 1), sessions, segments)
            return scratch.save_many((entity for _, entity in writes), chunk_size=1_000)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class Receipts:
    """The receipts of the enqueued writes, by priority, counted once done."""

    def __init__(self) -> None:
        self.count = 0
        self.waiting: dict[Priority, deque[Receipt]] = {p: deque() for p in Priority}
        self.enqueued: dict[str, int] = dict.fromkeys((p.name for p in Priority), 0)
        self.stored: dict[str, int] = dict.fromkeys((p.name for p in Priority), 0)
        self.failed: dict[str, int] = dict.fromkeys((p.name for p in Priority), 0)

    def add(self, priority: Priority, receipt: Receipt) -> None:
        self.count += 1
        self.enqueued[priority.name] += 1
        self.waiting[priority].append(receipt)

    def sweep(self) -> None:
        """Counts the receipts done so far (they complete about in order)."""
        for priority, waiting in self.waiting.items():
            while waiting and waiting[0].done:
                receipt = waiting.popleft()
                counts = self.stored if receipt.stored else self.failed
                counts[priority.name] += 1
