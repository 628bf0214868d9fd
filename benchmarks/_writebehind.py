"""What the write-behind benchmarks share: stores in each durability mode,
the entities, and the median-of-rounds figures.

Durability modes (issue 11): `WriteBehindOptions(durability="journal")`
journals every write before it is stored; `"commit"` (local SQLite) makes a
write durable by committing it. An engine without these options (the one of
issue 3) always journals: its default options are the journal mode, and the
commit mode's rows say "n/a" instead of a figure. Whether the options exist
is read from the dataclass's fields, so the same benchmark runs before and
after the engine gains them.
"""

from __future__ import annotations

import dataclasses
import random
import shutil
import statistics
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import statekeep

from . import _models
from .harness import remove_db

JOURNAL = "journal"
COMMIT = "commit"
MODES = (JOURNAL, COMMIT)
NO_MODES = "n/a (engine without durability modes)"
MODE_LABELS = {
    JOURNAL: 'durability="journal"',
    COMMIT: 'durability="commit" (no journal)',
    None: "default durability",
}

ORDERED = "time-ordered ids"
RANDOM = "random uuid4 hex ids"
ID_KINDS = (ORDERED, RANDOM)


def has_durability_modes() -> bool:
    """True once WriteBehindOptions has issue 11's durability options."""
    names = {field.name for field in dataclasses.fields(statekeep.WriteBehindOptions)}
    return "durability" in names


def runnable(mode: str | None) -> bool:
    """Whether this engine can run mode (None: its default options)."""
    return mode in (None, JOURNAL) or has_durability_modes()


def options(mode: str | None, *, fsync: bool = False) -> statekeep.WriteBehindOptions:
    """mode=None: the engine's defaults (durability "auto" once it has modes)."""
    chosen: dict[str, Any] = {"fsync": fsync}
    if mode is not None and has_durability_modes():
        chosen["durability"] = mode
    elif not runnable(mode):
        raise RuntimeError(f"this engine has no durability={mode!r}")
    return statekeep.WriteBehindOptions(**chosen)


def open_store(
    path: str, mode: str | None, *, strict: bool = False, scheme: str = "sqlite"
) -> statekeep.Store:
    """A store on path, its table made and its write-behind started (by one
    stored write, deleted again) before any clock starts. strict: every
    commit and journal write synced (synchronous=full in the URL, fsync=True):
    durable across a power loss too."""
    query = "?synchronous=full" if strict else ""
    store = statekeep.open(f"{scheme}:///{path}{query}", writebehind=options(mode, fsync=strict))
    store.count(_models.BenchTodo)
    warm = _models.BenchTodo(**_models.fields(-1, random.Random(0)))
    store.enqueue(warm).wait_stored(10)
    store.delete(_models.BenchTodo, warm.id)
    return store


def close_store(store: statekeep.Store, path: str, expected: int) -> None:
    """Drains, checks that every write was stored, then removes the files."""
    if not store.flush(60):
        raise RuntimeError(f"write-behind did not drain within 60 s ({path})")
    stored = store.count(_models.BenchTodo)
    store.close()
    remove_db(path)
    shutil.rmtree(path + ".writebehind", ignore_errors=True)
    if stored != expected:
        raise RuntimeError(f"write-behind stored {stored} of {expected} writes ({path})")


def ids(kind: str, n: int) -> list[str]:
    if kind == ORDERED:
        return _models.new_ids(n)
    rng = random.Random(11)
    return [uuid.UUID(int=rng.getrandbits(128), version=4).hex for _ in range(n)]


def edited(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of an update of every entity: a new title, done flipped."""
    return [{**row, "title": row["title"] + " (edited)", "done": not row["done"]} for row in rows]


def updates(rows: list[dict[str, Any]], ids: list[str]) -> list[_models.BenchTodo]:
    """Entities as loaded after one save (version 1), edited."""
    return [
        _models.BenchTodo(id=id, version=1, **row)
        for id, row in zip(ids, edited(rows), strict=True)
    ]


class Shared:
    """One list of entities for several trials: made once, handed out again
    while every version is still the one it was made with (enqueue() leaves
    the object as it was; an engine that changed it would get a fresh list
    each time, never a list it had already written)."""

    def __init__(self, make: Callable[[], list[_models.BenchTodo]], version: int) -> None:
        self._make = make
        self._version = version
        self._models: list[_models.BenchTodo] | None = None

    def take(self) -> list[_models.BenchTodo]:
        models = self._models
        if models is None or any(m.version != self._version for m in models):
            models = self._models = self._make()
        return models


# -- medians of rounds -----------------------------------------------------------
@dataclass(frozen=True)
class Spread:
    """A figure over rounds: its median, the best round's and the range."""

    median: float
    best: float
    low: float
    high: float
    rounds: int

    @classmethod
    def of(cls, values: Sequence[float], *, higher_is_better: bool = True) -> Spread:
        return cls(
            statistics.median(values),
            max(values) if higher_is_better else min(values),
            min(values),
            max(values),
            len(values),
        )


def ratio_spread(reference: Sequence[float], contender: Sequence[float]) -> Spread:
    """Per round: reference time / contender time (higher: contender faster).
    The best is the best-of ratio (best reference time / best contender time)."""
    per_round = [r / c for r, c in zip(reference, contender, strict=True)]
    spread = Spread.of(per_round)
    return dataclasses.replace(spread, best=min(reference) / min(contender))


def ratio_detail(spread: Spread) -> str:
    if spread.rounds == 1:
        return "1 round"
    return (
        f"median of {spread.rounds} rounds ({spread.low:.2f}-{spread.high:.2f}x), "
        f"best-of {spread.best:.2f}x"
    )


def us(ns: float) -> str:
    if ns >= 1_000_000:
        return ms(ns)
    return f"{ns / 1000:,.1f} us" if ns < 10_000 else f"{ns / 1000:,.0f} us"


def ms(ns: float) -> str:
    return f"{ns / 1e6:,.1f} ms"
