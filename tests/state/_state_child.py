"""A process that keeps an app state in a store, for the tests that kill it
(tests/state/test_persist_crash.py).

python _state_child.py URL NAME MODE SEED VERSIONS ACKS
    opens URL, then store.state(NAME, Studio) (restored from what an earlier
    run left), writes "VERSION COUNT" of the state it starts from to
    VERSIONS, and floods it with step() updates (mostly NORMAL, every
    CRITICAL_EVERY-th CRITICAL) until it is killed. Every version made
    appends "VERSION COUNT" to VERSIONS (from a subscription: before the
    persister hears of the version); a second thread calls wait_durable()
    over and over and appends the version it returns to ACKS. Each line is
    one os.write(), so a line is either all there or not at all.
    MODE "churn": each update adds a dict key and removes an older one (the
    keys a snapshot finds come and go); "steady": the same keys are
    written over, none is removed.

A version's value is a function of its count (the number of step() updates
applied since the state began): `expected(count, mode)`. So the parent can tell
whether what it restores is a version that existed, and which one.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from typing import Any

from pydantic import BaseModel

CHANNELS = 12
RECENT = 6
MARKS = 4
CRITICAL_EVERY = 25  # every this many updates is CRITICAL (and moves the transport)
TRANSPORTS = ("stopped", "playing", "recording")
_RANDOM = random.Random(7)
PAD = [_RANDOM.randbytes(24).hex() for _ in range(300)]


class Meter(BaseModel):
    level: float = 0.0
    peak: int = 0


class Studio(BaseModel):
    count: int = 0  # updates applied
    transport: str = "stopped"
    critical: int = 0  # the count of the last transport change
    meters: dict[str, Meter] = {}  # keys with a dot: "ch.3"
    recent: list[int] = []  # the last RECENT counts
    marks: dict[int, int] = {}  # the last MARKS counts, squared (steady: by count % MARKS)
    pad: list[str] = []  # incompressible: keeps deltas small next to a full snapshot


def initial() -> Studio:
    return Studio(pad=PAD)


def step(draft: Any, mode: str = "churn") -> None:
    """The next update; draft is a state's draft or a plain Studio."""
    n = draft.count + 1
    draft.count = n
    draft.meters[f"ch.{n % CHANNELS}"] = Meter(level=n / 10, peak=n)
    draft.recent.append(n)
    if len(draft.recent) > RECENT:
        del draft.recent[0]
    if mode == "steady":
        draft.marks[n % MARKS] = n * n
    else:
        draft.marks[n] = n * n
        if n - MARKS in draft.marks:
            del draft.marks[n - MARKS]
    if n % CRITICAL_EVERY == 0:
        draft.transport = TRANSPORTS[(n // CRITICAL_EVERY) % len(TRANSPORTS)]
        draft.critical = n


def expected(count: int, mode: str = "churn") -> Studio:
    """The state after count step() updates (what applying them gives)."""
    meters = {}
    for k in range(CHANNELS):
        last = count - (count - k) % CHANNELS  # the newest m <= count with m % CHANNELS == k
        if last >= 1:
            meters[f"ch.{k}"] = Meter(level=last / 10, peak=last)
    critical = count - count % CRITICAL_EVERY
    return Studio(
        count=count,
        transport=TRANSPORTS[(critical // CRITICAL_EVERY) % len(TRANSPORTS)]
        if critical
        else "stopped",
        critical=critical,
        meters=meters,
        recent=list(range(max(1, count - RECENT + 1), count + 1)),
        marks={
            (m % MARKS if mode == "steady" else m): m * m
            for m in range(max(1, count - MARKS + 1), count + 1)
        },
        pad=PAD,
    )


def run(url: str, name: str, mode: str, seed: int, versions: str, acks: str) -> None:
    import statekeep
    from statekeep import Priority

    rng = random.Random(seed)

    def update(draft: Any) -> None:
        step(draft, mode)

    store = statekeep.open(url)
    state = store.state(name, initial(), persist_every=0.01, full_every=8, frame=0.002)
    versions_fd = os.open(versions, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    acks_fd = os.open(acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(versions_fd, f"{state.version} {state.value.count}\n".encode())

    def made(old: Any, new: Any) -> None:  # the state's lock is held: state.version is this one
        os.write(versions_fd, f"{state.version} {new}\n".encode())

    state.subscribe("count", made)

    rng_ack = random.Random(seed + 1)

    def acknowledge() -> None:
        while True:
            durable = state.wait_durable(30)
            os.write(acks_fd, f"{durable}\n".encode())
            time.sleep(rng_ack.uniform(0.0, 0.004))

    threading.Thread(target=acknowledge, name="acknowledge", daemon=True).start()
    submitted = 0
    while True:
        for _ in range(rng.randint(1, 60)):
            submitted += 1
            critical = submitted % CRITICAL_EVERY == 0
            state.update(update, priority=Priority.CRITICAL if critical else Priority.NORMAL)
        time.sleep(rng.uniform(0.0, 0.002))


if __name__ == "__main__":
    url, name, mode, seed, versions, acks = sys.argv[1:7]
    assert mode in ("churn", "steady"), mode
    run(url, name, mode, int(seed), versions, acks)
