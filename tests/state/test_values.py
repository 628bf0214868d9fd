"""statekeep.state snapshots and paths: a snapshot is frozen (Nodes, Maps,
tuples), never changes after later versions, compares and hashes by value,
pickles, and gives back the model; paths in str and tuple form reach fields,
dict keys (converted to the key type) and list items, a bad path is a
StatePathError and a bad value a ValidationError, with nothing changed."""

from __future__ import annotations

import operator
import pickle
from typing import Annotated, Any

import immutables
import pytest
from pydantic import BaseModel, ConfigDict, Field

import statekeep.errors
from statekeep.errors import FrozenStateError, StatePathError, ValidationError
from statekeep.state import AppState, Node

from ._models import Cursor, Doc, thaw


class Editor(BaseModel):
    doc: Doc = Doc()
    meters: dict[str, float] = {}
    cursor: Cursor = Cursor()
    counts: dict[int, int] = {}
    level: Annotated[int, Field(ge=0, le=10)] = 0
    name: Annotated[str, Field(max_length=5)] = ""
    selection: Cursor | None = None
    docs: list[Doc] = []
    tags: Annotated[list[str], Field(max_length=2)] = []


class Point(BaseModel):  # the same fields as Cursor: its snapshots are still not Cursor's
    line: int = 0
    column: int = 0


def editor() -> Editor:
    return Editor(
        doc=Doc(title="Draft", paragraphs=["one", "two", "three"]),
        meters={"left": -12.0, "right": -9.5},
        cursor=Cursor(line=2, column=4),
        counts={1: 10, 2: 20},
        docs=[Doc(title="a"), Doc(title="b", paragraphs=["b1"])],
    )


def immediate(initial: Any = None, **options: Any) -> AppState[Editor]:
    """A state that applies every update on its call (a zero frame), so an
    update's error reaches its caller."""
    return AppState(editor() if initial is None else initial, frame=0, max_frame=0, **options)


# -- snapshots ----------------------------------------------------------------------------


def test_a_snapshot_reads_like_the_model_with_maps_and_tuples() -> None:
    value = immediate().value
    assert value.doc.title == "Draft"
    assert value.doc.paragraphs == ("one", "two", "three")
    assert type(value.meters) is immutables.Map
    assert value.meters["left"] == -12.0
    assert value.counts[2] == 20
    assert value.docs[1].paragraphs == ("b1",)
    assert value.selection is None
    assert isinstance(value.cursor, Node) and isinstance(value, Node)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda v: setattr(v, "cursor", None), id="field"),
        pytest.param(lambda v: setattr(v.cursor, "line", 3), id="nested field"),
        pytest.param(lambda v: setattr(v, "extra", 1), id="new attribute"),
        pytest.param(lambda v: delattr(v.doc, "title"), id="delete field"),
        pytest.param(lambda v: setattr(v.docs[0], "title", "x"), id="model in a list"),
    ],
)
def test_setting_a_snapshot_attribute_is_a_frozen_state_error(change: Any) -> None:
    state = immediate()
    value = state.value
    before = thaw(value)
    with pytest.raises(FrozenStateError):
        change(value)
    assert thaw(state.value) == before and state.version == 0


def test_a_snapshots_dicts_and_lists_cannot_be_changed_in_place() -> None:
    value = immediate().value
    with pytest.raises(TypeError):
        value.meters["left"] = 0.0
    with pytest.raises(TypeError):
        del value.meters["left"]
    with pytest.raises(TypeError):
        value.doc.paragraphs[0] = "x"
    with pytest.raises(AttributeError):
        value.doc.paragraphs.append("x")
    assert value.meters.set("left", 0.0)["left"] == 0.0  # a new Map ...
    assert value.meters["left"] == -12.0  # ... the snapshot's is as it was


def test_an_old_snapshot_never_changes_after_later_versions() -> None:
    state = immediate()
    first = state.value
    first_plain = thaw(first)
    state.set("doc.title", "Second")
    second = state.value
    second_plain = thaw(second)
    state.set("meters.left", 0.0)
    state.delete("meters.right")
    state.update(lambda d: d.doc.paragraphs.append("four"))
    state.update(lambda d: d.docs[0].paragraphs.extend(["x", "y"]))
    with state.batch() as draft:
        draft.cursor.line = 99
        draft.counts[3] = 30
        del draft.counts[1]
    state.set("selection", {"line": 1})
    state.undo()
    state.set("docs", [])
    assert thaw(first) == first_plain
    assert thaw(second) == second_plain
    assert thaw(state.at(0)) == first_plain and state.at(0) is first
    assert thaw(state.value) != first_plain


def test_a_new_version_shares_every_part_it_did_not_change() -> None:
    state = immediate()
    old = state.value
    state.set("meters.left", 1.0)
    new = state.value
    assert new is not old and new.meters is not old.meters
    assert new.doc is old.doc and new.cursor is old.cursor and new.docs is old.docs
    assert new.counts is old.counts
    state.set("docs.1.title", "B")
    newer = state.value
    assert newer.docs[0] is new.docs[0] and newer.docs[1] is not new.docs[1]
    assert newer.docs[1].paragraphs is new.docs[1].paragraphs


