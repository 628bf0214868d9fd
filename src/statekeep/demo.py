"""The recording-sessions demo behind `statekeep demo` (and `make demo`).

A recorder ingests audio from ~50 devices at once: each recording session
produces many small segments, and every so often a waveform thumbnail. The
demo keeps them in one SQLite file, written behind the recorder's back with
`store.enqueue`, by priority:

- CRITICAL: session state changes (a session starts, pauses, resumes), stored
  at once, and waited for where the recorder needs to know;
- NORMAL: the segments, coalesced into batches;
- LOW: the thumbnails, written when no segment is waiting (or once 5 s old).

Every change is an event. The store keeps an outbox (`outbox=True`): a
handler in this process (`store.on(RecordingSession.Updated)`) counts the
sessions' state changes, and a durable subscriber, "enricher", in a child
process with a store of its own on the same file, gives each new segment a
loudness class (see statekeep._demo_events).

The steps:

1. create the sessions (CRITICAL enqueues, waited for with `wait_stored`);
2. stream the segments and thumbnails through the write-behind queue behind a
   live panel of its statistics, pausing and resuming one session on the way
   (CRITICAL, one of them waited for), then `store.flush()`, and wait until
   the enricher has caught up; for comparison, the same writes with one
   `save_many` into a scratch file (also with an outbox);
3. update: flag clipping segments and mark most sessions complete, in one
   transaction (and show that a stale copy cannot overwrite newer data);
4. delete a session recorded with a loose cable, with all its segments and
   thumbnails, in one transaction;
5. query by indexed fields and show a few results;
6. stop the enricher; print counts, events, throughputs, timings and the
   size of the file.

The file is left in place so it can be inspected with the `sqlite3` shell.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Literal

from rich.console import Console
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

import statekeep
from statekeep import Priority, Receipt

from ._demo_events import Enricher, EventsReport, SessionChanges, event_rows

SESSIONS = 50
DEVICES = 8
LOOSE_CABLE = "mic-07"  # its first take is unusable: paused while streaming, later deleted
STILL_RECORDING = 10  # the newest sessions are still recording
CLIP_DB = -1.0  # peaks above this are flagged as clipping
THUMBNAIL_EVERY = 50  # a waveform thumbnail per this many segments of a session
PAUSE_AT, RESUME_AT = 0.4, 0.6  # where in the stream the loose cable drops out, and back
SWEEP_STEP = 1_000  # look at the receipts every this many writes
LIVE_REFRESH = 8  # panel refreshes per second (on a terminal)
BAR_WIDTH = 24
WAIT_TIMEOUT = 10.0  # seconds a CRITICAL write is waited for
CATCH_UP_TIMEOUT = 60.0  # seconds the enricher is given to catch up after the flush
SEED = 20240521

WORDS = (
    *("okay", "so", "the", "next", "take", "starts", "now", "please", "check", "levels"),
    *("one", "two", "three", "testing", "mic", "sounds", "good", "chorus", "verse"),
    *("bridge", "louder", "softer", "again", "from", "the", "top", "keep", "that", "one"),
)


class RecordingSession(statekeep.Entity):
    """One recording on one device."""

    name: str
    device: Annotated[str, statekeep.Indexed()]
    state: Annotated[Literal["recording", "paused", "complete"], statekeep.Indexed()] = "recording"
    started: datetime


class Segment(statekeep.Entity):
    """A few hundred milliseconds of audio from one session, with its transcript."""

    session_id: Annotated[str, statekeep.Indexed()]
    index: int
    start_ms: int
    duration_ms: int
    peak_db: float
    transcript: str
    flagged: Annotated[bool, statekeep.Indexed()] = False


class Thumbnail(statekeep.Entity):
    """A waveform overview of THUMBNAIL_EVERY segments of one session: the
    peak of each, for a timeline view. Nice to have, so it is written LOW."""

    session_id: Annotated[str, statekeep.Indexed()]
    first_index: int
    start_ms: int
    duration_ms: int
    peaks: list[float]


Write = tuple[Priority, Segment | Thumbnail]


@dataclass
class Report:
    """What the demo measured, for the summary (and for tests)."""

    path: str
    sessions: int = 0
    segments_written: int = 0
    thumbnails_written: int = 0
    state_changes: int = 0  # CRITICAL writes of sessions: created, paused, resumed
    segments_flagged: int = 0
    sessions_completed: int = 0
    sessions_deleted: int = 0
    segments_deleted: int = 0
    thumbnails_deleted: int = 0
    enqueued: dict[str, int] = field(default_factory=dict)  # by priority name
    stored_by_priority: dict[str, int] = field(default_factory=dict)  # receipts stored
    failed: dict[str, int] = field(default_factory=dict)  # receipts failed
    peak_pending: dict[str, int] = field(default_factory=dict)  # seen while streaming
    sessions_wait: float = 0.0  # enqueue of the sessions until all were stored
    critical_wait: float = 0.0  # enqueue of the pause until it was stored
    normal_pending_at_pause: int = 0
    enqueue_seconds: float = 0.0  # time the caller spent inside enqueue()
    enqueue_longest: float = 0.0  # the longest single enqueue() (waiting for room)
    compared_writes: int = 0  # written by save_many into the scratch file
    journal_segments: int = -1  # segment files left in <db>.writebehind after close
    file_bytes: int = 0  # db + wal, while the store is open
    closed_bytes: int = 0  # after close() folded the WAL into the file
    stored: dict[str, int] = field(default_factory=dict)  # counted at the end
    events: EventsReport = field(default_factory=EventsReport)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def updates(self) -> int:
        return self.segments_flagged + self.sessions_completed

    @property
    def streamed(self) -> int:
        """Writes enqueued while streaming: segments, thumbnails, pause and resume."""
        return self.segments_written + self.thumbnails_written + self.state_changes - self.sessions


def run(path: str | None, segments: int) -> int:
    """Run the demo into `path` (default: a new file in a fresh temp folder)."""
    console = Console(highlight=False)
    if segments < 0:
        console.print(Text(f"--segments must be 0 or more, not {segments}", style="red"))
        return 2
    db_path = _choose_path(path)
    problem = _path_problem(db_path)
    if problem:
        console.print(Text(problem, style="red"), soft_wrap=True)
        return 2
    console.print(Text("statekeep demo: recording sessions", style="bold"))
    console.print(Text(f"database: {db_path}"), soft_wrap=True)
    report = demo(db_path, segments, console)
    console.print()
    console.print(_summary(report))
    console.print()
    console.print(Text("The database is kept at:", style="bold"))
    console.print(Text(db_path), soft_wrap=True)
    console.print(Text("Inspect it with:", style="bold"))
    hint = f'sqlite3 {shlex.quote(db_path)} "select count(*) from segment"'
    console.print(Text(hint), soft_wrap=True)
    return 0


def _choose_path(path: str | None) -> str:
    if path is None:
        folder = tempfile.mkdtemp(prefix="statekeep-demo-")
        return os.path.join(folder, "recordings.db")
    return os.path.abspath(os.path.expanduser(path))


def _path_problem(db_path: str) -> str | None:
    if "?" in db_path:
        return f"{db_path}: the path cannot contain '?' (it would end the store URL)"
    for suffix in ("", "-wal", "-shm", ".writebehind"):
        if os.path.exists(db_path + suffix):
            return (
                f"{db_path + suffix} already exists; the demo writes a new database: "
                "choose another --path or remove it"
            )
    folder = os.path.dirname(db_path)
    if not os.path.isdir(folder):
        return f"{folder} is not a folder"
    return None


def demo(db_path: str, segments: int, console: Console) -> Report:
    """The steps, on an open store; returns what they did and how long each took."""
    report = Report(db_path)
    rng = random.Random(SEED)
    receipts = _Receipts()
    changes = SessionChanges()
    with (
        statekeep.open(f"sqlite:///{db_path}", outbox=True) as store,
        Enricher(db_path, Segment, CLIP_DB) as enricher,
    ):
        store.on(RecordingSession.Updated, changes)
        # 1. create the sessions: CRITICAL, and the recorder waits until they are stored
        started = time.perf_counter()
        sessions = list(_make_sessions(rng))
        created = [store.enqueue(session, Priority.CRITICAL) for session in sessions]
        for receipt in created:
            receipts.add(Priority.CRITICAL, receipt)
        report.sessions = sum(receipt.wait_stored(WAIT_TIMEOUT) for receipt in created)
        report.sessions_wait = time.perf_counter() - started
        report.state_changes = len(created)
        report.timings["create sessions"] = report.sessions_wait
        console.print(
            f"[green]1.[/] created {report.sessions} recording sessions (CRITICAL): "
            f"stored {report.sessions_wait * 1000:.1f} ms later (wait_stored)"
        )

        # 2. stream the segments and thumbnails through the write-behind queue
        _stream(store, enricher, sessions, segments, receipts, report, console)
        receipts.sweep()
        report.enqueued = dict(receipts.enqueued)
        report.stored_by_priority = dict(receipts.stored)
        report.failed = dict(receipts.failed)
        console.print(
            f"[green]2.[/] enqueued {report.segments_written:,} segments (NORMAL) and "
            f"{report.thumbnails_written:,} thumbnails (LOW) in "
            f"{report.timings['write segments'] - report.timings['flush']:.2f} s,\n"
            f"   {report.enqueue_seconds:.2f} s of it inside enqueue(); "
            f"store.flush() returned {report.timings['flush']:.2f} s later"
        )
        console.print(
            "   stored: "
            + ", ".join(f"{receipts.stored[p.name]:,} {p.name}" for p in reversed(Priority))
            + f"; {sum(receipts.failed.values())} failed"
        )
        events = report.events
        outcome = enricher.outcome(events.caught_up, events.catch_up, CATCH_UP_TIMEOUT)
        console.print(
            f"   enricher (durable subscriber, process {enricher.pid}): "
            f"{enricher.progress()[0]:,} segments enriched;\n"
            f"   {events.lag_at_flush:,} events behind when flush returned, {outcome}",
            markup=False,
        )

        started = time.perf_counter()
        report.compared_writes = _compare_save_many(sessions, segments)
        compared = report.timings["save_many (scratch file)"] = time.perf_counter() - started
        streaming = _per_second(report.streamed, report.timings["write segments"])
        batching = _per_second(report.compared_writes, compared)
        console.print(
            f"   end to end: {streaming:,.0f} writes/s; one save_many of the same "
            f"{report.compared_writes:,} writes\n"
            f"   into a scratch file: {batching:,.0f} writes/s"
            + (f" (write-behind: {streaming / batching:.2f}x)" if streaming and batching else "")
        )

        # 3. update: flag clipping segments, complete all but the newest sessions
        started = time.perf_counter()
        with store.transaction():
            clipping = list(store.find(Segment, Segment.f.peak_db > CLIP_DB))
            for segment in clipping:
                segment.flagged = True
            report.segments_flagged = store.save_many(clipping)
            finished = list(
                store.find(
                    RecordingSession,
                    state="recording",
                    order_by="started",
                    limit=max(0, len(sessions) - STILL_RECORDING),
                )
            )
            for session in finished:
                session.state = "complete"
                store.save(session)
            report.sessions_completed = len(finished)
        report.timings["update"] = time.perf_counter() - started
        console.print(
            f"[green]3.[/] in one transaction: flagged {report.segments_flagged:,} clipping "
            f"segments (peak > {CLIP_DB} dB),\n   completed {report.sessions_completed} sessions"
        )
        _show_conflict(store, sessions[-1].id, console)

        # 4. delete the first take on the device with a loose cable, with its segments
        started = time.perf_counter()
        with store.transaction():
            faulty = list(
                store.find(RecordingSession, device=LOOSE_CABLE, order_by="started", limit=1)
            )
            for session in faulty:
                doomed = list(store.find(Segment, session_id=session.id))
                for segment in doomed:
                    store.delete(segment)
                thumbnails = list(store.find(Thumbnail, session_id=session.id))
                for thumbnail in thumbnails:
                    store.delete(thumbnail)
                store.delete(session)
                report.segments_deleted += len(doomed)
                report.thumbnails_deleted += len(thumbnails)
                report.sessions_deleted += 1
        report.timings["delete"] = time.perf_counter() - started
        for session in faulty:
            console.print(
                f"[green]4.[/] in one transaction: deleted {session.name!r} "
                f"({LOOSE_CABLE} had a loose cable)\n"
                f"   with its {report.segments_deleted:,} segments and "
                f"{report.thumbnails_deleted:,} thumbnails"
            )

        # 5. queries on indexed fields
        started = time.perf_counter()
        console.print("[green]5.[/] queries on indexed fields:")
        _show_queries(store, console)
        report.stored = {
            "sessions": store.count(RecordingSession),
            "complete sessions": store.count(RecordingSession, state="complete"),
            "segments": store.count(Segment),
            "flagged segments": store.count(Segment, flagged=True),
            "thumbnails": store.count(Thumbnail),
        }
        report.timings["queries"] = time.perf_counter() - started

        enricher.fill(report.events, enricher.stop())
        changes.fill(report.events)
        report.file_bytes = _file_size(db_path)
    report.closed_bytes = _file_size(db_path)
    report.journal_segments = len(list(Path(db_path + ".writebehind").glob("segment-*.log")))
    return report


# -- step 2: the stream ----------------------------------------------------------
def _stream(
    store: statekeep.Store,
    enricher: Enricher,
    sessions: list[RecordingSession],
    segments: int,
    receipts: _Receipts,
    report: Report,
    console: Console,
) -> None:
    """Enqueues the writes behind a live panel, flushes, and waits for the
    enricher to catch up; fills in the report."""
    loose = next(session for session in sessions if session.device == LOOSE_CABLE)
    pause_at, resume_at = int(segments * PAUSE_AT), int(segments * RESUME_AT)
    changes = 2 if segments else 0
    panel = _Panel(store, enricher, segments + _thumbnail_count(segments) + changes, segments)
    events = report.events
    started = time.perf_counter()
    before = receipts.count
    spent = longest = 0.0
    number = 0  # segments so far
    with Live(panel, console=console, refresh_per_second=LIVE_REFRESH):
        for priority, entity in _make_writes(random.Random(SEED + 1), sessions, segments):
            if priority is Priority.NORMAL:
                if number == pause_at:
                    loose.state = "paused"
                    _pause(store, loose, receipts, report, console)
                if number == resume_at:
                    loose.state = "recording"
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


def _pause(
    store: statekeep.Store,
    session: RecordingSession,
    receipts: _Receipts,
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


def _compare_save_many(sessions: list[RecordingSession], segments: int) -> int:
    """The same segments and thumbnails with one save_many, into a scratch file."""
    folder = tempfile.mkdtemp(prefix="statekeep-demo-save-many-")
    try:
        url = f"sqlite:///{os.path.join(folder, 'scratch.db')}"
        with statekeep.open(url, outbox=True) as scratch:
            writes = _make_writes(random.Random(SEED + 1), sessions, segments)
            return scratch.save_many((entity for _, entity in writes), chunk_size=1_000)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class _Receipts:
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


class _Panel:
    """The live view of `store.writebehind.stats()` and of the enricher: rich
    renders it (calls __rich__) at each refresh on a terminal, and once at the
    end elsewhere."""

    def __init__(
        self, store: statekeep.Store, enricher: Enricher, expected: int, segments: int
    ) -> None:
        self._engine = store.writebehind
        self._enricher = enricher
        self._segments = segments
        first = self._engine.stats()
        self._base = first.stored  # the sessions were stored before the stream
        self._expected = expected
        self._enqueued = 0
        self._began = time.monotonic()
        self._samples: deque[tuple[float, int]] = deque([(self._began, 0)])
        self._finished: float | None = None
        self.peak: dict[str, int] = dict.fromkeys(first.pending, 0)

    def sample(self, enqueued: int) -> None:
        """From the enqueuing thread: how far it is, and the pending peaks."""
        self._enqueued = enqueued
        for name, count in self._engine.stats().pending.items():
            self.peak[name] = max(self.peak.get(name, 0), count)

    def finish(self) -> None:
        self._finished = time.monotonic()

    def __rich__(self) -> Panel:
        stats = self._engine.stats()
        now = time.monotonic()
        stored = stats.stored - self._base
        if self._finished is None:  # stored/s over the last second
            self._samples.append((now, stored))
            while len(self._samples) > 2 and now - self._samples[1][0] >= 1.0:
                self._samples.popleft()
            since, before = self._samples[0]
            rate = f"{(stored - before) / max(now - since, 1e-9):,.0f}"
        else:
            rate = f"{stored / max(self._finished - self._began, 1e-9):,.0f} on average"
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_column(justify="right")
        total = max(self._expected, 1)
        grid.add_row(
            "enqueued",
            ProgressBar(total, self._enqueued, width=BAR_WIDTH),
            f"{self._enqueued:,} / {self._expected:,}",
        )
        grid.add_row("stored", ProgressBar(total, stored, width=BAR_WIDTH), f"{stored:,}")
        pending = Text()
        for priority in reversed(Priority):
            pending.append(f"{priority.name} ", style="dim")
            pending.append(f"{stats.pending.get(priority.name, 0):,}  ")
        grid.add_row("pending", pending, "")
        grid.add_row("in flight", f"{stats.in_flight:,}", "")
        grid.add_row("stored/s", rate, "")
        grid.add_row("oldest pending", f"{stats.oldest_pending_age:.2f} s", "")
        enriched, handled, written = self._enricher.progress()
        grid.add_row(
            "enriched",
            ProgressBar(max(self._segments, 1), enriched, width=BAR_WIDTH),
            f"{enriched:,} segments",
        )
        lag = Text()
        for what, count in (("written", written), ("handled", handled), ("lag", written - handled)):
            lag.append(f"{what} ", style="dim")
            lag.append(f"{count:,}  ")
        grid.add_row("outbox", lag, "")
        failures = self._enricher.latest.get("failures", 0)
        if failures:
            grid.add_row("enricher", Text(f"{failures:,} handler failures", style="red"), "")
        if stats.retried or stats.dead_lettered or stats.last_error:
            problem = f"retried {stats.retried:,}, dead-lettered {stats.dead_lettered:,}"
            if stats.last_error:
                problem += f"\nlast error: {stats.last_error}"
            grid.add_row("problems", Text(problem, style="red"), "")
        return Panel(
            grid,
            title="write-behind: store.writebehind.stats()",
            subtitle=f"events: durable subscriber 'enricher' in process {self._enricher.pid}",
            expand=False,
        )


# -- data ----------------------------------------------------------------------
def _make_sessions(rng: random.Random) -> Iterator[RecordingSession]:
    base = datetime(2024, 5, 21, 9, 0, tzinfo=UTC)
    for number in range(SESSIONS):
        device = f"mic-{number % DEVICES:02d}"
        yield RecordingSession(
            name=f"take-{number + 1:02d}",
            device=device,
            started=base + timedelta(minutes=number * 7 + rng.randrange(5)),
        )


def _make_writes(
    rng: random.Random, sessions: list[RecordingSession], count: int
) -> Iterator[Write]:
    """Segments as they arrive (the sessions record at once, so they interleave),
    NORMAL; after every THUMBNAIL_EVERY segments of a session, its thumbnail, LOW."""
    clock = [0] * len(sessions)
    peaks: list[list[float]] = [[] for _ in sessions]
    since = [0] * len(sessions)  # where the next thumbnail starts
    for number in range(count):
        slot = number % len(sessions)
        duration = rng.randrange(200, 800)
        # mostly well below full scale; a few percent clip
        peak = min(0.0, round(rng.gauss(-12.0, 5.5), 2))
        words = rng.choices(WORDS, k=rng.randrange(2, 7))
        index = number // len(sessions)
        yield (
            Priority.NORMAL,
            Segment(
                session_id=sessions[slot].id,
                index=index,
                start_ms=clock[slot],
                duration_ms=duration,
                peak_db=peak,
                transcript=" ".join(words),
            ),
        )
        clock[slot] += duration
        peaks[slot].append(peak)
        if len(peaks[slot]) == THUMBNAIL_EVERY:
            yield (
                Priority.LOW,
                Thumbnail(
                    session_id=sessions[slot].id,
                    first_index=index + 1 - THUMBNAIL_EVERY,
                    start_ms=since[slot],
                    duration_ms=clock[slot] - since[slot],
                    peaks=peaks[slot],
                ),
            )
            peaks[slot], since[slot] = [], clock[slot]


def _thumbnail_count(segments: int) -> int:
    """How many thumbnails _make_writes makes for this many segments."""
    each, extra = divmod(segments, SESSIONS)
    return sum((each + (slot < extra)) // THUMBNAIL_EVERY for slot in range(SESSIONS))


# -- steps that only show things -------------------------------------------------
def _show_conflict(store: statekeep.Store, session_id: str, console: Console) -> None:
    """Two copies of one session: the second save is refused, nothing is lost."""
    mine = store.get(RecordingSession, session_id)
    theirs = store.get(RecordingSession, session_id)
    theirs.name += " (edited elsewhere)"
    store.save(theirs)
    mine.name += " (stale)"
    try:
        store.save(mine)
    except statekeep.ConflictError:
        console.print(
            f"   a stale copy of {theirs.name!r} was refused with ConflictError",
            style="dim",
            markup=False,
        )
    else:  # pragma: no cover - would be a bug in statekeep
        raise AssertionError("saving a stale copy should raise ConflictError")


def _show_queries(store: statekeep.Store, console: Console) -> None:
    by_state = {
        state: store.count(RecordingSession, state=state) for state in ("recording", "complete")
    }
    console.print(
        f"   sessions by state: {by_state['complete']} complete, {by_state['recording']} recording"
    )
    console.print(f"   flagged segments: {store.count(Segment, flagged=True):,}")

    session = next(store.find(RecordingSession, state="complete", order_by="-started", limit=1))
    total = store.count(Segment, session_id=session.id)
    flagged = store.count(Segment, session_id=session.id, flagged=True)
    console.print(
        f"   session {session.name!r} on {session.device}: "
        f"{total:,} segments, {flagged} flagged; the first five:"
    )
    table = Table(box=None, padding=(0, 2), show_edge=False)
    for column in ("#", "start", "length", "peak", "flag", "transcript"):
        if column == "transcript":
            table.add_column(column, no_wrap=True, overflow="ellipsis")
        else:
            table.add_column(column, justify="right")
    for segment in store.find(Segment, session_id=session.id, order_by="index", limit=5):
        table.add_row(
            str(segment.index),
            f"{segment.start_ms / 1000:.2f} s",
            f"{segment.duration_ms} ms",
            f"{segment.peak_db:.1f} dB",
            "clip" if segment.flagged else "",
            segment.transcript,
        )
    console.print(table)

    first = next(
        store.find(Thumbnail, session_id=session.id, order_by="first_index", limit=1), None
    )
    if first is not None:
        console.print(
            f"   {store.count(Thumbnail, session_id=session.id)} waveform thumbnails; "
            f"the first covers {first.start_ms / 1000:.1f}-"
            f"{(first.start_ms + first.duration_ms) / 1000:.1f} s, peak {max(first.peaks):.1f} dB"
        )

    clips = list(store.find(Segment, session_id=session.id, flagged=True, order_by="start_ms"))
    if clips:
        console.print(
            f"   clipping in {session.name!r} at: "
            + ", ".join(f"{s.start_ms / 1000:.1f} s" for s in clips[:4])
            + (", ..." if len(clips) > 4 else "")
        )


# -- summary ---------------------------------------------------------------------
def _file_size(db_path: str) -> int:
    return sum(
        os.path.getsize(db_path + suffix)
        for suffix in ("", "-wal")
        if os.path.exists(db_path + suffix)
    )


def _per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds > 0 else "-"


def _by_priority(counts: dict[str, int]) -> str:
    return " / ".join(f"{counts.get(p.name, 0):,}" for p in reversed(Priority))


def _summary(report: Report) -> Table:
    timings = report.timings
    table = Table(title="statekeep demo: summary", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("sessions created", f"{report.sessions:,}")
    table.add_row("segments written", f"{report.segments_written:,}")
    table.add_row("thumbnails written", f"{report.thumbnails_written:,}")
    table.add_row("session state changes", f"{report.state_changes:,}")
    table.add_row("segments flagged", f"{report.segments_flagged:,}")
    table.add_row("sessions completed", f"{report.sessions_completed:,}")
    table.add_row(
        "deleted: sessions / segments / thumbnails",
        f"{report.sessions_deleted} / {report.segments_deleted:,} / {report.thumbnails_deleted:,}",
    )
    for what, count in report.stored.items():
        table.add_row(f"stored now: {what}", f"{count:,}", end_section=what == "thumbnails")
    table.add_row("enqueued: critical / normal / low", _by_priority(report.enqueued))
    table.add_row("stored: critical / normal / low", _by_priority(report.stored_by_priority))
    table.add_row("failed writes", f"{sum(report.failed.values()):,}")
    table.add_row("peak pending: critical / normal / low", _by_priority(report.peak_pending))
    table.add_row(
        f"wait_stored: {report.sessions} new sessions", f"{report.sessions_wait * 1000:,.1f} ms"
    )
    table.add_row(
        "wait_stored: CRITICAL pause",
        f"{report.critical_wait * 1000:,.1f} ms" if report.critical_wait else "-",
    )
    enqueues = sum(report.enqueued.values())
    table.add_row(
        "time in enqueue(): mean / max",
        f"{report.enqueue_seconds / max(enqueues, 1) * 1e6:,.1f} us / "
        f"{report.enqueue_longest * 1000:,.1f} ms",
    )
    table.add_row(
        "journal segments after close",
        f"{report.journal_segments}",
        end_section=True,
    )
    table.add_row(
        "enqueue throughput (until stored)",
        _rate(report.streamed, timings["write segments"]) + " writes",
    )
    table.add_row(
        "save_many throughput (same writes)",
        _rate(report.compared_writes, timings["save_many (scratch file)"]) + " writes",
    )
    table.add_row("update throughput", _rate(report.updates, timings["update"]) + " entities")
    table.add_row(
        "delete throughput",
        _rate(
            report.segments_deleted + report.thumbnails_deleted + report.sessions_deleted,
            timings["delete"],
        )
        + " entities",
        end_section=True,
    )
    for what, value in event_rows(report.events):
        table.add_row(what, value, end_section=what.startswith("enricher catch-up"))
    for step in (
        "create sessions",
        "write segments",
        "flush",
        "save_many (scratch file)",
        "update",
        "delete",
        "queries",
    ):
        label = "enqueue + flush" if step == "write segments" else step
        table.add_row(f"time: {label}", f"{timings[step]:.3f} s")
    table.add_row("file size (db + wal)", f"{report.file_bytes / 1_048_576:,.1f} MiB")
    table.add_row("file size after close", f"{report.closed_bytes / 1_048_576:,.1f} MiB")
    return table
