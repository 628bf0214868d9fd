"""Hostile-user probes of statekeep.state, eighth round: model() now thaws
each Node into its own class and validates it again, NORMAL sets of a dict
field's keys wait as SetKey/SetMany, the update counters and the rate,
history_bytes estimates of values set whole, and drafts held across `+=`.

Each test asserts what a demanding user expects (docs/state.md): model()
gives back the value the state holds; the counters count what happened;
the history stays within about `history_bytes`; a draft is changed like a
normal object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

import statekeep
from statekeep.flow import FakeClock
from statekeep.state import AppState, Priority

CRITICAL = Priority.CRITICAL


# -- 1. model(): validators run again on a value they already made -------------------------------
class Shout(BaseModel):
    name: str = ""

    @field_validator("name")
    @classmethod
    def _bang(cls, value: str) -> str:
        return value + "!"


class Counted(BaseModel):
    n: int = 0

    @model_validator(mode="after")
    def _count(self) -> Counted:
        self.__dict__["n"] = self.n + 1
        return self


class Doubled(BaseModel):
    n: int = 0

    @model_validator(mode="before")
    @classmethod
    def _double(cls, data: Any) -> Any:
        if isinstance(data, dict) and "n" in data:
            return {**data, "n": data["n"] * 2}
        return data


@dataclasses.dataclass
class Tagged:
    tags: list[str] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.tags = [*self.tags, "seen"]


class HoldsShout(BaseModel):
    inner: Shout = Shout()


class HoldsTagged(BaseModel):
    tagged: Tagged = dataclasses.field(default_factory=Tagged)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Shout(name="x"),
        lambda: Counted(n=1),
        lambda: Doubled(n=1),
        lambda: HoldsShout(inner=Shout(name="y")),
        lambda: HoldsTagged(tagged=Tagged()),
    ],
    ids=[
        "field_validator",
        "model_validator_after",
        "model_validator_before",
        "nested",
        "post_init",
    ],
)
def test_model_gives_back_the_value_set_when_its_validators_are_not_idempotent(
    make: Callable[[], BaseModel],
) -> None:
    """Docs: `state.model()` is a new pydantic instance of the current value.
    The state holds the value its validators made (name "x!"), but
    AppState.model (src/statekeep/state/_appstate.py) and _node.thawed
    (src/statekeep/state/_node.py) validate the thawed fields again, so
    every validator runs a second time on its own output: model() gives
    name "x!!", n 3 for n 2, a dataclass's __post_init__ tags twice."""
    initial = make()
    state = AppState(initial)
    try:
        model = state.model()
    finally:
        state.close()
    assert model == initial, f"{model!r} != {initial!r}"


# -- 2. model(): dataclass fields not given to __init__ ------------------------------------------
@dataclasses.dataclass
class Hits:
    x: int = 0
    hits: int = dataclasses.field(default=0, init=False)


@dataclasses.dataclass
class OnlyHits:
    hits: int = dataclasses.field(default=0, init=False)


class HoldsHits(BaseModel):
    some: Hits = dataclasses.field(default_factory=Hits)
    only: OnlyHits = dataclasses.field(default_factory=OnlyHits)


def test_model_keeps_dataclass_fields_not_given_to_init() -> None:
    """A dataclass field with init=False is kept in the snapshot (hits=7),
    but _node.thawed_fields (src/statekeep/state/_node.py) builds the
    dataclass from its __init__ fields only and never sets the others back
    (as _node.thaw does for keys), and `node._init or range(...)` takes an
    empty tuple (every field init=False) for "all": model() resets them
    to their defaults."""
    some, only = Hits(x=1), OnlyHits()
    some.hits, only.hits = 7, 5
    initial = HoldsHits(some=some, only=only)
    state = AppState(initial)
    try:
        assert state.value.some.hits == 7 and state.value.only.hits == 5  # the snapshot has them
        model = state.model()
    finally:
        state.close()
    assert (model.some.hits, model.only.hits) == (7, 5), repr(model)


# -- 3. model(): dict keys that are frozen models ------------------------------------------------
class AliasOnly(BaseModel):
    model_config = ConfigDict(frozen=True, validate_by_name=False, validate_by_alias=True)
    name: str = Field(alias="N")


