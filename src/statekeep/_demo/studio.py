"""The demo's live studio state: a statekeep.state AppState kept in the store.

The recorder's console shows one live state, `Studio`: the session it
follows (the take on the microphone whose cable comes loose), the input
meter of every session, and the transport (stopped, recording, paused). It
is `store.state("studio", Studio)`, kept in the demo's SQLite file:

- a meter feed, a thread of its own, sets one session's meter METER_HZ times
  a second (NORMAL), from the same made-up levels as the flow pipeline
  (statekeep._demo.meters.levels). That is faster than a frame (16 ms), so
  the state coalesces them: a version per frame, not per reading;
- the transport changes at once (CRITICAL): recording when the stream
  starts, paused when the cable comes loose, recording again, stopped;
- the state persists itself every 0.1 s through the write-behind queue
  (compressed deltas, a full snapshot now and then).

At the end the summary shows how much its kept versions share, how many
updates were coalesced, and how long a fresh Store on the same file takes to
restore it (`restore`, once the demo's store is closed).
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel

import statekeep
from statekeep import Priority
from statekeep.state import AppState

from .meters import levels
from .recordings import RecordingSession

NAME = "studio"  # the state's name in the store
METER_HZ = 200  # meter updates a second, all sessions together
CATCH_UP = 0.1  # seconds behind after which the feed skips ahead instead of bursting

Transport = Literal["stopped", "recording", "paused"]


class CurrentSession(BaseModel):
    """The session the console follows."""

    id: str = ""
    title: str = ""
    started: datetime | None = None


class Studio(BaseModel):
    """The console's live state."""

    session: CurrentSession = CurrentSession()
    meters: dict[str, float] = {}  # the latest input level of each take, dB
    transport: Transport = "stopped"


@dataclass
class StudioReport:
    """What the studio state did, for the summary (and for tests)."""

    meter_updates: int = 0  # set() calls of the meter feed
    meter_seconds: float = 0.0  # how long the feed ran
    transport: list[str] = field(default_factory=list)  # the CRITICAL changes, in order
    version: int = 0  # the state's version at the end
    updates: int = 0  # updates applied (meters, transport, the session)
    coalesced: int = 0  # updates that did not need a version of their own
    sharing: float = 0.0  # state.memory().sharing, over the kept versions
    kept: int = 0  # versions measured
    kept_bytes: int = 0  # what they take together
    copies_bytes: int = 0  # what they would take as full copies
    durable: int = -1  # durable_version once the recording stopped
    fulls: int = 0  # full snapshots enqueued (the persister's line of stats())
    deltas: int = 0  # delta snapshots enqueued
    restored: int = -1  # the version a fresh store restored
    restored_equal: bool = False  # with the value the demo left
    restore_seconds: float = 0.0  # store.state() on the fresh store

    @property
    def meter_rate(self) -> float:
        return self.meter_updates / self.meter_seconds if self.meter_seconds else 0.0


class Desk:
    """The studio state, its meter feed and its transport, during the stream
    (statekeep._demo.stream): `start`, `transport` at the pause and the
    resume, `stop` before the store is flushed."""

    def __init__(self, store: statekeep.Store, sessions: list[RecordingSession]) -> None:
        self.state: AppState[Studio] = store.state(NAME, Studio)
        self.report = StudioReport()
        self._sessions = sessions
        self._takes = {session.id: session.name for session in sessions}
        self._stop = threading.Event()
        self._feed = threading.Thread(target=self._run, name="demo-meter-feed", daemon=True)
        self.final: Any = None  # the last snapshot, once stopped

    def start(self, follow: RecordingSession) -> None:
        """Follows a session and starts recording (one CRITICAL version), then the feed."""
        with self.state.batch() as studio:
            studio.session = CurrentSession(id=follow.id, title=follow.name, started=follow.started)
            studio.transport = "recording"
        self.report.transport.append("recording")
        self._feed.start()

    def transport(self, to: Transport) -> None:
        self.state.set("transport", to, priority=Priority.CRITICAL)
        self.report.transport.append(to)

    def _run(self) -> None:
        """METER_HZ readings a second on a steady schedule; a reading late
        by less than CATCH_UP is sent at once, a longer delay is skipped."""
        state, takes, period = self.state, self._takes, 1.0 / METER_HZ
        began = due = time.perf_counter()
        sent = 0
        for session_id, level in levels(self._sessions):
            wait = due - time.perf_counter()
            if self._stop.wait(wait) if wait > 0 else self._stop.is_set():
                break
            state.set(("meters", takes[session_id]), level)  # NORMAL: coalesced per frame
            sent += 1
            due = max(due + period, time.perf_counter() - CATCH_UP)
        self.report.meter_updates = sent
        self.report.meter_seconds = time.perf_counter() - began

    def stop(self) -> None:
        """Stops the feed, stops the transport, and waits until the newest
        version is durable: nothing more is written for the studio after it."""
        self._stop.set()
        if self._feed.is_alive():
            self._feed.join()
        self.transport("stopped")
        report, state = self.report, self.state
        report.durable = state.wait_durable(10.0)
        stats = state.stats()
        report.version = stats.version
        report.updates = stats.counters.updates_applied
        report.coalesced = stats.coalesced
        # the persister reports one line: "3 full + 4 delta snapshots, zstd level 3, ..."
        counts = re.match(r"([\d,]+) full \+ ([\d,]+) delta", str(stats.extra.get("persisted")))
        if counts:
            report.fulls, report.deltas = (int(n.replace(",", "")) for n in counts.groups())
        memory = state.memory()
        report.sharing = memory.sharing
        report.kept = memory.versions
        report.kept_bytes = memory.total_bytes
        report.copies_bytes = memory.copies_bytes
        self.final = state.value


def restore(db_path: str, desk: Desk) -> None:
    """Opens the file again in a fresh Store (the demo's is closed) and
    times store.state(): the last durable version, read and rebuilt."""
    report = desk.report
    with statekeep.open(f"sqlite:///{db_path}") as store:
        began = time.perf_counter()
        state = store.state(NAME, Studio)
        report.restore_seconds = time.perf_counter() - began
        report.restored = state.version
        report.restored_equal = state.value == desk.final


def _size(count: int) -> str:
    return f"{count / 1024:,.1f} KiB" if count < 1_048_576 else f"{count / 1_048_576:,.1f} MiB"


def studio_rows(report: StudioReport) -> list[tuple[str, str]]:
    """The summary's rows for the studio state."""
    if not report.transport:
        return []
    per_version = report.updates / max(report.version, 1)
    last = (
        "the last"
        if report.restored == report.version and report.restored_equal
        else "NOT the last"
    )
    return [
        (
            "state: meter updates (NORMAL)",
            f"{report.meter_updates:,} at {report.meter_rate:,.0f}/s",
        ),
        (
            "state: transport changes (CRITICAL)",
            f"{len(report.transport)}, the last: {report.transport[-1]}",
        ),
        (
            "state: versions / updates coalesced",
            f"{report.version:,} / {report.coalesced:,} ({per_version:.1f} per version)",
        ),
        (f"state: sharing of {report.kept} kept versions", f"{report.sharing:.1%}"),
        (
            "state: their memory / as full copies",
            f"{_size(report.kept_bytes)} / {_size(report.copies_bytes)}",
        ),
        (
            "state: restore in a fresh store",
            f"{report.restore_seconds * 1000:,.1f} ms, version {report.restored:,} ({last})",
        ),
    ]
