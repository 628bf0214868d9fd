"""Hostile-user probes of statekeep.state, sixth round: dict drafts written
straight into an immutables mutation, Nodes that equal and hash like models
(frozen models and dataclasses as keys), the type check of a stored row on
open (Shape.verify), and defaults pydantic does not validate.

Each test asserts what a demanding user expects (docs/state.md): a draft is
changed like a normal object; a change refused is not made; a state that was
stored opens again, equal, in any process; a Node hashes and compares as its
model does; errors are typed.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import pydantic
import pytest
from pydantic import BaseModel, ConfigDict, Field

import statekeep
from statekeep.errors import StateError, ValidationError
from statekeep.state import AppState, Priority
from statekeep.state._draft import thaw

CRITICAL = Priority.CRITICAL
HANG = 60.0  # seconds before a child process counts as hung


class Nested(BaseModel):
    meters: dict[str, float] = {}
    nested: dict[str, dict[str, int]] = {}


# -- 1. dict drafts --------------------------------------------------------------------------------
def test_a_dict_draft_held_across_an_ior_of_its_field_keeps_its_changes() -> None:
    """`d.meters |= {...}` is `d.meters = d.meters.__ior__(...)`: the same
    dict. NodeDraft.__setattr__ (src/statekeep/state/_draft.py) finishes the
    MapDraft assigned to it and stores the frozen Map, so the draft held
    before (`meters`) is detached: a key set through it afterwards is lost."""
    state = AppState(Nested(meters={"a": 1.0}))

    def change(d: Any) -> None:
        meters = d.meters
        d.meters |= {"b": 2.0}
        meters["c"] = 3.0

    state.update(change, priority=CRITICAL)
    assert thaw(state.value.meters) == {"a": 1.0, "b": 2.0, "c": 3.0}
    state.close()


def test_a_nested_dict_draft_held_across_an_ior_of_its_key_keeps_its_changes() -> None:
    """`d.nested["x"] |= {...}` sets the key to the same draft: MapDraft.
    __setitem__ (_draft.py) finishes it via _incoming() and drops it from the
    overlay, so `x`, held before, no longer reaches the state."""
    state = AppState(Nested(nested={"x": {"k": 1}}))

    def change(d: Any) -> None:
        x = d.nested["x"]
        d.nested["x"] |= {"j": 2}
        x["m"] = 3

    state.update(change, priority=CRITICAL)
    assert thaw(state.value.nested) == {"x": {"k": 1, "j": 2, "m": 3}}
    state.close()


def test_a_change_refused_on_a_kept_dict_draft_is_not_made_in_it() -> None:
    """A dict draft kept after its batch refuses changes with StateError,
    but MapDraft.__setitem__/__delitem__ (_draft.py) write the mutation
    before Changes refuses the path: the refused changes stay in the draft,
    are read back from it and are carried into a later update that uses it."""
    state = AppState(Nested(meters={"a": 1.0}))
    with state.batch() as draft:
        kept = draft.meters
        kept["b"] = 2.0
    for refused in (
        lambda: kept.__setitem__("c", 3.0),
        lambda: kept.__delitem__("a"),
        kept.clear,
    ):
        with pytest.raises(StateError):
            refused()
    assert dict(kept.items()) == {"a": 1.0, "b": 2.0}  # nothing refused was made
    state.update(lambda d: setattr(d, "nested", {}), priority=CRITICAL)
    state.update(lambda d: d.meters.update(kept), priority=CRITICAL)
    assert thaw(state.value.meters) == {"a": 1.0, "b": 2.0}
    state.close()


def test_update_inside_a_batch_may_add_and_remove_a_new_key() -> None:
    """update(fn) inside batch() replays fn's changed paths into the batch's
    draft (run_in in _draft.py): a key fn added then deleted is replayed as a
    removal of a key the batch never had, a StatePathError. Plain dict: a
    no-op; update() outside a batch takes it."""
    state = AppState(Nested(meters={"a": 1.0}))

    def add_and_remove(d: Any) -> None:
        d.meters["tmp"] = 1.0
        del d.meters["tmp"]
        d.meters["b"] = 2.0

    with state.batch():
        state.update(add_and_remove)
    assert thaw(state.value.meters) == {"a": 1.0, "b": 2.0}
    state.close()


class Capped(BaseModel):
    small: Annotated[dict[str, int], Field(max_length=2)] = {}


def test_comparing_a_constrained_dict_draft_mid_batch_does_not_refuse_the_batch() -> None:
    """A constrained dict is checked whole when the draft ends. Draft.__eq__
    and __repr__ (_draft.py) call _finish(), which checks it whole there and
    then: a batch over max_length for a moment passes, unless the draft was
    compared (or printed) at that moment, then it raises ValidationError."""
    state = AppState(Capped(small={"a": 1, "b": 2}))
    with state.batch() as d:
        d.small["c"] = 3
        assert d.small == {"a": 1, "b": 2, "c": 3}
        del d.small["a"]
    assert thaw(state.value.small) == {"b": 2, "c": 3}
    state.close()


# -- 2. Nodes, frozen models and dataclasses as keys ---------------------------------------------
class UserKey(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: int
    label: str = ""

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UserKey) and other.id == self.id


@dataclasses.dataclass(frozen=True)
class Version:
    number: int
    note: str = dataclasses.field(default="", compare=False)


class Keyed(BaseModel):
    by_user: dict[UserKey, int] = {}
    by_version: dict[Version, int] = {}


@pytest.mark.parametrize(
    ("field", "key", "probe"),
    [
        pytest.param("by_user", UserKey(id=1, label="x"), UserKey(id=1, label="x"), id="same-key"),
        pytest.param("by_user", UserKey(id=1, label="x"), UserKey(id=1, label="y"), id="custom-eq"),
        pytest.param("by_version", Version(1, "a"), Version(1, "b"), id="compare-false"),
    ],
)
def test_a_dict_keyed_by_a_model_is_read_with_a_key_its_class_calls_equal(
    field: str, key: Any, probe: Any
) -> None:
    """docs: a Node "hashes as a frozen model of that value does", so a dict
    keyed by frozen models is read with the models themselves. Node.__hash__
    and __eq__ (src/statekeep/state/_node.py) use pydantic's default formula
    and compare every field, ignoring a model's own __hash__/__eq__ and a
    dataclass field's compare=False: the lookup is a KeyError."""
    state = AppState(Keyed)
    state.set(field, {key: 7}, priority=CRITICAL)
    assert probe == key and hash(probe) == hash(key)  # what a plain dict goes by
    assert getattr(state.value, field)[probe] == 7
    state.close()


