"""statekeep.state (issue 14) beside immutables, pyrsistent and dict copies.

Every timed part runs in rounds (the contenders interleaved, who goes first
rotating, each on fresh objects made untimed, after a full garbage
collection: harness.rounds); the median round is judged, the best beside
it. Costs are per call above the same loop doing nothing, so the loop's own
cost does not flatter the slower contender. The extra table after the
results notes the machine's other load during each part.

1. Update of one key of a state whose `meters: dict[str, float]` holds
   Sizes.state_keys keys, with Sizes.state_subscribers subscriptions on
   other keys (`state.subscribe(f"meters.k{i}", cb)`; the updates never
   change those keys): `state.set(("meters", key), value,
   priority=CRITICAL)`, every call a version (version bookkeeping and the
   history of 100 versions, the value checked at its path, the
   subscriptions looked up), against `immutables.Map.set` (`m = m.set(k,
   v)`: the limit; target: cost <= 5x), pyrsistent's `pmap.set`, and
   `dict.copy()` + `d[k] = v` (target: >= 1,000x faster than the copy).
   Random keys (a path not seen before, mostly) and one hot key. The
   default NORMAL priority (for information): the calls coalesce into one
   version per frame; the time includes the `flush()` that applies the
   last frame, and the row says how many versions the calls made.
   Every contender's first version stays referenced while it runs, as the
   state's history keeps its versions; pyrsistent is shown without that
   too, as it is many times slower when an earlier version is alive.
2. A batch of 100 updates of random keys, `with state.batch() as d:` and
   100 `d.meters[k] = v` (one version), against immutables' `mutate()`
   with 100 sets and `finish()` (target: cost <= 2x) and pyrsistent's
   evolver (with and without the first version held); the same state as
   in 1 (subscriptions included).
3. Memory of 100 versions, one key changed in each: `state.memory()` (its
   sharing ratio, target >= 99%), and tracemalloc from before the state is
   made until its 100th version, against 100 real `dict.copy()`s with one
   key changed each (and immutables and pyrsistent keeping 100 versions).
   Measured once: the figures are the same every run.
4. Snapshots of a studio state like the demo's (the current session, 64
   meters, the transport, 200 markers), after 1,000 meter updates:
   compressed with statekeep's codec (`_codec.encode`: the frozen tree
   packed exactly, see `_pack`, then zstd) at levels 1, 3 and 9 and
   restored (`_codec.decode`), against the state as JSON (`plain()`,
   pydantic_core) compressed with zlib at levels 1 and 6 (level 6, zlib's
   default, is the reference): MB of JSON a second and the share of the
   JSON's size stored; beside each, the compressor alone (JSON bytes in,
   JSON bytes out). Then the whole path: `store.state()`
   restoring the state of 1 from a SQLite file (one full snapshot), against
   the same state kept by hand as zstd JSON in a row of its own (sqlite3,
   zstd, from_json) read into the pydantic model.
"""

from __future__ import annotations

import collections
import gc
import os
import random
import sqlite3
import statistics
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Literal

import immutables
import pydantic_core
import zstandard
from pydantic import BaseModel

import statekeep
from statekeep.state import AppState, Priority
from statekeep.state import _codec as codec
from statekeep.state._node import plain
from statekeep.state._pack import Schema
from statekeep.state._snapshot import full_id

from . import load
from .harness import Cleanup, ExtraTable, Progress, Result, Run, Sizes, Trial, remove_db, rounds


def _optional_pyrsistent() -> Any:
    """pyrsistent (the bench extra's), or None when it is not installed: its rows say so."""
    try:
        import pyrsistent
    except ImportError:
        return None
    return pyrsistent


pyrsistent = _optional_pyrsistent()

BATCH = 100  # updates per batch
SUB_COST = 5.0  # target: a set() costs at most this many times immutables' Map.set
COPY_SPEEDUP = 1_000.0  # target: a set() at least this many times faster than a dict copy
BATCH_COST = 2.0  # target: a batch costs at most this many times immutables' mutate()
SHARING = 0.99  # target: share of each version shared with the one before
ZSTD_LEVELS = (1, 3, 9)
ZLIB_LEVELS = (1, 6)
CRITICAL = Priority.CRITICAL
MiB = 1024 * 1024