class StrictKey(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True)
    parts: tuple[int, ...] = ()


class Flat(BaseModel):
    model_config = ConfigDict(frozen=True)
    x: int = 0


class Deep(BaseModel):
    model_config = ConfigDict(frozen=True)
    x: int = 0
    z: int = 0


class UnionKey(BaseModel):
    model_config = ConfigDict(frozen=True)
    point: Deep | Flat = Deep()


class ByAlias(BaseModel):
    by: dict[AliasOnly, int] = {}


class ByStrict(BaseModel):
    by: dict[StrictKey, int] = {}


class ByUnion(BaseModel):
    by: dict[UnionKey, int] = {}


@pytest.mark.parametrize(
    "make",
    [
        lambda: ByAlias(by={AliasOnly(N="a"): 1}),
        lambda: ByStrict(by={StrictKey(parts=(1, 2)): 1}),
        lambda: ByUnion(by={UnionKey(point=Flat(x=1)): 1}),
    ],
    ids=["alias_only", "strict_tuple", "union_member"],
)
def test_model_of_a_dict_keyed_by_frozen_models_gives_the_keys_back(
    tmp_path: Path, make: Callable[[], BaseModel]
) -> None:
    """model() thaws a dict's keys with _node.plain_key -> _node.thaw
    (src/statekeep/state/_node.py), which still validates plain(node): field
    names without by_name (a model that takes its alias only: "N: Field
    required"), lists for tuples (a strict model: "Input should be a valid
    tuple"), dicts for a union's member (Flat(x=1) comes back Deep(x=1,
    z=0)). The value itself reopens fine on SQLite; model() does not."""
    initial = make()
    model_class = type(initial)
    with statekeep.open(f"sqlite:///{tmp_path / 'keys.db'}") as store:
        state = store.state("keys", model_class)
        state.update(lambda draft: initial, priority=CRITICAL)
        state.wait_durable(timeout=5)
    with statekeep.open(f"sqlite:///{tmp_path / 'keys.db'}") as store:
        state = store.state("keys", model_class)
        fresh = AppState(initial)
        assert state.value == fresh.value  # the snapshot reopens as it was
        fresh.close()
        assert state.model() == initial


# -- 4. counters: waiting sets of a dict field that is None --------------------------------------
class Meters(BaseModel):
    meters: dict[str, float] | None = None
    n: int = 0


def test_each_waiting_set_of_a_dict_field_that_is_none_counts_as_failed() -> None:
    """Docs: updates_failed counts updates that raised when applied, or
    whose path was gone by then. Two NORMAL sets of keys of an Optional dict
    field wait in one frame and are grouped into one SetMany; the field is
    None when they are applied, so SetMany.apply
    (src/statekeep/state/_updates.py) re-raises the first set's error and
    the whole group counts as one failed update, not two."""
    state = AppState(Meters, clock=FakeClock(auto=False))
    try:
        state.set("n", 1)  # at once: opens the frame
        state.set(("meters", "left"), -1.0)  # both wait for the frame
        state.set(("meters", "right"), -2.0)
        state.flush()
        counters = state.stats().counters
    finally:
        state.close()
    assert state.value.meters is None
    assert (counters.updates_applied, counters.updates_failed) == (1, 2), counters


# -- 5. the rate --------------------------------------------------------------------------------
class Cursor(BaseModel):
    cursor: int = 0


def _step(draft: Any) -> None:
    draft.cursor += 1


def test_the_update_that_opens_a_rate_window_is_not_counted_in_the_one_before() -> None:
    """Docs: decisions.rate is the update rate over windows of about a
    second. Ten updates arrive in the first second and the eleventh after
    it, yet Coordinator._arrived (src/statekeep/state/_coordinator.py)
    counts the arrival before it ends the window: the first window is
    reported as 11 updates a second."""
    clock = FakeClock(auto=False)
    state = AppState(Cursor, clock=clock)
    try:
        for _ in range(10):
            state.update(_step, priority=CRITICAL)
        clock.advance(1.0)
        state.update(_step, priority=CRITICAL)  # the next window's first
        rate = state.stats().decisions.rate
    finally:
        state.close()
    assert rate == pytest.approx(10.0), rate