def test_equal_snapshots_are_equal_and_hash_alike() -> None:
    one, two = immediate(), immediate()
    assert one.value == two.value and one.value is not two.value
    assert hash(one.value) == hash(two.value)
    one.set("cursor.line", 7)
    assert one.value != two.value
    one.set("cursor.line", 2)
    assert one.value == two.value and hash(one.value) == hash(two.value)
    assert len({one.value, two.value}) == 1


def test_snapshots_of_different_models_or_plain_tuples_are_not_equal() -> None:
    cursor = immediate().value.cursor
    point = AppState(Point(line=2, column=4)).value
    assert tuple(cursor) == tuple(point)
    assert cursor != point and point != cursor
    assert cursor != (2, 4) and operator.ne((2, 4), cursor)  # both ways round
    assert cursor != Point(line=2, column=4) and cursor != Cursor(line=3, column=4)


def test_a_snapshot_equals_a_model_of_its_value_and_a_frozen_one_hashes_alike() -> None:
    cursor = immediate().value.cursor
    assert cursor == Cursor(line=2, column=4) and Cursor(line=2, column=4) == cursor
    assert operator.ne(cursor, Cursor(line=2, column=4)) is False

    class Key(BaseModel):
        model_config = ConfigDict(frozen=True)
        name: str
        tags: tuple[str, ...] = ()

    class Empty(BaseModel):
        model_config = ConfigDict(frozen=True)

    class One(BaseModel):
        model_config = ConfigDict(frozen=True)
        name: str

    for model in (Key(name="a", tags=("x",)), Empty(), One(name="b")):
        node = AppState(model).value
        assert node == model and hash(node) == hash(model)


def test_a_snapshot_pickles_to_an_equal_frozen_snapshot() -> None:
    state = immediate()
    state.set("selection", Cursor(line=5))
    value = state.value
    copy = pickle.loads(pickle.dumps(value))
    assert copy == value and copy is not value
    assert type(copy) is type(value) and type(copy.doc) is type(value.doc)
    assert copy.selection.line == 5 and copy.counts[1] == 10
    assert type(copy.meters) is immutables.Map
    assert hash(copy) == hash(value)
    with pytest.raises(FrozenStateError):
        copy.doc.title = "changed"
    assert AppState(copy).model() == state.model()


def test_model_gives_back_an_equal_new_instance() -> None:
    start = editor()
    state = immediate(start)
    model = state.model()
    assert model == start and model is not start
    assert isinstance(model, Editor)
    model.doc.title = "changed on the model"
    model.meters["left"] = 100.0
    assert state.get("doc.title") == "Draft" and state.get("meters.left") == -12.0
    assert state.model() == start


def test_a_state_starts_from_a_model_class_an_instance_or_a_snapshot() -> None:
    assert AppState(Editor).model() == Editor()
    state = immediate()
    state.set("doc.title", "From a snapshot")
    again = AppState(state.value)
    assert again.value is state.value and again.version == 0
    assert again.model_class is Editor and again.model() == state.model()


def test_a_value_given_to_the_state_is_copied_frozen() -> None:
    start = editor()
    state = immediate(start)
    start.meters["left"] = 55.0
    start.doc.paragraphs.append("later")
    assert state.get("meters.left") == -12.0
    assert state.get("doc.paragraphs") == ("one", "two", "three")
    meters = {"a": 1.0}
    paragraphs = ["p"]
    state.set("meters", meters)
    state.set("doc.paragraphs", paragraphs)
    meters["b"] = 2.0
    paragraphs.append("q")
    assert dict(state.get("meters")) == {"a": 1.0}
    assert state.get("doc.paragraphs") == ("p",)
    assert type(state.get("meters")) is immutables.Map


def test_memory_report_measures_what_versions_share() -> None:
    state = immediate(Editor(meters={f"k{i}": float(i) for i in range(2000)}))
    for i in range(20):
        state.set(("meters", f"k{i}"), -1.0)
    report = state.memory()
    assert report.versions == 21
    assert report.sharing > 0.9
    assert report.total_bytes < report.copies_bytes / 5


# -- paths --------------------------------------------------------------------------------


def test_string_and_tuple_paths_name_the_same_place() -> None:
    state = immediate()
    state.set("doc.title", "by string")
    assert state.get(("doc", "title")) == "by string"
    state.set(("doc", "title"), "by tuple")
    assert state.get("doc.title") == "by tuple" == state.value.doc.title
    assert state.get("") is state.value and state.get(()) is state.value


def test_a_tuple_path_reaches_a_key_holding_a_dot() -> None:
    state = immediate()
    state.set(("meters", "bus.1"), 3.0)
    assert state.value.meters["bus.1"] == 3.0
    assert state.get(("meters", "bus.1")) == 3.0
    with pytest.raises(StatePathError):
        state.get("meters.bus.1")  # as a string it is three parts


