"""The demo (`statekeep demo`) runs, exits 0 and leaves the data it says it wrote:
segments (NORMAL), thumbnails (LOW) and session state changes (CRITICAL), all
through the write-behind queue, with nothing left in its journal. Its events
arrive: the in-process handler sees the sessions' state changes, and the
durable subscriber in a child process enriches every segment stored. Its
studio state (statekeep.state) is kept in the store and a fresh store
restores its last version. Without the demo extra (rich), the command says
how to install it."""

from __future__ import annotations

import io
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

import statekeep
from statekeep._demo.meters import METER_RATE, READINGS_PER_SEGMENT
from statekeep._demo.recordings import (
    SESSIONS,
    STARTUP,
    STILL_RECORDING,
    THUMBNAIL_EVERY,
    RecordingSession,
    Segment,
    SessionFlow,
    Thumbnail,
)
from statekeep._demo.report import summary
from statekeep._demo.steps import demo, run

SEGMENTS = 5_000
PER_SESSION = SEGMENTS // SESSIONS
THUMBNAILS_PER_SESSION = PER_SESSION // THUMBNAIL_EVERY
PANEL_TITLE = "write-behind: store.writebehind.stats()"
COMPLETED = SESSIONS - STILL_RECORDING
# the sessions' transitions: 4 each to start, 2 each for the loose cable's pause and
# resume, 2 each to complete
TRANSITIONS = SESSIONS * 4 + 4 + COMPLETED * 2
# the demo's output stays short: 120 lines until the state machine's lines (issue 15); 130
# until the metrics table and the advice of the run (issue 16)
MOST_LINES = 175


def journal_segments(db: Path) -> list[Path]:
    return sorted(Path(f"{db}.writebehind").glob("segment-*"))


def summary_value(out: str, label: str) -> str:
    """The value of the summary table's row that starts with label."""
    rows = [line for line in out.splitlines() if line.startswith(f"│ {label}")]
    assert len(rows) == 1, (label, rows)
    return rows[0].split("│")[-2].strip()


def assert_events_in_summary(out: str, segments: int) -> None:
    stored = summary_value(out, "stored: critical / normal / low").split(" / ")
    assert stored[1] == f"{segments:,}"
    assert summary_value(out, "segments enriched (process ") == stored[1]
    assert summary_value(out, "handler failures: in-process / durable") == "0 / 0"
    assert summary_value(out, "store.on: paused / resumed / completed") == f"1 / 1 / {COMPLETED}"
    delivered = summary_value(out, "events delivered: in-process / durable")
    assert delivered == f"{TRANSITIONS} / {segments:,}"
    assert summary_value(out, "enricher catch-up after flush").endswith(" s")
    assert summary_value(out, "state: transport changes (CRITICAL)") == "4, the last: stopped"
    assert summary_value(out, "state: restore in a fresh store").endswith("(the last)")


def test_there_are_thumbnails_to_check() -> None:
    assert THUMBNAILS_PER_SESSION >= 2


