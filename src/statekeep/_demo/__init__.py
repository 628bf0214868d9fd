"""The recording-sessions demo behind `statekeep demo` (and `make demo`).

A recorder ingests audio from ~50 devices at once: each recording session
produces many small segments, and every so often a waveform thumbnail. The
demo keeps them in one SQLite file, written behind the recorder's back with
`store.enqueue`, by priority:

- CRITICAL: session state changes (a session starts, pauses, resumes), stored
  at once, and waited for where the recorder needs to know;
- NORMAL: the segments, coalesced into batches;
- LOW: the thumbnails, written when no segment is waiting (or once 5 s old).

Every change is an event. The store keeps an outbox (`outbox=True`): a
handler in this process (`store.on(RecordingSession.Updated)`) counts the
sessions' state changes, and a durable subscriber, "enricher", in a child
process with a store of its own on the same file, gives each new segment a
loudness class.

The sessions' input levels, many readings a second, go through a
statekeep.flow Pipeline (debounced per session, throttled to `--meter-rate`,
saved in batches) into one LevelMeter per session. Meanwhile the studio's
console keeps one live statekeep.state AppState in the store
(`store.state("studio", Studio)`): the session it follows, the meters at
200 Hz (NORMAL, coalesced per frame) and the transport (CRITICAL).

The parts, one concept each: `recordings` (the entities and the made-up
data), `steps` (`run` and the steps), `stream` (step 2, through the
write-behind queue), `meters` (the level meters, through the pipeline),
`studio` (the live app state), `panel` (its live view), `events` (the
handler and the enricher's child process) and `report` (what was measured,
and the summary).

Only the command line imports this package, and `import statekeep` never
does: the demo draws with rich, which the `statekeep[demo]` extra installs,
and keeps its studio with statekeep.state, which needs the `state` extra.
This module itself imports nothing optional, so `load()` can say so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from ..entity import Entity


class Run(Protocol):
    """steps.run: the demo into path; then, if given, gets the database's path
    once the demo is done and gives the exit code."""

    def __call__(
        self,
        path: str | None,
        segments: int,
        meter_rate: int = ...,
        *,
        then: Callable[[str], int] | None = ...,
    ) -> int: ...


# what the demo needs beyond pydantic, by the extra that installs it
OPTIONAL = {"rich": "demo", "immutables": "state", "zstandard": "state"}


def entities() -> tuple[type[Entity], ...]:
    """The demo's entity classes, which its dashboard counts (`statekeep demo --serve`)."""
    from .meters import LevelMeter
    from .recordings import RecordingSession, Segment, Thumbnail

    return (RecordingSession, Segment, Thumbnail, LevelMeter)


def load() -> Run:
    """The demo's `run(path, segments, meter_rate)`; ConfigurationError, with the command
    that installs it, if the demo extra is missing."""
    try:
        from .steps import run
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").partition(".")[0]
        extra = OPTIONAL.get(missing)
        if extra is None:
            raise
        extras = "demo" if extra == "demo" else f"demo,{extra}"
        raise ConfigurationError(
            f"the demo needs {missing}, which the {extra} extra installs: "
            f"pip install 'statekeep[{extras}]'"
        ) from exc
    return run
