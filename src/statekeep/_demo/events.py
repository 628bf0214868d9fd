"""The events of the demo (`statekeep demo`): one handler in the demo's own
process, and a durable subscriber in another process.

- `SessionChanges`, for `store.on(RecordingSession.Transitioned)`: counts the
  sessions' state machine transitions (per state reached: paused, resumed,
  completed among them) right after they commit, for the live panel;
- `Enricher`: the durable subscription "enricher", in a child process
  (`python -m statekeep._demo.events`) that opens the same SQLite file as a
  second store, as another program would, subscribes to `Segment.Created` and
  gives each new segment a loudness class. It reads the outbox the demo's
  store writes (`outbox=True`) and reports its counts every REPORT_EVERY
  seconds on its stdout; the demo asks it to catch up (`wait_idle`) and to stop.

The child finds the entity class by its name
(statekeep._demo.recordings:Segment): only the command line imports the demo.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import statekeep

NAME = "enricher"
REPORT_EVERY = 0.1  # seconds between the child's reports
LOUDNESS = ("clipping", "loud", "normal", "quiet")
LOUD_DB, QUIET_DB = -6.0, -20.0  # peaks above LOUD_DB are loud, below QUIET_DB quiet
# the transitions the summary counts: the state reached -> what the summary calls it
CHANGES = {"paused": "paused", "active": "resumed", "completed": "completed"}
RECENT = 4  # transitions the live panel shows


@dataclass
class EventsReport:
    """What the events part of the demo saw, for the summary (and for tests)."""

    enricher_pid: int | None = None
    session_changes: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(CHANGES.values(), 0)
    )
    reached: dict[str, int] = field(default_factory=dict)  # transitions into each state
    in_process_delivered: int = 0
    in_process_failures: int = 0
    enriched: int = 0
    loudness: dict[str, int] = field(default_factory=dict)
    durable_delivered: int = 0
    durable_failures: int = 0
    lag_at_flush: int = 0  # outbox events not yet handled when store.flush() returned
    caught_up: bool = False
    catch_up: float = 0.0  # store.flush() returned -> the enricher had handled everything


class SessionChanges:
    """The handler of `store.on(RecordingSession.Transitioned)`. It runs in the
    thread that committed: the demo's for the start-up and the completions,
    the write-behind's for the pause and resume. (A session reaches active
    once when it starts, and again when it resumes.)"""

    def __init__(self) -> None:
        self.delivered = self.failures = 0
        self.reached: dict[str, int] = {}
        self.recent: deque[str] = deque(maxlen=RECENT)
        self._lock = threading.Lock()

    def __call__(self, event: statekeep.Transitioned) -> None:
        try:
            with self._lock:
                self.reached[event.target] = self.reached.get(event.target, 0) + 1
                self.recent.append(f"{event.source} > {event.target} ({event.event})")
                self.delivered += 1
        except Exception:  # counted, then raised again
            self.failures += 1
            raise  # the store logs it (statekeep.events logger); the write stands

    def snapshot(self) -> tuple[dict[str, int], list[str]]:
        with self._lock:
            return dict(self.reached), list(self.recent)

    def fill(self, report: EventsReport, sessions: int) -> None:
        with self._lock:
            report.reached = dict(self.reached)
            resumed = self.reached.get("active", 0) - sessions  # active again, not at start
            report.session_changes = {
                "paused": self.reached.get("paused", 0),
                "resumed": max(resumed, 0),
                "completed": self.reached.get("completed", 0),
            }
            report.in_process_delivered, report.in_process_failures = self.delivered, self.failures


class Enricher:
    """The durable subscriber "enricher" in a child process, seen from the demo.
    The child reports as JSON lines on its stdout and reads commands ("idle
    TIMEOUT", "stop") on its stdin; it stops when its stdin ends."""

    def __init__(self, db_path: str, entity: type[statekeep.Entity], clip_db: float) -> None:
        self._db_path = db_path
        where = f"{entity.__module__}:{entity.__qualname__}"
        command = [sys.executable, "-m", __name__, f"sqlite:///{db_path}", where, str(clip_db)]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1
        )
        self.latest: dict[str, Any] = {}
        self.head = 0  # the newest outbox position seen
        self._replies: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, name=f"{NAME}-reports", daemon=True).start()

    @property
    def pid(self) -> int:
        return self._process.pid

    def outcome(self, caught_up: bool, seconds: float, timeout: float) -> str:
        """How the wait for the enricher to catch up ended, in words."""
        if caught_up:
            return f"caught up {seconds:.2f} s later (wait_idle)"
        code = self._process.poll()
        if code is not None:
            return f"NOT caught up: the enricher process ended (exit code {code})"
        return f"NOT caught up within {timeout:.0f} s"

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            message: dict[str, Any] = json.loads(line)
            self.latest = message
            if "reply" in message:
                self._replies.put(message)
        self._replies.put(None)  # the child is gone

    def progress(self) -> tuple[int, int, int]:
        """(segments enriched, outbox position handled, position written)."""
        latest = self.latest
        handled = latest.get("position", 0)
        self.head = max(self.head, _outbox_head(self._db_path), handled)
        return latest.get("enriched", 0), handled, self.head

    def _ask(self, command: str, timeout: float) -> dict[str, Any] | None:
        assert self._process.stdin is not None
        try:
            self._process.stdin.write(f"{command} {timeout}\n")
            self._process.stdin.flush()
            return self._replies.get(timeout=timeout + 10)
        except (OSError, ValueError, queue.Empty):  # ValueError: stdin closed
            return None

    def wait_idle(self, timeout: float) -> bool:
        """True once the child has handled everything committed before the call."""
        reply = self._ask("idle", timeout)
        return bool(reply and reply["idle"])

    def stop(self, timeout: float = 10.0) -> dict[str, Any]:
        """Stops the subscription (saving its checkpoint) and the child; its last counts."""
        if self._process.poll() is None:
            self._ask("stop", timeout)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        return self.latest

    def fill(self, report: EventsReport, final: dict[str, Any]) -> None:
        report.enricher_pid = self.pid
        report.enriched = final.get("enriched", 0)
        report.loudness = final.get("loudness", {})
        report.durable_delivered = final.get("delivered", 0)
        report.durable_failures = final.get("failures", 0)

    def __enter__(self) -> Enricher:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _outbox_head(db_path: str) -> int:
    """The newest position in the outbox (0: none, or all pruned), read as the
    sqlite3 shell would (docs/events.md names the table)."""
    try:
        db = sqlite3.connect(f"{Path(db_path).as_uri()}?mode=ro", uri=True, timeout=0.1)
        try:
            row = db.execute("SELECT max(position) FROM statekeep_outbox").fetchone()
        finally:
            db.close()
    except sqlite3.Error:
        return 0
    return int(row[0] or 0)