class Meters(BaseModel):
    """The state of parts 1-3: a big dict of floats, and a field beside it."""

    meters: dict[str, float] = {}
    cursor: int = 0


# -- the studio state of part 4, like the demo's --------------------------------------


class Session(BaseModel):
    id: str
    name: str
    device: str
    engineer: str
    notes: str = ""
    state: Literal["recording", "paused", "complete"] = "recording"
    started: datetime
    take: int = 1


class Transport(BaseModel):
    playing: bool = False
    recording: bool = False
    position_ms: int = 0
    tempo: float = 120.0
    loop_start_ms: int | None = None
    loop_end_ms: int | None = None


class Marker(BaseModel):
    at_ms: int
    label: str
    color: str = "yellow"


class Studio(BaseModel):
    session: Session
    meters: dict[str, float] = {}
    transport: Transport = Transport()
    markers: list[Marker] = []


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result | ExtraTable]:
    parts: tuple[tuple[str, Callable[[], list[Result]]], ...] = (
        ("1. set() of one key", lambda: _updates(sizes, progress)),
        ("2. batch of 100 updates", lambda: _batches(sizes, progress)),
        ("3. memory of 100 versions", lambda: _memory(sizes, progress)),
        ("4. snapshots of the studio state", lambda: _codecs(sizes, progress)),
        ("4. store.state() restore from SQLite", lambda: _restore(sizes, workdir, progress)),
    )
    results: list[Result | ExtraTable] = []
    loads: list[tuple[str, load.Load]] = []
    first = load.snapshot()
    for name, part in parts:
        before = load.snapshot()
        results += part()
        loads.append((name, load.between(before, load.snapshot())))
    loads.append(("all of statekeep.state", load.between(first, load.snapshot())))
    results.append(
        load.load_table("statekeep.state: the machine's other load during each part", loads)
    )
    return results


# -- timing ----------------------------------------------------------------------------


def _per_call(
    trials: dict[str, tuple[Trial, int]], repeats: int, progress: Progress, label: str
) -> tuple[dict[str, float], dict[str, float]]:
    """Seconds per call of each contender (trial, calls in its run): (median
    round, best round)."""
    times = rounds({name: trial for name, (trial, _) in trials.items()}, repeats, progress, label)
    per_call = {name: [t / trials[name][1] for t in seconds] for name, seconds in times.items()}
    return (
        {name: statistics.median(t) for name, t in per_call.items()},
        {name: min(t) for name, t in per_call.items()},
    )


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.2f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


class _Costs:
    """Per-call costs above a baseline loop, from the median and the best round."""

    def __init__(self, median: dict[str, float], best: dict[str, float], baseline: str) -> None:
        self.median, self.best, self.baseline = median, best, baseline

    def cost(self, name: str) -> float:
        return max(self.median[name] - self.median[self.baseline], 1e-12)

    def best_cost(self, name: str) -> float:
        return max(self.best[name] - self.best[self.baseline], 1e-12)

    def best_ratio(self, name: str, limit: str) -> float:
        """name's cost / limit's in their best rounds."""
        return self.best_cost(name) / self.best_cost(limit)

    def text(self, name: str) -> str:
        return f"{_us(self.cost(name))} a call (best {_us(self.best_cost(name))})"

    def against_immutables(
        self, label: str, name: str, limit: str, most: float, what: str
    ) -> list[Result]:
        """The limit's row (an immutables contender) and name's, whose cost
        must be at most `most` times the limit's."""
        ratio = self.cost(name) / self.cost(limit)
        return [
            self.row(label, limit, limit, "the limit"),
            self.row(
                label,
                name,
                limit,
                f"{ratio:.2f}x immutables' {_us(self.cost(limit))} "
                f"(best / best {self.best_ratio(name, limit):.2f}x); {what}",
                target=f"cost <= {most:g}x immutables'",
                passed=ratio <= most,
            ),
        ]

    def row(self, label: str, name: str, limit: str, detail: str = "", **target: Any) -> Result:
        """A row of name's cost, its ratio the limit's cost / its own."""
        text = self.text(name) + (f"; {detail}" if detail else "")
        return Result(
            label,
            name,
            1 / self.median[name],
            self.cost(limit) / self.cost(name),
            detail=text,
            **target,
        )


