"""The demo's steps, on one SQLite file (statekeep._demo says what it shows).

1. create the sessions (CRITICAL enqueues, waited for with `wait_stored`),
   and move them from idle to active through their state machine
   (SessionFlow, with `store.transition_many`);
2. stream the segments and thumbnails through the write-behind queue
   (statekeep._demo.stream), the studio's live state meanwhile (meters at
   200 Hz, the transport: statekeep._demo.studio), and the sessions' level
   readings through a statekeep.flow Pipeline (statekeep._demo.meters);
3. update: flag clipping segments and complete most sessions (their
   machine's end and ended), in one transaction (and show that a stale copy
   cannot overwrite newer data);
4. delete a session recorded with a loose cable, with all its segments and
   thumbnails, in one transaction;
5. query by indexed fields and show a few results;
6. stop the enricher; print counts (sessions per state: `store.count_by`),
   events, throughputs, timings and the size of the file; restore the
   studio state from the file in a fresh Store; write the sessions' state
   machine as a Mermaid diagram next to the database.

The file is left in place so it can be inspected with the `sqlite3` shell.
"""

from __future__ import annotations

import os
import random
import shlex
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

import statekeep
from statekeep import Priority

from .events import Enricher, SessionChanges
from .meters import METER_RATE, READINGS_PER_SEGMENT, meters
from .recordings import (
    CATCH_UP_TIMEOUT,
    CLIP_DB,
    COMPLETE,
    LOOSE_CABLE,
    SEED,
    STARTUP,
    STILL_RECORDING,
    WAIT_TIMEOUT,
    RecordingSession,
    Segment,
    SessionFlow,
    Thumbnail,
    make_sessions,
)
from .report import Report, advice_table, alerts_line, file_size, per_second, summary
from .stream import Receipts, compare_save_many, stream
from .studio import Desk, restore

DASHBOARD_URL = "http://127.0.0.1:8000/"  # where `statekeep serve` serves it by default


def run(
    path: str | None,
    segments: int,
    meter_rate: int = METER_RATE,
    *,
    then: Callable[[str], int] | None = None,
) -> int:
    """Run the demo into `path` (default: a new file in a fresh temp folder);
    then(db_path), if given, once it is done (`statekeep demo --serve`: the
    dashboard), whose exit code is the demo's. Without it, the last line is
    the command that serves the dashboard."""
    console = Console(highlight=False)
    if segments < 0:
        console.print(Text(f"--segments must be 0 or more, not {segments}", style="red"))
        return 2
    if meter_rate < 1:
        console.print(Text(f"--meter-rate must be 1 or more, not {meter_rate}", style="red"))
        return 2
    db_path = _choose_path(path)
    problem = _path_problem(db_path)
    if problem:
        console.print(Text(problem, style="red"), soft_wrap=True)
        return 2
    console.print(Text("statekeep demo: recording sessions", style="bold"))
    console.print(Text(f"database: {db_path}"), soft_wrap=True)
    report = demo(db_path, segments, console, meter_rate)
    console.print()
    console.print(summary(report))
    if report.metrics is not None:
        console.print(report.metrics.table(window="total", kinds=("histogram",)))
    console.print(advice_table(report.advice))
    console.print(Text(alerts_line(report.alerts)), soft_wrap=True)
    console.print()
    console.print(Text("The database is kept at:", style="bold"))
    console.print(Text(db_path), soft_wrap=True)
    console.print(Text("Inspect it with:", style="bold"))
    hint = f'sqlite3 {shlex.quote(db_path)} "select count(*) from segment"'
    console.print(Text(hint), soft_wrap=True)
    console.print(Text("The sessions' state machine, as a Mermaid diagram:", style="bold"))
    console.print(Text(report.diagram), soft_wrap=True)
    if then is not None:
        console.print(Text("The live dashboard of the database, until Ctrl-C:", style="bold"))
        return then(db_path)
    console.print(
        Text(
            "See it live in a browser (the web extra; `statekeep demo --serve` does both):",
            style="bold",
        )
    )
    console.print(Text(f"statekeep serve {shlex.quote(f'sqlite:///{db_path}')}"), soft_wrap=True)
    console.print(Text(f"dashboard: {DASHBOARD_URL}"), soft_wrap=True)
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