def test_demo_in_process_leaves_the_expected_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "demo.db"

    assert run(str(path), SEGMENTS) == 0

    out = capsys.readouterr().out
    assert str(path) in out
    assert f'sqlite3 {path} "select count(*) from segment"' in out
    # not a terminal: the live panel is printed once, at the end, without escapes
    assert out.count(PANEL_TITLE) == 1
    assert "\x1b" not in out
    assert len(out.splitlines()) < MOST_LINES
    assert_events_in_summary(out, SEGMENTS)
    assert "enricher (durable subscriber, process " in out
    assert f"{SEGMENTS:,} segments enriched" in out
    # the summary ends with the run's metrics and the advice for its unindexed query
    assert "statekeep metrics (histograms over all time)" in out
    assert "statekeep advice for this run" in out and "Indexed()" in out
    assert "alerts raised during the run" in out
    assert "statekeep alert" not in out  # the store's log records are not printed

    # one session (and its segments and thumbnails) deleted; all but the newest
    # ten completed, the deleted one among them
    sessions_left = SESSIONS - 1
    segments_left = SEGMENTS - PER_SESSION
    thumbnails_left = sessions_left * THUMBNAILS_PER_SESSION
    with statekeep.open(f"sqlite:///{path}") as store:
        assert store.count(RecordingSession) == sessions_left
        assert store.count(RecordingSession, state="active") == STILL_RECORDING
        assert store.count(RecordingSession, state="completed") == sessions_left - STILL_RECORDING
        assert store.count(RecordingSession, state="paused") == 0
        assert store.count_by(RecordingSession, "state") == {
            SessionFlow.active: STILL_RECORDING,
            SessionFlow.completed: sessions_left - STILL_RECORDING,
        }
        assert store.count(RecordingSession, device="mic-07") == SESSIONS // 8 - 1
        assert store.count(Segment) == segments_left
        assert store.count(Thumbnail) == thumbnails_left
        flagged = store.count(Segment, flagged=True)
        assert 0 < flagged < segments_left
        assert flagged == store.count(Segment, Segment.f.peak_db > -1.0)
        for session in store.find(RecordingSession):
            segments = list(store.find(Segment, session_id=session.id, order_by="index"))
            assert [s.index for s in segments] == list(range(PER_SESSION))
            starts = [s.start_ms for s in segments]
            assert starts == sorted(starts)
            assert all(s.version == (2 if s.flagged else 1) for s in segments)
            # each thumbnail shows the peaks of the segments it covers
            thumbnails = list(store.find(Thumbnail, session_id=session.id, order_by="first_index"))
            assert [t.first_index for t in thumbnails] == [
                n * THUMBNAIL_EVERY for n in range(THUMBNAILS_PER_SESSION)
            ]
            for thumbnail in thumbnails:
                covered = segments[thumbnail.first_index : thumbnail.first_index + THUMBNAIL_EVERY]
                assert thumbnail.peaks == [s.peak_db for s in covered]
                assert thumbnail.start_ms == covered[0].start_ms
                assert thumbnail.duration_ms == sum(s.duration_ms for s in covered)
                assert thumbnail.version == 1

    assert journal_segments(path) == []
    db = sqlite3.connect(path)
    try:
        assert db.execute("select count(*) from recording_session").fetchone() == (sessions_left,)
        assert db.execute("select count(*) from segment").fetchone() == (segments_left,)
        assert db.execute("select count(*) from thumbnail").fetchone() == (thumbnails_left,)
        assert db.execute("select count(*) from segment where flagged = 1").fetchone() == (flagged,)
        assert db.execute(
            "select count(*) from segment where json_extract(body, '$.peak_db') > -1.0"
        ).fetchone() == (flagged,)
        for table in ("segment", "thumbnail"):
            orphans = db.execute(
                f"select count(*) from {table} s left join recording_session r "
                "on r.id = s.session_id where r.id is null"
            ).fetchone()
            assert orphans == (0,), table
        assert db.execute("pragma integrity_check").fetchone() == ("ok",)
    finally:
        db.close()