def _nothing(*args: object, **kwargs: object) -> None:
    return None


# -- 1. set() of one key -----------------------------------------------------------------


def _fresh_state(sizes: Sizes, model: Meters) -> tuple[AppState[Meters], list[int]]:
    """A state of model with the subscriptions on keys the updates leave alone;
    the list counts the callbacks (it stays empty)."""
    state = AppState(model, name="bench")
    called: list[int] = []

    def callback(old: Any, new: Any) -> None:
        called.append(1)

    for i in range(sizes.state_subscribers):
        state.subscribe(f"meters.k{i}", callback)
    return state, called


def _meters_model(sizes: Sizes) -> Meters:
    return Meters(meters={f"k{i}": i * 0.25 for i in range(sizes.state_keys)})


def _updated_keys(sizes: Sizes, n: int, *, hot: bool, seed: int = 1) -> list[str]:
    """n keys that no subscription watches: random, or the same one n times."""
    first, last = sizes.state_subscribers, sizes.state_keys - 1
    if hot:
        return [f"k{last}"] * n
    rng = random.Random(seed)
    return [f"k{rng.randint(first, last)}" for _ in range(n)]


def _values(n: int, seed: int = 2) -> list[float]:
    rng = random.Random(seed)
    return [rng.uniform(-60.0, 0.0) for _ in range(n)]


SK_CRITICAL = "statekeep state.set(path, v, priority=CRITICAL)"
SK_NORMAL = "statekeep state.set(path, v), NORMAL (coalesced per frame)"
IMMUTABLES = "immutables Map.set (m = m.set(k, v))"
PYRSISTENT = "pyrsistent pmap.set (m = m.set(k, v))"
PYRSISTENT_FREE = "pyrsistent pmap.set, no earlier version held"
DICT_COPY = "dict.copy(), then the key set in the copy"
PLAIN_CALL = "a plain call (the loop's own cost)"
PROTOTYPE = (
    "a minimal versioned set (prototype: a type check, a lock, history and undo, "
    "a dispatch lookup; no paths, no priorities)"
)


def _updates(sizes: Sizes, progress: Progress) -> list[Result]:
    model = _meters_model(sizes)
    base = dict(model.meters)
    return _set_rows(sizes, progress, model, base, hot=False) + _set_rows(
        sizes, progress, model, base, hot=True
    )


