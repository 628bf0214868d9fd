"""The demo (`statekeep demo`) runs, exits 0 and leaves the data it says it wrote."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import statekeep
from statekeep.demo import SESSIONS, STILL_RECORDING, RecordingSession, Segment, run

SEGMENTS = 2_000
PER_SESSION = SEGMENTS // SESSIONS


def test_demo_in_process_leaves_the_expected_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "demo.db"

    assert run(str(path), SEGMENTS) == 0

    out = capsys.readouterr().out
    assert str(path) in out
    assert f'sqlite3 {path} "select count(*) from segment"' in out

    # one session (and its segments) deleted; all but the newest ten completed,
    # the deleted one among them
    sessions_left = SESSIONS - 1
    segments_left = SEGMENTS - PER_SESSION
    with statekeep.open(f"sqlite:///{path}") as store:
        assert store.count(RecordingSession) == sessions_left
        assert store.count(RecordingSession, state="recording") == STILL_RECORDING
        assert store.count(RecordingSession, state="complete") == sessions_left - STILL_RECORDING
        assert store.count(RecordingSession, device="mic-07") == SESSIONS // 8 - 1
        assert store.count(Segment) == segments_left
        flagged = store.count(Segment, flagged=True)
        assert 0 < flagged < segments_left
        assert flagged == store.count(Segment, Segment.f.peak_db > -1.0)
        for session in store.find(RecordingSession):
            segments = list(store.find(Segment, session_id=session.id, order_by="index"))
            assert [s.index for s in segments] == list(range(PER_SESSION))
            starts = [s.start_ms for s in segments]
            assert starts == sorted(starts)
            assert all(s.version == (2 if s.flagged else 1) for s in segments)

    db = sqlite3.connect(path)
    try:
        assert db.execute("select count(*) from recording_session").fetchone() == (sessions_left,)
        assert db.execute("select count(*) from segment").fetchone() == (segments_left,)
        assert db.execute("select count(*) from segment where flagged = 1").fetchone() == (flagged,)
        assert db.execute(
            "select count(*) from segment where json_extract(body, '$.peak_db') > -1.0"
        ).fetchone() == (flagged,)
        orphans = db.execute(
            "select count(*) from segment s left join recording_session r "
            "on r.id = s.session_id where r.id is null"
        ).fetchone()
        assert orphans == (0,)
    finally:
        db.close()


def test_demo_refuses_an_existing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "taken.db"
    path.write_bytes(b"precious")

    assert run(str(path), 10) == 2

    assert path.read_bytes() == b"precious"
    assert "already exists" in capsys.readouterr().out


def test_demo_refuses_a_negative_count(tmp_path: Path) -> None:
    assert run(str(tmp_path / "x.db"), -1) == 2
    assert not (tmp_path / "x.db").exists()


def test_demo_with_no_segments(tmp_path: Path) -> None:
    path = tmp_path / "empty.db"
    assert run(str(path), 0) == 0
    with statekeep.open(f"sqlite:///{path}") as store:
        assert store.count(RecordingSession) == SESSIONS - 1
        assert store.count(Segment) == 0


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
    db = sqlite3.connect(path)
    try:
        count = db.execute("select count(*) from segment").fetchone()
    finally:
        db.close()
    assert count == (SEGMENTS - PER_SESSION,)
