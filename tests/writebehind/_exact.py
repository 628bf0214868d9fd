"""Entities and option helpers of the issue-11 exactness tests (test_exact_*).

The child processes import this module too, so it stays free of anything but
statekeep and the standard library.

Until the engine of issue 11 lands, a few of its names do not exist; the
helpers here look them up by name, so that the tests type-check today and
fail on the behaviour they pin (how each fails today is in its docstring),
and so that they exercise the same behaviour before and after:

- `journaled(**options)`: write-behind options under which every write goes
  to the journal before it is stored (`durability="journal"`); the engine
  before issue 11 journals every write of a persistent backend and has no
  `durability` option.
- `Shared`: an entity class declared `last_write_wins=True`; before issue 11
  every class behaves so, and the keyword does not exist.
- `deadlock_error()`: `statekeep.DeadlockError`.
"""

from __future__ import annotations

import dataclasses
import random
import time
from typing import Annotated, Any, cast

import statekeep
from statekeep import Entity, Event, Indexed, WriteBehindOptions


def has_option(name: str) -> bool:
    """Does WriteBehindOptions have this field (an option issue 11 adds)?"""
    return name in {field.name for field in dataclasses.fields(WriteBehindOptions)}


def journaled(**options: Any) -> dict[str, Any]:
    """Write-behind options (as keywords) under which every write is appended
    to the journal, and durable then, before it is stored."""
    if has_option("durability"):
        options["durability"] = "journal"
    return options


def deadlock_error() -> type[statekeep.StatekeepError]:
    found = getattr(statekeep, "DeadlockError", None)
    assert isinstance(found, type) and issubclass(found, statekeep.StatekeepError), (
        "statekeep.DeadlockError (issue 11) does not exist"
    )
    assert getattr(statekeep.errors, "DeadlockError", None) is found
    return cast("type[statekeep.StatekeepError]", found)


class Mark(Entity, collection="wb_exact_mark"):
    """What most exactness tests write: who wrote it, and a number."""

    title: str = ""
    n: int = 0


class Lap(Entity, collection="wb_exact_lap"):
    """Records a domain event (LapFinished) before it is enqueued."""

    seconds: int = 0


class LapFinished(Event):
    seconds: int


class LongKey(Entity, collection="wb_exact_long_key"):
    """An indexed text field: PostgreSQL's btree refuses index rows over ~2.7 KB."""

    key: Annotated[str, Indexed()] = ""


class Plain(Entity, collection="wb_exact_plain"):
    """The stress test's entity: the default conflict rule (writes carry their base version)."""

    counter: int = 0
    payload: str = ""


try:

    class Shared(Entity, collection="wb_exact_shared", last_write_wins=True):
        """Written by several processes at once; every write is stored over
        whatever is there (the opt-out of the conflict rule)."""

        n: int = 0
        writer: str = ""

except TypeError:  # before issue 11: no such keyword, and every class behaves so

    class Shared(Entity, collection="wb_exact_shared"):  # type: ignore[no-redef]
        n: int = 0
        writer: str = ""


def payload_of(id: str, counter: int) -> str:
    """The payload a Plain with this id and counter carries (checked on read)."""
    return f"{id}:{counter}:" + "y" * (counter % 13)


STRESS_WEIGHTS = (3, 6, 1)  # LOW, NORMAL, CRITICAL


def stress_plan(
    seed: int, writes: int, ids: list[str], start: dict[str, int]
) -> list[tuple[str, int, int]]:
    """(id, counter, priority) of each write of a stress child, in order:
    counters go on from `start` (what is stored), so a later one is newer."""
    rng = random.Random(seed)
    counters = {id: start.get(id, 0) for id in ids}
    plan = []
    for _ in range(writes):
        id = ids[rng.randrange(len(ids))]
        counters[id] += 1
        (priority,) = rng.choices(range(3), weights=STRESS_WEIGHTS)
        plan.append((id, counters[id], priority))
    return plan


def attempt(wait: Any, raised: list[BaseException] | None = None) -> str:
    """Calls wait(); says what happened and how long it took (and keeps
    what it raised in `raised`)."""
    started = time.monotonic()
    try:
        result = wait()
    except statekeep.StatekeepError as exc:
        if raised is not None:
            raised.append(exc)
        return f"raised {type(exc).__name__}: {exc}"
    return f"returned {result!r} after {time.monotonic() - started:.2f} s"