def demo(db_path: str, segments: int, console: Console, meter_rate: int = METER_RATE) -> Report:
    """The steps, on an open store; returns what they did and how long each took."""
    report = Report(db_path)
    rng = random.Random(SEED)
    receipts = Receipts()
    changes = SessionChanges()
    with (
        statekeep.open(f"sqlite:///{db_path}", outbox=True) as store,
        Enricher(db_path, Segment, CLIP_DB) as enricher,
    ):
        store.on(RecordingSession.Transitioned, changes)
        store.on(statekeep.AlertRaised, report.alerts.append)  # the store's own alerts
        # 1. create the sessions: CRITICAL, and the recorder waits until they are stored
        started = time.perf_counter()
        sessions = list(make_sessions(rng))
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
        started = time.perf_counter()
        for event in STARTUP:  # a transaction per chunk of sessions, their events after it
            report.startup[event] = store.transition_many(RecordingSession, event).moved
        report.timings["start sessions"] = time.perf_counter() - started
        fresh = store.get_many(RecordingSession, [session.id for session in sessions])
        sessions = [fresh[session.id] for session in sessions]  # at their new versions
        console.print(
            f"   then idle > active: {min(report.startup.values())} sessions moved by "
            f"{', '.join(STARTUP)}\n"
            f"   (store.transition_many, SessionFlow) in "
            f"{report.timings['start sessions'] * 1000:.1f} ms",
            markup=False,
        )

        # 2. stream the segments and thumbnails through the write-behind queue,
        # with the studio's live state kept in the store meanwhile
        desk = Desk(store, sessions)
        stream(store, enricher, sessions, segments, receipts, report, console, desk, changes)
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
        studio = desk.report
        console.print(
            f"   studio state (store.state): {studio.meter_updates:,} meter updates at "
            f"{studio.meter_rate:,.0f}/s (NORMAL),\n"
            f"   transport {' > '.join(studio.transport)} (CRITICAL);\n"
            f"   {studio.version:,} versions ({studio.coalesced:,} updates coalesced), "
            f"{studio.fulls:,} full + {studio.deltas:,} delta snapshots",
            markup=False,
        )

        report.meters = meters(
            store, sessions, segments * READINGS_PER_SEGMENT, meter_rate, console
        )
        started = time.perf_counter()
        report.compared_writes = compare_save_many(sessions, segments)
        compared = report.timings["save_many (scratch file)"] = time.perf_counter() - started
        streaming = per_second(report.streamed, report.timings["write segments"])
        batching = per_second(report.compared_writes, compared)
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
                    state=SessionFlow.active,
                    order_by="started",
                    limit=max(0, len(sessions) - STILL_RECORDING),
                )
            )
            for session in finished:
                for event in COMPLETE:
                    session.send(event)  # checked against SessionFlow, announced when saved
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
        report.sessions_by_state = {
            str(state): count for state, count in store.count_by(RecordingSession, "state").items()
        }
        report.stored = {
            "sessions": store.count(RecordingSession),
            "complete sessions": store.count(RecordingSession, state=SessionFlow.completed),
            "segments": store.count(Segment),
            "flagged segments": store.count(Segment, flagged=True),
            "thumbnails": store.count(Thumbnail),
        }
        report.timings["queries"] = time.perf_counter() - started

        # 6. a query no index serves, run for every session: the advice below catches it
        started = time.perf_counter()
        loudest = _loudest(store)
        report.timings["unindexed queries"] = time.perf_counter() - started
        console.print(
            f"[green]6.[/] the first segment over each level from -1 to -12 dB "
            f"({len(loudest)} found; find on peak_db, which no index serves)"
        )
        report.metrics = store.metrics()
        report.advice = store.advice()

        enricher.fill(report.events, enricher.stop())
        changes.fill(report.events, report.sessions)
        report.file_bytes = file_size(db_path)
    report.closed_bytes = file_size(db_path)
    report.journal_segments = len(list(Path(db_path + ".writebehind").glob("segment-*.log")))
    restore(db_path, desk)
    report.studio = desk.report
    report.diagram = db_path + ".sessions.mmd"
    with open(report.diagram, "w", encoding="utf-8") as diagram:
        diagram.write(SessionFlow.to_mermaid())
    return report


def _loudest(store: statekeep.Store) -> dict[int, Segment]:
    """For each level from -1 to -12 dB, the first segment louder than it: a
    find on peak_db and start_ms, which no index serves (the demo's pattern
    for store.advice())."""
    found = {}
    for level in range(-1, -13, -1):
        first = next(
            store.find(Segment, Segment.f.peak_db > level, order_by="start_ms", limit=1), None
        )
        if first is not None:
            found[level] = first
    return found


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
    by_state = store.count_by(RecordingSession, "state")  # one grouped query
    console.print(
        "   sessions by state (store.count_by): "
        + ", ".join(f"{count} {state}" for state, count in sorted(by_state.items()))
    )
    console.print(f"   flagged segments: {store.count(Segment, flagged=True):,}")

    session = next(
        store.find(RecordingSession, state=SessionFlow.completed, order_by="-started", limit=1)
    )
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