def test_demo_stores_every_write_by_priority(tmp_path: Path) -> None:
    path = tmp_path / "report.db"
    out = io.StringIO()

    report = demo(str(path), SEGMENTS, Console(file=out, width=100))
    # the run's one pattern that deserves advice: the unindexed find on peak_db
    indexing = [a for a in report.advice if a.rule == "index_a_field"]
    assert [(a.subject, "peak_db" in a.title) for a in indexing] == [("segment", True)]
    assert (
        report.metrics is not None
        and report.metrics.value("statekeep_find_seconds", collection="segment", index="no")
        == 12 + 1
    )  # step 6's finds on peak_db, and step 3's of the clipping segments
    text = out.getvalue()

    thumbnails = SESSIONS * THUMBNAILS_PER_SESSION
    # CRITICAL: the sessions created, then one of them paused and resumed
    expected = {"CRITICAL": SESSIONS + 2, "NORMAL": SEGMENTS, "LOW": thumbnails}
    assert report.enqueued == expected
    assert report.stored_by_priority == expected  # every receipt says stored
    assert report.failed == {"CRITICAL": 0, "NORMAL": 0, "LOW": 0}
    assert report.sessions == SESSIONS
    assert report.segments_written == SEGMENTS
    assert report.thumbnails_written == thumbnails
    assert report.state_changes == SESSIONS + 2
    assert report.streamed == SEGMENTS + thumbnails + 2
    assert report.compared_writes == SEGMENTS + thumbnails  # the save_many comparison
    assert 0 < report.critical_wait < 10  # the pause was waited for, and stored
    assert 0 < report.sessions_wait < 10
    assert report.stored["thumbnails"] == thumbnails - THUMBNAILS_PER_SESSION
    assert report.thumbnails_deleted == THUMBNAILS_PER_SESSION
    # events: the durable subscriber, in another process, enriched every segment stored
    events = report.events
    assert events.caught_up
    assert events.enriched == events.durable_delivered == report.stored_by_priority["NORMAL"]
    assert events.durable_failures == 0
    assert events.enricher_pid is not None and events.enricher_pid != os.getpid()
    assert sum(events.loudness.values()) == SEGMENTS
    assert events.loudness["clipping"] == report.segments_flagged  # both: peak > CLIP_DB
    # the outbox also has the studio state's snapshots, and the deletes of old
    # deltas, and the sessions' transitions (each its event and at most one update)
    studio_events = report.studio.fulls + 2 * report.studio.deltas
    most = report.streamed + SESSIONS + studio_events + 2 * TRANSITIONS
    assert 0 <= events.lag_at_flush <= most
    assert 0 < events.catch_up < 60
    # in-process: the sessions' transitions (start-up, the pause and the
    # resume, the completions); not the edit that _show_conflict saves
    assert events.session_changes == {"paused": 1, "resumed": 1, "completed": COMPLETED}
    assert events.in_process_delivered == TRANSITIONS
    assert events.reached == {
        "validating": SESSIONS,
        "checking_permissions": SESSIONS,
        "starting": SESSIONS,
        "active": SESSIONS + 1,
        "pausing": 1,
        "paused": 1,
        "resuming": 1,
        "ending": COMPLETED,
        "completed": COMPLETED,
    }
    assert report.startup == {event: SESSIONS for event in STARTUP}
    diagram = Path(report.diagram).read_text()
    assert diagram == SessionFlow.to_mermaid() and "paused --> ending : end" in diagram
    assert events.in_process_failures == 0
    # the level meters went through the flow pipeline: the last reading of
    # each burst per session, never faster than the throttle's rate
    meters = report.meters
    assert meters.readings == SEGMENTS * READINGS_PER_SEGMENT
    assert meters.meters == SESSIONS  # one per session (a burst's last always goes on)
    forwarded = meters.stats["debounce"].counts["invocations"]
    assert SESSIONS <= forwarded < meters.readings
    assert meters.stats["throttle"].counts["admitted"] == forwarded
    assert forwarded <= METER_RATE // 20 + METER_RATE * meters.seconds + 1
    assert meters.stats["batch"].counts["succeeded"] == forwarded
    assert "level meters:" in text
    shown = Console(file=io.StringIO(), width=120)
    shown.print(summary(report))
    assert "flow: level readings in" in shown.file.getvalue()  # type: ignore[attr-defined]
    # the studio state: the meters at 200 Hz (NORMAL, coalesced per frame), the
    # transport (CRITICAL), persisted, and restored by a fresh store on the file
    studio = report.studio
    assert studio.transport == ["recording", "paused", "recording", "stopped"]
    assert studio.meter_updates > 0
    assert studio.updates == studio.meter_updates + 4  # the session, then 3 transport sets
    assert 0 < studio.version == studio.updates - studio.coalesced
    if studio.meter_updates >= 10:  # readings 5 ms apart, frames of 16 ms
        assert studio.coalesced > 0
    assert studio.durable == studio.restored == studio.version and studio.restored_equal
    assert 0 < studio.restore_seconds < 10
    assert 2 <= studio.kept <= 100 and 0 < studio.sharing <= 1
    assert 0 < studio.kept_bytes < studio.copies_bytes
    assert studio.fulls >= 1  # the first snapshot of a new state is full
    assert "studio state (store.state):" in text
    # nothing is left for the next open: the journal holds no segment
    assert report.journal_segments == 0
    assert Path(f"{path}.writebehind").is_dir()
    assert journal_segments(path) == []
    assert "paused (CRITICAL)" in text and "stored " in text
    assert "save_many" in text
    assert text.count(PANEL_TITLE) == 1
    # the panel's last frame: every segment enriched, no lag
    assert re.search(rf"enriched +━+ +{SEGMENTS:,} segments", text)
    assert re.search(r"outbox +written ([\d,]+) +handled \1 +lag 0 ", text)
    # the scratch file of the save_many comparison is gone, and nothing else is left
    # (but the lock files of the durable subscription names, the journal, and the
    # sessions' state machine diagram)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "report.db",
        "report.db.sessions.mmd",
        "report.db.subscriptions",
        "report.db.writebehind",
    ]


