"""The recording-sessions demo behind `statekeep demo` (and `make demo`).

A recorder ingests audio from ~50 devices at once: each recording session
produces many small segments, and every so often a waveform thumbnail. The
demo keeps them in one SQLite file, written behind the recorder's back with
`store.enqueue`, by priority:

- CRITICAL: session state changes (a session starts, pauses, resumes), stored
  at once, and waited for where the recorder needs to know;
- NORMAL: the segments, coalesced into batches;
- LOW: the thumbnails, written when no segment is waiting (or once 5 s old).

The steps:

1. create the sessions (CRITICAL enqueues, waited for with `wait_stored`);
2. stream the segments and thumbnails through the write-behind queue behind a
   live panel of its statistics, pausing and resuming one session on the way
   (CRITICAL, one of them waited for), then `store.flush()`; for comparison,
   the same writes with one `save_many` into a scratch file;
3. update: flag clipping segments and mark most sessions complete, in one
   transaction (and show that a stale copy cannot overwrite newer data);
4. delete a session recorded with a loose cable, with all its segments and
   thumbnails, in one transaction;
5. query by indexed fields and show a few results;
6. print counts, throughputs, timings and the size of the file.

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
    with statekeep.open(f"sqlite:///{db_path}") as store:
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
        started = time.perf_counter()
        _stream(store, sessions, segments, receipts, report, console)
        streamed = time.perf_counter()
        report.timings["write segments"] = streamed - started
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
                first = next(
                    store.find(Thumbnail, session_id=session.id, order_by="first_index", limit=1),
                    None,
                )
    if first is not None:
        console.print(
            f"   its waveform thumbnails: {store.count(Thumbnail, session_id=session.id)}; "
            f"the first covers {first.start_ms / 1000:.1f}-"
            f"{(first.start_ms + first.duration_ms) / 1000:.1f} s, "
            f"{len(first.peaks)} peaks up to {max(first.peaks):.1f} dB"
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