# -- in the child process ------------------------------------------------------
class _Loudness:
    """The enricher's handler: a loudness class for each new segment, counted."""

    def __init__(self, clip_db: float) -> None:
        self._clip_db = clip_db
        self.counts = dict.fromkeys(LOUDNESS, 0)

    def __call__(self, event: statekeep.Created) -> None:
        peak = event.entity.peak_db
        if peak > self._clip_db:
            self.counts["clipping"] += 1
        elif peak > LOUD_DB:
            self.counts["loud"] += 1
        elif peak >= QUIET_DB:
            self.counts["normal"] += 1
        else:
            self.counts["quiet"] += 1


def _serve(url: str, entity: type[statekeep.Entity], clip_db: float) -> None:
    """The child: subscribes, reports, and answers "idle" until told to stop or
    its stdin ends (the demo is gone)."""
    loudness = _Loudness(clip_db)
    lock = threading.Lock()
    done = threading.Event()

    def report(**reply: Any) -> None:
        stats = subscription.stats
        line = json.dumps(
            {
                "enriched": sum(loudness.counts.values()),
                "loudness": dict(loudness.counts),
                "position": stats.position,
                "delivered": stats.delivered,
                "failures": stats.failures,
                **reply,
            }
        )
        with lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def keep_reporting() -> None:
        while not done.wait(REPORT_EVERY):
            report()

    # No write-behind journal: this process enqueues nothing, and a store that
    # finds the journal beside the file takes the demo's pending writes for a
    # crash's leftovers and stores them a second time.
    options = statekeep.WriteBehindOptions(journal=None)
    with statekeep.open(url, outbox=True, writebehind=options) as store:
        subscription = store.subscribe(NAME, loudness, events=[entity.Created])
        reporter = threading.Thread(target=keep_reporting, daemon=True)
        reporter.start()
        try:
            for command in sys.stdin:
                what, timeout = command.split()
                if what != "idle":
                    break
                report(reply="idle", idle=subscription.wait_idle(float(timeout)))
        finally:
            done.set()
            reporter.join()
            subscription.stop()
    with contextlib.suppress(OSError):  # the demo may be gone
        report(reply="stopped")


def main(argv: list[str]) -> int:
    """python -m statekeep._demo.events URL MODULE:ENTITY CLIP_DB"""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the demo, which stops us
    url, where, clip_db = argv
    module, _, name = where.partition(":")
    entity = getattr(importlib.import_module(module), name)  # the demo's Segment
    _serve(url, entity, float(clip_db))
    return 0


def event_rows(report: EventsReport) -> list[tuple[str, str]]:
    """The summary's rows about events."""
    changes = report.session_changes
    return [
        (
            "store.on: paused / resumed / completed",
            " / ".join(f"{changes.get(label, 0):,}" for label in CHANGES.values()),
        ),
        (
            "events delivered: in-process / durable",
            f"{report.in_process_delivered:,} / {report.durable_delivered:,}",
        ),
        (
            "handler failures: in-process / durable",
            f"{report.in_process_failures:,} / {report.durable_failures:,}",
        ),
        (f"segments enriched (process {report.enricher_pid})", f"{report.enriched:,}"),
        (
            "loudness: clip / loud / normal / quiet",
            " / ".join(f"{report.loudness.get(name, 0):,}" for name in LOUDNESS),
        ),
        ("outbox lag when flush returned", f"{report.lag_at_flush:,} events"),
        (
            "enricher catch-up after flush",
            f"{report.catch_up:.3f} s" if report.caught_up else "NOT caught up",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