# -- 6. history_bytes of values set whole -------------------------------------------------------
class Board(BaseModel):
    cells: dict[str, int] = {}
    anything: Any = None
    notes: list[str] = []


def _whole_state(state: AppState[Board], version: int) -> None:
    cells = {f"c{n}": n + version * 100_000 for n in range(20_000)}
    state.update(lambda draft: Board(cells=cells), priority=CRITICAL)


def _nested_in_any(state: AppState[Board], version: int) -> None:
    inner = {f"c{n}": n + version * 100_000 for n in range(20_000)}
    state.set("anything", {"inner": inner}, priority=CRITICAL)


def _big_strings(state: AppState[Board], version: int) -> None:
    state.set("notes", [f"{version}-{n}" + "x" * 20_000 for n in range(20)], priority=CRITICAL)


@pytest.mark.parametrize(
    "step", [_whole_state, _nested_in_any, _big_strings], ids=lambda f: f.__name__.strip("_")
)
def test_history_bytes_bounds_versions_that_set_a_deep_value_whole(
    step: Callable[[AppState[Board], int], None],
) -> None:
    """Docs: `history_bytes=` bounds the kept versions by an estimate of the
    bytes they do not share. whole_bytes (src/statekeep/state/_history.py)
    charges a value set whole for its top level only: an update() returning
    a new value (path ()) is charged a Node's tuple, a dict of one key
    holding 20,000 keys 128 bytes, 20 strings of 20 KB 32 bytes each. 20
    such versions (8-50 MB) stay kept under a 1 MB bound."""
    limit = 1_000_000
    state = AppState(Board, history_bytes=limit)
    try:
        for version in range(20):
            step(state, version)
        report = state.memory()
    finally:
        state.close()
    assert report.total_bytes < 3 * limit + report.version_bytes, (
        f"{report.versions} versions in {report.total_bytes:,} bytes under history_bytes={limit:,}"
    )


# -- 7. a list item's draft held across += / |= -------------------------------------------------
class Nested(BaseModel):
    lists: list[list[int]] = [[1]]
    sets: list[set[int]] = [{1}]
    dicts: list[dict[str, int]] = [{"a": 1}]
    anything: Any = [[1]]


def _lists(draft: Any) -> None:
    inner = draft.lists[0]
    draft.lists[0] += [2]
    inner.append(3)


def _sets(draft: Any) -> None:
    inner = draft.sets[0]
    draft.sets[0] |= {2}
    inner.add(3)


def _dicts(draft: Any) -> None:
    inner = draft.dicts[0]
    draft.dicts[0] |= {"b": 2}
    inner["c"] = 3


def _any(draft: Any) -> None:
    inner = draft.anything[0]
    draft.anything[0] += [2]
    inner.append(3)


@pytest.mark.parametrize(
    ("fn", "field", "expected"),
    [
        (_lists, "lists", (1, 2, 3)),
        (_sets, "sets", frozenset({1, 2, 3})),
        (_dicts, "dicts", {"a": 1, "b": 2, "c": 3}),
        (_any, "anything", (1, 2, 3)),
    ],
    ids=["list", "set", "dict", "any"],
)
def test_a_list_items_draft_held_across_an_augmented_assignment_keeps_its_changes(
    fn: Callable[[Any], None], field: str, expected: Any
) -> None:
    """Docs: a draft is changed like a normal object. In Python
    `inner = rows[0]; rows[0] += [2]; inner.append(3)` leaves rows[0] ==
    [1, 2, 3]: `+=` changed the item in place and stored it back. Dict and
    model drafts keep such a held draft (fixed in round six), but
    ListDraft.__setitem__ (src/statekeep/state/_draft.py) freezes the item's
    draft it is handed back and puts the frozen value in its place, so
    what is made through the held draft afterwards is silently lost."""
    state = AppState(Nested)
    try:
        state.update(fn, priority=CRITICAL)
        value = getattr(state.value, field)[0]
        value = dict(value) if isinstance(expected, dict) else value
    finally:
        state.close()
    assert value == expected