def _set_rows(
    sizes: Sizes, progress: Progress, model: Meters, base: dict[str, float], *, hot: bool
) -> list[Result]:
    """The rows of part 1 for random keys or one hot key."""
    n = sizes.state_updates
    kind = "one hot key" if hot else "random keys"
    chosen = _updated_keys(sizes, n, hot=hot)
    values = _values(n)
    items = list(zip(chosen, values, strict=True))
    last_key, last_value = items[-1]
    versions: dict[str, list[int]] = {SK_CRITICAL: [], SK_NORMAL: []}

    def statekeep_trial(priority: Priority) -> Trial:
        made = versions[SK_CRITICAL if priority is CRITICAL else SK_NORMAL]

        def make() -> tuple[Run, Cleanup]:
            state, called = _fresh_state(sizes, model)
            updates = [(("meters", key), value) for key, value in items]
            set_ = state.set

            if priority is CRITICAL:

                def run() -> None:
                    for path, value in updates:
                        set_(path, value, priority=CRITICAL)

            else:

                def run() -> None:
                    for path, value in updates:
                        set_(path, value)
                    state.flush()

            def cleanup() -> None:
                assert not called, "an update of another key called a subscriber"
                assert state.get(("meters", last_key)) == last_value
                made.append(state.version)
                state.close()

            return run, cleanup

        return make

    def map_trial(empty: Callable[[dict[str, float]], Any], held: bool = True) -> Trial:
        """held: the first version stays referenced while the run goes on
        (as every contender's does); else the run holds the only reference."""

        def make() -> tuple[Run, Cleanup]:
            start = [empty(base)]

            def run() -> None:
                m = start[0] if held else start.pop()
                for key, value in items:
                    m = m.set(key, value)
                assert m[last_key] == last_value

            return run, _nothing

        return make

    def copy_trial() -> tuple[Run, Cleanup]:
        copied = items[: sizes.state_copies]
        start = dict(base)

        def run() -> None:
            d = start
            for key, value in copied:
                d = d.copy()
                d[key] = value

        return run, _nothing

    def plain_trial() -> tuple[Run, Cleanup]:
        call = _nothing

        def run() -> None:
            for key, value in items:
                call(key, value)

        return run, _nothing

    def prototype_trial() -> tuple[Run, Cleanup]:
        """The least a versioned, checked, announced set can do: the floor of
        statekeep's design in Python (what the >= 1,000x target is weighed against)."""
        root = [(immutables.Map(base),)]
        entries: collections.deque[Any] = collections.deque(maxlen=100)
        undo: collections.deque[Any] = collections.deque(maxlen=99)
        lock = threading.RLock()
        memo: dict[Any, Any] = {}
        updates = [(("meters", key), value) for key, value in items]

        def set_(path: tuple[str, str], value: float, *, priority: Any = None) -> None:
            if type(value) is not float:
                raise TypeError(value)
            lock.acquire()
            try:
                old = root[0]
                new = (old[0].set(path[1], value),)
                root[0] = new
                entry = (0, new, (path,), 0, old)
                entries.append(entry)
                undo.append(entry)
                if memo.get(path):
                    raise AssertionError("no subscriber here")
            finally:
                lock.release()

        def run() -> None:
            for path, value in updates:
                set_(path, value, priority=CRITICAL)

        return run, _nothing

    trials: dict[str, tuple[Trial, int]] = {
        SK_CRITICAL: (statekeep_trial(CRITICAL), n),
        SK_NORMAL: (statekeep_trial(Priority.NORMAL), n),
        IMMUTABLES: (map_trial(immutables.Map), n),
        PLAIN_CALL: (plain_trial, n),
        PROTOTYPE: (prototype_trial, n),
        DICT_COPY: (copy_trial, min(n, sizes.state_copies)),
    }
    if pyrsistent is not None:
        trials[PYRSISTENT] = (map_trial(pyrsistent.pmap), n)
        trials[PYRSISTENT_FREE] = (map_trial(pyrsistent.pmap, held=False), n)
    median, best = _per_call(trials, sizes.repeats, progress, f"state set ({kind})")
    costs = _Costs(median, best, PLAIN_CALL)
    label = (
        f"state set of one key of {sizes.state_keys:,}, {sizes.state_subscribers:,} "
        f"subscribers elsewhere ({kind})"
    )
    rows = [
        *costs.against_immutables(label, SK_CRITICAL, IMMUTABLES, SUB_COST, "a version a call"),
        costs.row(
            label,
            SK_NORMAL,
            IMMUTABLES,
            f"{statistics.median(versions[SK_NORMAL]):,.0f} versions for {n:,} calls "
            "(median of the rounds)",
        ),
        *_pyrsistent_rows(label, costs, (PYRSISTENT, PYRSISTENT_FREE), IMMUTABLES),
    ]
    rows += _copy_rows(sizes, costs, kind)
    return rows


def _pyrsistent_rows(label: str, costs: _Costs, names: tuple[str, str], limit: str) -> list[Result]:
    """pyrsistent's rows: with the first version held, and without."""
    if pyrsistent is None:
        return [Result(label, names[0], detail="skipped: pyrsistent is not installed")]
    return [
        costs.row(label, names[0], limit, "the first version held, as in every other row"),
        costs.row(
            label,
            names[1],
            limit,
            "no earlier version held (pyrsistent's fast case)",
        ),
    ]