@dataclasses.dataclass(frozen=True)
class Cell:
    row: int
    label: str = dataclasses.field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "label", f"r{self.row}")


class Sheet(BaseModel):
    cells: dict[Cell, int] = {}


def test_model_of_a_dict_keyed_by_a_dataclass_with_an_init_false_field() -> None:
    """state.model() rebuilds a dataclass key with model(**fields)
    (plain_key in _node.py), passing the init=False field too: a raw
    TypeError, not the model (nor even a typed error)."""
    state = AppState(Sheet)
    state.set("cells", {Cell(2): 5}, priority=CRITICAL)
    assert state.model().cells == {Cell(2): 5}
    state.close()


_DATACLASS_KEYS_CHILD = """
import dataclasses, sys
import pydantic
import statekeep
from statekeep.state import Priority

@dataclasses.dataclass(frozen=True)
class Pos:
    x: int = 0

class Board(pydantic.BaseModel):
    at: dict[Pos, str] = {}

with statekeep.open(sys.argv[2]) as store:
    board = store.state("board", Board)
    if sys.argv[1] == "write":
        board.set("at", {Pos(1): "rook"}, priority=Priority.CRITICAL)
        board.wait_durable(5)
    else:
        print(dict(board.value.at))
"""


def test_a_dict_keyed_by_frozen_dataclasses_reopens_in_a_new_process(tmp_path: Path) -> None:
    """A dataclass is not in the state's schema (_walk in _pack.py looks for
    BaseModel and enums only), so a new process that has not yet frozen one
    reads the row inexactly (_Unpacker._class: no Node class for it): each
    key comes back as a dict, 'unhashable type', and the state cannot be
    opened at all. (In the process that wrote it, it reopens.)"""
    script = tmp_path / "child.py"
    script.write_text(_DATACLASS_KEYS_CHILD)
    url = f"sqlite:///{tmp_path / 'board.db'}"
    runs = [
        subprocess.run(
            [sys.executable, str(script), how, url], capture_output=True, text=True, timeout=HANG
        )
        for how in ("write", "read")
    ]
    assert runs[0].returncode == 0, runs[0].stderr
    assert runs[1].returncode == 0, runs[1].stderr[-600:]
    assert runs[1].stdout.strip() == "{Pos(x=1): 'rook'}"


