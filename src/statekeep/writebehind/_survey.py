"""What write-behind journals hold, read without taking them over.

`statekeep inspect` and `statekeep dead-letters` look at the journals of a
database while its application may be running: a survey reads the segment
files and the dead-letter file of every journal directory under the base
(`<db>.writebehind/` and its `more-<n>/`), stores nothing and marks nothing.
A directory a running engine holds is reported as held; its figures are a
moment's reading of files that engine is still writing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from ._claim import held, journal_directories
from ._journal import pending_records, segment_number
from ._options import DeadLetter, Priority
from ._records import DeadLetterFile


@dataclass(frozen=True, slots=True)
class JournalSurvey:
    """One journal directory.

    pending: writes not stored yet, by priority name; oldest_age: seconds since
    the oldest segment holding any of them was last written (the oldest write
    is at least that old), None with nothing pending; held: a running engine
    (this process's or another's) holds the directory."""

    directory: Path
    held: bool
    pending: dict[str, int]
    oldest_age: float | None
    bytes: int
    dead_letters: list[DeadLetter] = field(repr=False)

    @property
    def pending_total(self) -> int:
        return sum(self.pending.values())


def survey(base: Path) -> list[JournalSurvey]:
    """Every journal directory under base, in claim order ([] if there is none)."""
    return [_one(directory) for directory in journal_directories(base)]


def _one(directory: Path) -> JournalSurvey:
    paths = sorted(directory.glob("segment-*.log"), key=segment_number)
    pending = pending_records([(segment_number(path), path) for path in paths])
    counts = dict.fromkeys((p.name for p in sorted(Priority, reverse=True)), 0)
    for _, record in pending:
        counts[Priority(record[7]).name] += 1
    oldest = None
    if pending:
        first = directory / f"segment-{pending[0][0]:08d}.log"
        try:
            oldest = max(0.0, time.time() - first.stat().st_mtime)
        except FileNotFoundError:  # swept just now: stored meanwhile
            oldest = 0.0
    size = 0
    for path in directory.iterdir():
        try:
            size += path.stat().st_size if path.is_file() else 0
        except FileNotFoundError:
            continue
    return JournalSurvey(
        directory=directory,
        held=held(directory),
        pending=counts,
        oldest_age=oldest,
        bytes=size,
        dead_letters=DeadLetterFile(directory).load(),
    )