def _copy_rows(sizes: Sizes, costs: _Costs, kind: str) -> list[Result]:
    label = f"state set of one key of {sizes.state_keys:,} ({kind}), vs a dict copy"
    speedup = costs.cost(DICT_COPY) / costs.cost(SK_CRITICAL)
    rows = [costs.row(label, DICT_COPY, DICT_COPY, "the reference")]
    rows.append(
        costs.row(
            label,
            SK_CRITICAL,
            DICT_COPY,
            f"{speedup:,.0f}x faster than the copy "
            f"(best / best {1 / costs.best_ratio(SK_CRITICAL, DICT_COPY):,.0f}x)",
            target=f">= {COPY_SPEEDUP:,.0f}x faster than the copy",
            passed=speedup >= COPY_SPEEDUP,
        )
    )
    rows.append(
        costs.row(
            label,
            IMMUTABLES,
            DICT_COPY,
            f"{costs.cost(DICT_COPY) / costs.cost(IMMUTABLES):,.0f}x faster than the copy",
        )
    )
    rows.append(
        costs.row(
            label,
            PROTOTYPE,
            DICT_COPY,
            f"{costs.cost(DICT_COPY) / costs.cost(PROTOTYPE):,.0f}x faster than the copy",
        )
    )
    return rows


# -- 2. batches --------------------------------------------------------------------------

SK_BATCH = f"statekeep with state.batch() as d: {BATCH} keys set in d.meters"
IMM_MUTATE = f"immutables Map.mutate(): {BATCH} sets, finish()"
PYR_EVOLVER = f"pyrsistent pmap.evolver(): {BATCH} sets, persistent()"
PYR_EVOLVER_FREE = "pyrsistent pmap.evolver(), no earlier version held"
PLAIN_DICT = f"a plain dict: {BATCH} keys set (the loop's own cost)"


def _batches(sizes: Sizes, progress: Progress) -> list[Result]:
    n = sizes.state_batches
    model = _meters_model(sizes)
    base = dict(model.meters)
    keys = _updated_keys(sizes, n * BATCH, hot=False, seed=3)
    values = _values(n * BATCH, seed=4)
    chunks = [
        list(zip(keys[i : i + BATCH], values[i : i + BATCH], strict=True))
        for i in range(0, n * BATCH, BATCH)
    ]
    last_key, last_value = chunks[-1][-1]

    def statekeep_trial() -> tuple[Run, Cleanup]:
        state, called = _fresh_state(sizes, model)
        batch = state.batch

        def run() -> None:
            for chunk in chunks:
                with batch() as d:
                    for key, value in chunk:
                        d.meters[key] = value

        def cleanup() -> None:
            assert not called and state.version == n, state.version
            assert state.get(("meters", last_key)) == last_value
            state.close()

        return run, cleanup

    def immutables_trial() -> tuple[Run, Cleanup]:
        start = immutables.Map(base)

        def run() -> None:
            m = start
            for chunk in chunks:
                with m.mutate() as mutation:
                    for key, value in chunk:
                        mutation[key] = value
                    m = mutation.finish()
            assert m[last_key] == last_value

        return run, _nothing

    def pyrsistent_trial(held: bool) -> Trial:
        def make() -> tuple[Run, Cleanup]:
            assert pyrsistent is not None
            start = [pyrsistent.pmap(base)]

            def run() -> None:
                m = start[0] if held else start.pop()
                for chunk in chunks:
                    evolver = m.evolver()
                    for key, value in chunk:
                        evolver[key] = value
                    m = evolver.persistent()
                assert m[last_key] == last_value

            return run, _nothing

        return make

    def plain_trial() -> tuple[Run, Cleanup]:
        def run() -> None:
            for chunk in chunks:
                d = {}
                for key, value in chunk:
                    d[key] = value

        return run, _nothing

    trials: dict[str, tuple[Trial, int]] = {
        SK_BATCH: (statekeep_trial, n),
        IMM_MUTATE: (immutables_trial, n),
        PLAIN_DICT: (plain_trial, n),
    }
    if pyrsistent is not None:
        trials[PYR_EVOLVER] = (pyrsistent_trial(held=True), n)
        trials[PYR_EVOLVER_FREE] = (pyrsistent_trial(held=False), n)
    median, best = _per_call(trials, sizes.repeats, progress, "state batch")
    costs = _Costs(median, best, PLAIN_DICT)
    label = (
        f"state batch of {BATCH} updates, {sizes.state_keys:,} keys, "
        f"{sizes.state_subscribers:,} subscribers elsewhere"
    )
    rows = costs.against_immutables(label, SK_BATCH, IMM_MUTATE, BATCH_COST, "a version a batch")
    return rows + _pyrsistent_rows(label, costs, (PYR_EVOLVER, PYR_EVOLVER_FREE), IMM_MUTATE)