# -- 3. a stored row's types checked on open: no false refusal --------------------------------
class Mixer(BaseModel):
    gains: dict[str, float] = {"left": 0, "right": 0}  # ints: pydantic does not validate defaults
    pan: list[float] = [0, 0]
    take: int = 0


def test_a_state_with_int_defaults_in_float_containers_reopens(tmp_path: Path) -> None:
    """`dict[str, float] = {"left": 0}` is stored as given (a default is not
    validated), then refused on open: Shape.verify (src/statekeep/state/
    _shape.py) wants exactly a float, and ModelShape.verify's "a default as
    set" skip compares the Map with the dict default (never equal). The state
    a Store kept cannot be opened again."""
    url = f"sqlite:///{tmp_path / 'mixer.db'}"
    with statekeep.open(url) as store:
        mixer = store.state("mixer", Mixer)
        mixer.set("take", 1, priority=CRITICAL)
        left = mixer.value
    with statekeep.open(url) as store:
        mixer = store.state("mixer", Mixer)
        assert mixer.value == left and mixer.version == 1


@pydantic.dataclasses.dataclass(config=ConfigDict(extra="forbid"))
class Area:
    width: int = 1
    size: int = dataclasses.field(init=False, default=0)

    def __post_init__(self) -> None:
        self.size = self.width * 2


class Plan(BaseModel):
    area: Area = Area()
    take: int = 0


def test_a_pydantic_dataclass_with_an_init_false_field_reopens(tmp_path: Path) -> None:
    """Shape.verify of a dataclass field validates plain(value) (_shape.py),
    a dict of every field, init=False ones included: a dataclass that
    forbids extra input refuses it, so its stored state is refused on open
    ('not a Area'), and state.model() is a ValidationError too."""
    url = f"sqlite:///{tmp_path / 'plan.db'}"
    with statekeep.open(url) as store:
        plan = store.state("plan", Plan)
        plan.set("area", Area(width=3), priority=CRITICAL)
        left = plan.value
    with statekeep.open(url) as store:
        plan = store.state("plan", Plan)
        assert plan.value == left
        assert plan.model().area == Area(width=3)


class Inner(BaseModel):
    x: float = 0.0


class NoneDefault(BaseModel):
    inner: Inner = None  # type: ignore[assignment]  # pydantic does not validate it


class DictDefault(BaseModel):
    items: list[Inner] = [{"x": 1.0}]  # type: ignore[list-item]  # not validated either


@pytest.mark.parametrize("model", [NoneDefault, DictDefault])
def test_a_model_default_pydantic_did_not_validate_is_a_typed_error_or_works(
    model: type[BaseModel],
) -> None:
    """A model field whose default pydantic did not validate (None, or a
    dict where a model is declared) raises a raw AttributeError from
    ModelShape.adopt (getattr of the field on None or a dict, _shape.py);
    the same with a dict or list field is a ValidationError (round 2)."""
    try:
        state = AppState(model)
    except ValidationError:
        return
    state.close()


def test_setting_none_where_no_draft_was_read_sets_none() -> None:
    """Guard for the `|=` fix: assigning None to a field or key never read
    through the draft is a change like any other (not taken for the draft
    already there)."""

    class Holder(BaseModel):
        focus: Optional[Nested] = None  # noqa: UP045
        maybe: dict[str, Optional[int]] = {"a": 1}  # noqa: UP045

    state = AppState(Holder(focus=Nested()))
    with state.batch() as d:
        d.focus = None
        d.maybe["a"] = None
    assert state.value.focus is None and state.value.maybe["a"] is None
    state.close()