def test_an_int_keyed_dict_takes_keys_from_string_paths() -> None:
    state = immediate()
    state.set("counts.3", 30)
    assert state.value.counts[3] == 30 and "3" not in state.value.counts
    assert state.get("counts.3") == state.get(("counts", 3)) == 30
    state.set(("counts", 3), 31)
    assert dict(state.value.counts) == {1: 10, 2: 20, 3: 31}
    state.delete("counts.1")
    assert dict(state.value.counts) == {2: 20, 3: 31}


def test_list_items_by_index_in_both_forms() -> None:
    state = immediate()
    state.set("doc.paragraphs.1", "TWO")
    state.set(("doc", "paragraphs", 2), "THREE")
    assert state.value.doc.paragraphs == ("one", "TWO", "THREE")
    state.set("docs.1.title", "B")
    state.set(("docs", 0, "paragraphs"), ["a1", "a2"])
    assert state.get("docs.1.title") == "B"
    assert state.get(("docs", 0, "paragraphs", 1)) == "a2"
    assert state.get("doc.paragraphs.-1") == "THREE"
    state.delete("doc.paragraphs.0")
    assert state.value.doc.paragraphs == ("TWO", "THREE")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("nope", 1),
        ("doc.nope", 1),
        ("doc..title", "x"),
        ("meters.left.deeper", 1.0),
        ("level.x", 1),
        ("counts.x", 1),
        (("meters", 5), 1.0),
        ("doc.paragraphs.x", "x"),
        ("doc.paragraphs.7", "x"),
        ("docs.5.title", "x"),
        ("docs.0.nope", "x"),
        ("selection.line", 1),
        (42, 1),
    ],
)
def test_a_bad_path_is_a_state_path_error_and_changes_nothing(path: Any, value: Any) -> None:
    state = immediate()
    before, version = state.value, state.version
    with pytest.raises(StatePathError):
        state.set(path, value)
    with pytest.raises(StatePathError):
        state.get(path)
    assert state.value is before and state.version == version
    assert state.stats().pending == 0


@pytest.mark.parametrize(
    "path", ["meters.nope", "counts.9", "doc.paragraphs.9", "docs.-5", "doc.title", "doc", ""]
)
def test_deleting_what_is_not_there_or_not_removable_is_a_state_path_error(path: str) -> None:
    state = immediate()
    before = state.value
    with pytest.raises(StatePathError):
        state.delete(path)
    assert state.value is before and state.version == 0


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("cursor.line", "twelve"),
        ("cursor.line", 1.5),
        ("doc.title", 5),
        ("doc.title", None),
        ("meters.left", "loud"),
        ("doc.paragraphs.0", None),
        ("doc.paragraphs", "not a list"),
        ("doc", {"title": 5}),
        ("selection", {"line": "x"}),
        ("counts.1", "ten"),
        ("docs.0", {"paragraphs": [1, None]}),
        ("meters", {"a": "b"}),
    ],
)
def test_a_wrong_value_is_a_validation_error_and_changes_nothing(path: str, value: Any) -> None:
    state = immediate()
    before = state.value
    with pytest.raises(ValidationError) as caught:
        state.set(path, value)
    assert isinstance(caught.value, statekeep.errors.StatekeepError)
    assert state.value is before and state.version == 0
    assert state.stats().counters.versions == 0


@pytest.mark.parametrize(
    ("path", "value"),
    [("level", -1), ("level", 11), ("name", "toolong"), ("tags", ["a", "b", "c"])],
)
def test_field_constraints_are_checked_at_their_path(path: str, value: Any) -> None:
    state = immediate()
    before = state.value
    with pytest.raises(ValidationError):
        state.set(path, value)
    with pytest.raises(ValidationError):
        state.update(lambda d: setattr(d, path, value))
    assert state.value is before and state.version == 0


def test_values_within_the_constraints_are_set() -> None:
    state = immediate()
    state.set("level", 10)
    state.set("name", "short")
    state.set("tags", ["a", "b"])
    assert (state.value.level, state.value.name, state.value.tags) == (10, "short", ("a", "b"))


def test_values_are_converted_as_pydantic_converts_them() -> None:
    state = immediate()
    state.set("cursor.line", "7")
    state.set("meters.left", 1)
    state.set("doc", {"title": "from a dict"})
    assert state.value.cursor.line == 7
    assert state.value.meters["left"] == 1.0 and type(state.value.meters["left"]) is float
    assert state.value.doc.title == "from a dict" and state.value.doc.paragraphs == ()


def test_an_optional_sub_model_is_set_whole_then_in_parts() -> None:
    state = immediate()
    with pytest.raises(StatePathError):
        state.set("selection.line", 3)
    with pytest.raises(StatePathError):
        state.get("selection.line")
    assert state.version == 0
    state.set("selection", Cursor(line=1))
    state.set("selection.column", 8)
    assert state.value.selection == AppState(Cursor(line=1, column=8)).value
    assert state.get("selection.column") == 8
    state.set("selection", None)
    assert state.value.selection is None
    with pytest.raises(StatePathError):
        state.set("selection.line", 3)
    assert state.value.selection is None and state.version == 3