# -- 3. memory -------------------------------------------------------------------------


def _traced(make: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes allocated by make() and still held when it returns (and what it made)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        made = make()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before, made
    finally:
        tracemalloc.stop()


def _mib(size: float) -> str:
    return f"{size / MiB:,.1f} MiB" if size >= MiB else f"{size / 1024:,.0f} KiB"


def _memory(sizes: Sizes, progress: Progress) -> list[Result]:
    count, keys = sizes.state_versions, sizes.state_keys
    model = _meters_model(sizes)
    base = dict(model.meters)
    chosen = _updated_keys(sizes, count, hot=False, seed=5)
    values = _values(count, seed=6)
    label = f"state memory of {count} versions, one key changed in each, {keys:,} keys"

    def statekeep_versions() -> AppState[Meters]:
        state = AppState(model, name="bench", history=count)
        for key, value in zip(chosen, values, strict=True):
            state.set(("meters", key), value, priority=CRITICAL)
        return state

    def dict_copies() -> list[dict[str, float]]:
        kept, d = [], base
        for key, value in zip(chosen, values, strict=True):
            d = d.copy()
            d[key] = value
            kept.append(d)
        return kept

    def map_versions(empty: Any) -> Callable[[], list[Any]]:
        def make() -> list[Any]:
            kept, m = [], empty(base)
            for key, value in zip(chosen, values, strict=True):
                m = m.set(key, value)
                kept.append(m)
            return kept

        return make

    progress(f"{label}: statekeep (tracemalloc)")
    traced_state, state = _traced(statekeep_versions)
    progress(f"{label}: statekeep state.memory()")
    started = time.perf_counter()
    report = state.memory()
    walked = time.perf_counter() - started
    assert report.versions == count, report
    state.close()
    del state
    progress(f"{label}: dict copies (tracemalloc)")
    traced_copies, copies = _traced(dict_copies)
    del copies
    progress(f"{label}: immutables (tracemalloc)")
    traced_map, maps = _traced(map_versions(immutables.Map))
    del maps
    rows = [
        Result(
            label,
            "statekeep state.memory().sharing",
            target=f">= {SHARING:.0%} shared",
            passed=report.sharing >= SHARING,
            detail=f"{report.sharing:.3%} of each version shared with the one before; "
            f"total_bytes {_mib(report.total_bytes)} for {report.versions} versions "
            f"(the newest alone {_mib(report.version_bytes)}, as full copies "
            f"{_mib(report.copies_bytes)}: {report.copies_bytes / report.total_bytes:.0f}x); "
            f"keys and values counted; measured in {walked:.2f} s",
        ),
        Result(
            label,
            "statekeep AppState + 100 versions, tracemalloc",
            detail=f"{_mib(traced_state)} from before the state was made "
            f"(keys and floats were there before: not counted); "
            f"{traced_copies / traced_state:.0f}x less than the dict copies",
        ),
        Result(
            label,
            f"{count} dict.copy() with one key set, kept, tracemalloc",
            detail=f"{_mib(traced_copies)} ({_mib(traced_copies / count)} a copy)",
        ),
        Result(
            label,
            f"immutables Map + {count} versions kept, tracemalloc",
            detail=f"{_mib(traced_map)}; {traced_copies / traced_map:.0f}x less than the copies",
        ),
    ]
    if pyrsistent is None:
        rows.append(Result(label, "pyrsistent", detail="skipped: pyrsistent is not installed"))
    else:
        progress(f"{label}: pyrsistent (tracemalloc)")
        traced_pmap, pmaps = _traced(map_versions(pyrsistent.pmap))
        del pmaps
        rows.append(
            Result(
                label,
                f"pyrsistent pmap + {count} versions kept, tracemalloc",
                detail=f"{_mib(traced_pmap)}; "
                f"{traced_copies / traced_pmap:.0f}x less than the copies",
            )
        )
    return rows


# -- 4. snapshots ------------------------------------------------------------------------


def studio_state(seed: int = 7) -> AppState[Studio]:
    """A studio state like the demo's: a session, 64 meters updated 1,000
    times (NORMAL, flushed), the transport, 200 markers."""
    rng = random.Random(seed)
    words = ("verse", "chorus", "bridge", "take", "retake", "solo", "outro", "intro", "fix")
    channels = [f"mic-{device:02d}/{side}" for device in range(32) for side in ("in", "out")]
    studio = Studio(
        session=Session(
            id="0191b0c3-5e2a-7d3e-9a51-3f0d6c1b2a77",
            name="take-07 of the morning session",
            device="mic-07",
            engineer="Ada Lovelace",
            notes="the second chorus clips on mic-03; check levels before the next take",
            started=datetime(2024, 5, 21, 9, 0, tzinfo=UTC) + timedelta(minutes=42),
            take=7,
        ),
        meters={name: -60.0 for name in channels},
        transport=Transport(playing=True, recording=True, position_ms=1_234_567, tempo=96.0),
        markers=[
            Marker(
                at_ms=i * 3_750 + rng.randrange(1_000),
                label=f"{rng.choice(words)} {i // 8 + 1}",
                color=rng.choice(("yellow", "red", "green", "blue")),
            )
            for i in range(200)
        ],
    )
    state = AppState(studio, name="studio")
    for _ in range(1_000):
        state.set(("meters", rng.choice(channels)), round(rng.uniform(-60.0, 0.0), 2))
    state.flush()
    return state


@dataclass(frozen=True)
class Codec:
    """A snapshot codec: the whole path (a frozen value to bytes and bytes
    to plain data) and its compressor alone (JSON bytes to bytes and back)."""

    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    compress: Callable[[bytes], bytes]
    decompress: Callable[[bytes], bytes]


def _zlib(level: int) -> Codec:
    def encode(value: Any) -> bytes:
        return zlib.compress(pydantic_core.to_json(plain(value)), level)

    def decode(data: bytes) -> Any:
        return pydantic_core.from_json(zlib.decompress(data))

    return Codec(encode, decode, lambda raw: zlib.compress(raw, level), zlib.decompress)


def _zstd(level: int, schema: Schema) -> Codec:
    compressor, decompressor = zstandard.ZstdCompressor(level=level), zstandard.ZstdDecompressor()
    return Codec(
        lambda value: codec.encode(value, level, schema),
        lambda data: codec.decode(data, schema)[0],
        compressor.compress,
        decompressor.decompress,
    )


def _codecs(sizes: Sizes, progress: Progress) -> list[Result]:
    n = sizes.state_snapshots
    state = studio_state()
    value, schema = state.value, state.schema
    state.close()
    json_bytes = pydantic_core.to_json(plain(value))
    raw = len(json_bytes)
    expected = pydantic_core.from_json(json_bytes)
    codecs: dict[str, Codec] = {
        **{f"statekeep _codec, zstd level {level}": _zstd(level, schema) for level in ZSTD_LEVELS},
        **{f"to_json + zlib level {level}": _zlib(level) for level in ZLIB_LEVELS},
    }
    reference = f"to_json + zlib level {ZLIB_LEVELS[-1]}"
    stored = {name: len(c.encode(value)) for name, c in codecs.items()}
    for name, c in codecs.items():
        exact = name.startswith("statekeep")  # the frozen tree itself; JSON: plain data
        assert c.decode(c.encode(value)) == (value if exact else expected), name
        assert c.decompress(c.compress(json_bytes)) == json_bytes, name

    def loop(work: Callable[[Any], Any], given: Callable[[], Any]) -> Trial:
        """n calls of work on what given() makes (untimed)."""

        def make() -> tuple[Run, Cleanup]:
            argument = given()

            def run() -> None:
                for _ in range(n):
                    work(argument)

            return run, _nothing

        return make

    alone = " (the compressor alone)"
    rows: list[Result] = []
    for what in ("compress", "decompress"):
        trials: dict[str, tuple[Trial, int]] = {}
        for name, c in codecs.items():
            if what == "compress":
                trials[name] = (loop(c.encode, lambda: value), n)
                trials[name + alone] = (loop(c.compress, lambda: json_bytes), n)
            else:
                trials[name] = (loop(c.decode, partial(c.encode, value)), n)
                trials[name + alone] = (loop(c.decompress, partial(c.compress, json_bytes)), n)
        median, best = _per_call(trials, sizes.repeats, progress, f"state snapshot {what}ion")
        doing = "compress" if what == "compress" else "restore"
        label = f"state snapshot {doing}, the studio state ({raw / 1000:.1f} kB of JSON)"
        for name in codecs:
            rows.append(
                Result(
                    label,
                    name,
                    1 / median[name],
                    median[reference] / median[name],
                    detail=f"{raw / median[name] / 1e6:,.0f} MB/s of JSON "
                    f"(best {raw / best[name] / 1e6:,.0f}; the {what}or alone "
                    f"{raw / median[name + alone] / 1e6:,.0f}); stored {stored[name]:,} bytes, "
                    f"{stored[name] / raw:.1%} of the JSON ({raw / stored[name]:.1f}:1)",
                )
            )
    return rows


# -- 4. restore through the store ---------------------------------------------------------

SK_RESTORE = "statekeep store.state(name, Model) (full snapshot)"
BY_HAND = "by hand: sqlite3 SELECT of zstd JSON, from_json, model_validate"


def _restore(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    path = os.path.join(workdir, "state_restore.db")
    remove_db(path)
    url = f"sqlite:///{path}"
    model = _meters_model(sizes)
    progress("state restore: writing the snapshot")
    with statekeep.open(url) as store:
        state = store.state("meters", model)
        state.wait_durable(60.0)
        version = state.version
        json_bytes = len(_by_hand_row(path, state.value))
    body_bytes = _stored_size(path)

    def statekeep_trial() -> tuple[Run, Cleanup]:
        store = statekeep.open(url)
        restored: list[AppState[Meters]] = []

        def run() -> None:
            restored.append(store.state("meters", Meters))

        def cleanup() -> None:
            assert restored[0].version == version
            assert len(restored[0].value.meters) == sizes.state_keys
            store.close()

        return run, cleanup

    def by_hand_trial() -> tuple[Run, Cleanup]:
        conn = sqlite3.connect(path)
        got: list[Meters] = []

        def run() -> None:
            (data,) = conn.execute("SELECT data FROM by_hand WHERE id = 'meters'").fetchone()
            raw = zstandard.ZstdDecompressor().decompress(data)
            got.append(Meters.model_validate(pydantic_core.from_json(raw)))

        def cleanup() -> None:
            assert len(got[0].meters) == sizes.state_keys
            conn.close()

        return run, cleanup

    median, best = _per_call(
        {SK_RESTORE: (statekeep_trial, 1), BY_HAND: (by_hand_trial, 1)},
        sizes.repeats,
        progress,
        "state restore from SQLite",
    )
    remove_db(path)
    label = f"state restore from SQLite, {sizes.state_keys:,} keys"
    return [
        Result(
            label,
            name,
            1 / median[name],
            median[BY_HAND] / median[name],
            detail=f"{_us(median[name])} (best {_us(best[name])}); "
            f"{json_bytes / 1e6:.2f} MB of JSON, {body_bytes / 1e6:.2f} MB stored: "
            f"{json_bytes / median[name] / 1e6:,.0f} MB/s of JSON",
        )
        for name in (BY_HAND, SK_RESTORE)
    ]


def _stored_size(path: str) -> int:
    """The size of the state's full snapshot row."""
    conn = sqlite3.connect(path)
    try:
        (body,) = conn.execute(
            "SELECT body FROM app_state_snapshots WHERE id = ?", (full_id("meters"),)
        ).fetchone()
    finally:
        conn.close()
    return len(body)


def _by_hand_row(path: str, value: Any) -> bytes:
    """The state as a user would keep it by hand: JSON, zstd level 3, in a
    row of its own table; returns the JSON."""
    raw = pydantic_core.to_json(plain(value))
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.execute("CREATE TABLE IF NOT EXISTS by_hand (id TEXT PRIMARY KEY, data BLOB)")
            conn.execute(
                "INSERT OR REPLACE INTO by_hand VALUES ('meters', ?)",
                (zstandard.ZstdCompressor(level=3).compress(raw),),
            )
    finally:
        conn.close()
    return raw