def test_demo_live_panel_on_a_terminal(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)

    report = demo(str(tmp_path / "tty.db"), SEGMENTS, console)

    assert report.stored_by_priority["NORMAL"] == SEGMENTS
    text = out.getvalue()
    assert PANEL_TITLE in text
    assert "on average" in text  # the last frame, after flush


def test_demo_refuses_an_existing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "taken.db"
    path.write_bytes(b"precious")

    assert run(str(path), 10) == 2

    assert path.read_bytes() == b"precious"
    assert "already exists" in capsys.readouterr().out


def test_demo_refuses_a_leftover_journal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Pending writes of another database would be stored into the new one."""
    path = tmp_path / "fresh.db"
    Path(f"{path}.writebehind").mkdir()

    assert run(str(path), 10) == 2

    assert not path.exists()
    assert "already exists" in capsys.readouterr().out


def test_demo_refuses_a_negative_count(tmp_path: Path) -> None:
    assert run(str(tmp_path / "x.db"), -1) == 2


@pytest.mark.parametrize("rate", [0, -5])
def test_demo_refuses_a_meter_rate_below_one(
    tmp_path: Path, rate: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(str(tmp_path / "x.db"), 10, rate) == 2
    assert "--meter-rate" in capsys.readouterr().out
    assert not (tmp_path / "x.db").exists()
    assert not (tmp_path / "x.db").exists()


def test_demo_with_no_segments(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    assert run(str(path), 0) == 0
    with statekeep.open(f"sqlite:///{path}") as store:
        assert store.count(RecordingSession) == SESSIONS - 1
        assert store.count(Segment) == 0
        assert store.count(Thumbnail) == 0
    assert journal_segments(path) == []


@pytest.mark.parametrize(
    ("segments", "thumbnails"), [(1, 0), (7, 0), (SESSIONS * THUMBNAIL_EVERY + 3, SESSIONS)]
)
def test_demo_with_few_segments(tmp_path: Path, segments: int, thumbnails: int) -> None:
    report = demo(str(tmp_path / "few.db"), segments, Console(file=io.StringIO()))

    assert report.enqueued["NORMAL"] == report.stored_by_priority["NORMAL"] == segments
    assert report.enqueued["LOW"] == report.stored_by_priority["LOW"] == thumbnails
    assert report.stored_by_priority["CRITICAL"] == SESSIONS + 2
    assert report.journal_segments == 0
    assert report.events.caught_up
    assert report.events.enriched == segments
    assert report.events.durable_failures == report.events.in_process_failures == 0


def test_demo_console_script(tmp_path: Path) -> None:
    path = tmp_path / "cli demo.db"  # a space, to check the printed hint quotes it

    command = [sys.executable, "-m", "statekeep.cli", "demo"]
    done = subprocess.run(
        [*command, "--segments", str(SEGMENTS), "--path", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert str(path) in done.stdout
    assert f"sqlite3 '{path}' \"select count(*) from segment\"" in done.stdout
    assert done.stdout.count(PANEL_TITLE) == 1
    assert len(done.stdout.splitlines()) < MOST_LINES
    assert_events_in_summary(done.stdout, SEGMENTS)
    db = sqlite3.connect(path)
    try:
        count = db.execute("select count(*) from segment").fetchone()
        thumbnails = db.execute("select count(*) from thumbnail").fetchone()
    finally:
        db.close()
    assert count == (SEGMENTS - PER_SESSION,)
    assert thumbnails == ((SESSIONS - 1) * THUMBNAILS_PER_SESSION,)
    assert journal_segments(path) == []


WITHOUT_RICH = """
import sys
sys.modules["rich"] = None  # as if the demo extra were not installed
from statekeep.cli import main
sys.exit(main(["demo", "--path", sys.argv[1], "--segments", "10"]))
"""


def test_demo_without_its_extra_says_how_to_install_it(tmp_path: Path) -> None:
    path = tmp_path / "never.db"

    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_RICH, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        "statekeep demo: the demo needs rich, which the demo extra installs: "
        "pip install 'statekeep[demo]'\n"
    )
    assert list(tmp_path.iterdir()) == []
