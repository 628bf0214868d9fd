"""What the demo measured (Report), and the summary table it prints at the end."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from rich.table import Table

from statekeep import AlertRaised, Priority
from statekeep.metrics import Advice, Snapshot

from .events import EventsReport, event_rows
from .meters import MetersReport, meter_rows
from .studio import StudioReport, studio_rows


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
    startup: dict[str, int] = field(default_factory=dict)  # sessions moved by each event
    sessions_by_state: dict[str, int] = field(default_factory=dict)  # store.count_by at the end
    diagram: str = ""  # the Mermaid file of SessionFlow, next to the database
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
    meters: MetersReport = field(default_factory=MetersReport)
    studio: StudioReport = field(default_factory=StudioReport)
    timings: dict[str, float] = field(default_factory=dict)
    metrics: Snapshot | None = None  # store.metrics() at the end of the run
    advice: list[Advice] = field(default_factory=list)  # store.advice() then
    alerts: list[AlertRaised] = field(default_factory=list)  # raised during the run

    @property
    def updates(self) -> int:
        return self.segments_flagged + self.sessions_completed

    @property
    def streamed(self) -> int:
        """Writes enqueued while streaming: segments, thumbnails, pause and resume."""
        return self.segments_written + self.thumbnails_written + self.state_changes - self.sessions


def file_size(db_path: str) -> int:
    return sum(
        os.path.getsize(db_path + suffix)
        for suffix in ("", "-wal")
        if os.path.exists(db_path + suffix)
    )


def per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}/s" if seconds > 0 else "-"


def _by_priority(counts: dict[str, int]) -> str:
    return " / ".join(f"{counts.get(p.name, 0):,}" for p in reversed(Priority))


def summary(report: Report) -> Table:
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
        "sessions per state (count_by)",
        ", ".join(f"{state} {count}" for state, count in sorted(report.sessions_by_state.items())),
    )
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
    flow = meter_rows(report.meters)
    for what, value in flow:
        table.add_row(what, value, end_section=(what, value) == flow[-1])
    studio = studio_rows(report.studio)
    for what, value in studio:
        table.add_row(what, value, end_section=(what, value) == studio[-1])
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


def advice_table(advice: list[Advice]) -> Table:
    """store.advice() for the demo's own run, biggest gain first."""
    table = Table(title="statekeep advice for this run (store.advice())", title_justify="left")
    table.add_column("advice", ratio=2)
    table.add_column("evidence", ratio=3)
    table.add_column("change", ratio=3)
    for item in advice:
        table.add_row(item.title, item.evidence, item.change)
    if not advice:
        table.add_row("none: nothing in this run would gain from a change", "", "")
    return table


def alerts_line(alerts: list[AlertRaised]) -> str:
    """The alerts the store raised during the run (AlertRaised events), by alert and subject."""
    if not alerts:
        return "alerts raised during the run: none"
    counts: dict[str, int] = {}
    for alert in alerts:
        name = alert.alert + (f" ({alert.subject})" if alert.subject else "")
        counts[name] = counts.get(name, 0) + 1
    shown = ", ".join(f"{name} x{n}" if n > 1 else name for name, n in counts.items())
    return f"alerts raised during the run (AlertRaised events): {shown}"
