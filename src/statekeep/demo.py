"""The recording-sessions demo behind `statekeep demo` (and `make demo`).

A recorder ingests audio from ~50 devices at once: each recording session
produces many small segments. The demo keeps them in one SQLite file:

1. create the sessions;
2. write the segments with `save_many` over a generator (bounded memory,
   one transaction), behind a progress bar;
3. update: flag clipping segments and mark most sessions complete, in one
   transaction (and show that a stale copy cannot overwrite newer data);
4. delete a session recorded with a loose cable, with all its segments, in
   one transaction;
5. query by indexed fields and show a few results;
6. print counts, throughput, timings and the size of the file.

The file is left in place so it can be inspected with the `sqlite3` shell.
"""

from __future__ import annotations

import os
import random
import shlex
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

import statekeep

SESSIONS = 50
DEVICES = 8
LOOSE_CABLE = "mic-07"  # its first take is unusable and gets deleted
STILL_RECORDING = 10  # the newest sessions are still recording
CLIP_DB = -1.0  # peaks above this are flagged as clipping
PROGRESS_STEP = 1_000  # advance the progress bar every this many segments
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
    state: Annotated[Literal["recording", "complete"], statekeep.Indexed()] = "recording"
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


@dataclass
class Report:
    """What the demo measured, for the summary (and for tests)."""

    path: str
    sessions: int = 0
    segments_written: int = 0
    segments_flagged: int = 0
    sessions_completed: int = 0
    sessions_deleted: int = 0
    segments_deleted: int = 0
    file_bytes: int = 0  # db + wal, while the store is open
    closed_bytes: int = 0  # after close() folded the WAL into the file
    stored: dict[str, int] = field(default_factory=dict)  # counted at the end
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def updates(self) -> int:
        return self.segments_flagged + self.sessions_completed


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
    for suffix in ("", "-wal", "-shm"):
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
    with statekeep.open(f"sqlite:///{db_path}") as store:
        # 1. create the sessions
        started = time.perf_counter()
        sessions = list(_make_sessions(rng))
        report.sessions = store.save_many(sessions)
        report.timings["create sessions"] = time.perf_counter() - started
        console.print(f"[green]1.[/] created {report.sessions} recording sessions")

        # 2. write the segments
        started = time.perf_counter()
        with _progress(console) as progress:
            task = progress.add_task("writing segments", total=segments)
            stream = _tracked(_make_segments(rng, sessions, segments), progress, task)
            report.segments_written = store.save_many(stream, chunk_size=1_000)
            progress.update(task, completed=segments)
        report.timings["write segments"] = time.perf_counter() - started
        console.print(
            f"[green]2.[/] wrote {report.segments_written:,} segments with one save_many "
            f"(one transaction) in {report.timings['write segments']:.2f} s"
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
                store.delete(session)
                report.segments_deleted += len(doomed)
                report.sessions_deleted += 1
        report.timings["delete"] = time.perf_counter() - started
        for session in faulty:
            console.print(
                f"[green]4.[/] in one transaction: deleted {session.name!r} "
                f"({LOOSE_CABLE} had a loose cable)\n"
                f"   and its {report.segments_deleted:,} segments"
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
        }
        report.timings["queries"] = time.perf_counter() - started

        report.file_bytes = _file_size(db_path)
    report.closed_bytes = _file_size(db_path)
    return report


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


def _make_segments(
    rng: random.Random, sessions: list[RecordingSession], count: int
) -> Iterator[Segment]:
    """Segments as they arrive: the sessions record at once, so they interleave."""
    clock = [0] * len(sessions)
    for number in range(count):
        slot = number % len(sessions)
        duration = rng.randrange(200, 800)
        # mostly well below full scale; a few percent clip
        peak = min(0.0, round(rng.gauss(-12.0, 5.5), 2))
        words = rng.choices(WORDS, k=rng.randrange(2, 7))
        yield Segment(
            session_id=sessions[slot].id,
            index=number // len(sessions),
            start_ms=clock[slot],
            duration_ms=duration,
            peak_db=peak,
            transcript=" ".join(words),
        )
        clock[slot] += duration


def _tracked(items: Iterable[Segment], progress: Progress, task: TaskID) -> Iterator[Segment]:
    """Passes the items through, advancing the bar every PROGRESS_STEP items."""
    pending = 0
    for item in items:
        yield item
        pending += 1
        if pending == PROGRESS_STEP:
            progress.advance(task, pending)
            pending = 0
    if pending:
        progress.advance(task, pending)


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("   {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    )


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


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds > 0 else "-"


def _summary(report: Report) -> Table:
    timings = report.timings
    table = Table(title="statekeep demo: summary", title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("sessions created", f"{report.sessions:,}")
    table.add_row("segments written", f"{report.segments_written:,}")
    table.add_row("segments flagged", f"{report.segments_flagged:,}")
    table.add_row("sessions completed", f"{report.sessions_completed:,}")
    table.add_row(
        "deleted",
        f"{report.sessions_deleted} session, {report.segments_deleted:,} segments",
    )
    for what, count in report.stored.items():
        table.add_row(f"stored now: {what}", f"{count:,}", end_section=what == "flagged segments")
    table.add_row(
        "save_many throughput",
        _rate(report.segments_written, timings["write segments"]) + " segments",
        end_section=False,
    )
    table.add_row("update throughput", _rate(report.updates, timings["update"]) + " entities")
    table.add_row(
        "delete throughput",
        _rate(report.segments_deleted + report.sessions_deleted, timings["delete"]) + " entities",
        end_section=True,
    )
    for step in ("create sessions", "write segments", "update", "delete", "queries"):
        table.add_row(f"time: {step}", f"{timings[step]:.3f} s")
    table.add_row("file size (db + wal)", f"{report.file_bytes / 1_048_576:,.1f} MiB")
    table.add_row("file size after close", f"{report.closed_bytes / 1_048_576:,.1f} MiB")
    return table
