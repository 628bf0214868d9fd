"""The demo's recorder: its entities, and the data it makes up.

About 50 devices record at once. Each recording session produces many small
segments (a few hundred milliseconds of audio and its transcript), and after
every THUMBNAIL_EVERY segments of a session a waveform thumbnail. The data is
random but seeded: the same count gives the same segments, so the save_many
comparison writes exactly what the write-behind queue wrote.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

import statekeep
from statekeep import Priority, State

SESSIONS = 50
DEVICES = 8
LOOSE_CABLE = "mic-07"  # its first take is unusable: paused while streaming, later deleted
STILL_RECORDING = 10  # the newest sessions are still recording
CLIP_DB = -1.0  # peaks above this are flagged as clipping
THUMBNAIL_EVERY = 50  # a waveform thumbnail per this many segments of a session
PAUSE_AT, RESUME_AT = 0.4, 0.6  # where in the stream the loose cable drops out, and back
WAIT_TIMEOUT = 10.0  # seconds a CRITICAL write is waited for
CATCH_UP_TIMEOUT = 60.0  # seconds the enricher is given to catch up after the flush
SEED = 20240521

WORDS = (
    *("okay", "so", "the", "next", "take", "starts", "now", "please", "check", "levels"),
    *("one", "two", "three", "testing", "mic", "sounds", "good", "chorus", "verse"),
    *("bridge", "louder", "softer", "again", "from", "the", "top", "keep", "that", "one"),
)


class SessionFlow(statekeep.Machine):
    """A recording session's lifecycle (docs/machines.md)."""

    idle = State(initial=True)
    validating, checking_permissions, starting, active = State(), State(), State(), State()
    pausing, paused, resuming, ending = State(), State(), State(), State()
    completed = State(final=True)

    start = idle.to(validating)
    validated = validating.to(checking_permissions)
    permitted = checking_permissions.to(starting, cond="has_device")
    started = starting.to(active)
    pause = active.to(pausing)
    paused_ok = pausing.to(paused)
    resume = paused.to(resuming)
    resumed = resuming.to(active)
    end = (active | paused).to(ending)
    ended = ending.to(completed)


# the events that take a new session from idle to active, and an active or paused one to completed
STARTUP = ("start", "validated", "permitted", "started")
PAUSE, RESUME, COMPLETE = ("pause", "paused_ok"), ("resume", "resumed"), ("end", "ended")


class RecordingSession(statekeep.Entity):
    """One recording on one device."""

    name: str
    device: Annotated[str, statekeep.Indexed()]
    state: SessionFlow = SessionFlow.idle  # an indexed column, moved by SessionFlow's events
    started: datetime

    @property
    def has_device(self) -> bool:
        return bool(self.device)


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


def make_sessions(rng: random.Random) -> Iterator[RecordingSession]:
    base = datetime(2024, 5, 21, 9, 0, tzinfo=UTC)
    for number in range(SESSIONS):
        device = f"mic-{number % DEVICES:02d}"
        yield RecordingSession(
            name=f"take-{number + 1:02d}",
            device=device,
            started=base + timedelta(minutes=number * 7 + rng.randrange(5)),
        )


def make_writes(
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


def thumbnail_count(segments: int) -> int:
    """How many thumbnails make_writes makes for this many segments."""
    each, extra = divmod(segments, SESSIONS)
    return sum((each + (slot < extra)) // THUMBNAIL_EVERY for slot in range(SESSIONS))
