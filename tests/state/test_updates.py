"""statekeep.state updates: update(fn) on a draft (attributes, dicts, lists)
or returning a whole new value, a raising fn changing nothing; batch() as one
version (none when it raises, nested, set() inside it going into its draft);
undo / redo / at / versions and the history's bounds; bad input at every
public entry point as a typed statekeep error with nothing stored changed;
a closed state."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel

from statekeep.errors import (
    ConfigurationError,
    FrozenStateError,
    StateError,
    StatekeepError,
    StatePathError,
    StoreClosedError,
    ValidationError,
)
from statekeep.flow import FakeClock
from statekeep.state import AppState, Priority

from ._models import Cursor, Doc

CRITICAL, NORMAL, LOW = Priority.CRITICAL, Priority.NORMAL, Priority.LOW


class Editor(BaseModel):
    doc: Doc = Doc()
    meters: dict[str, float] = {}
    cursor: Cursor = Cursor()
    rooms: dict[str, Doc] = {}
    selection: Cursor | None = None
    docs: list[Doc] = []


class NeedsATitle(BaseModel):
    title: str


def editor() -> Editor:
    return Editor(
        doc=Doc(title="Draft", paragraphs=["one", "two", "three"]),
        meters={"left": -12.0, "right": -9.5},
        docs=[Doc(title="a"), Doc(title="b")],
    )


def immediate(**options: Any) -> AppState[Editor]:
    """A state that applies every update on its call (a zero frame)."""
    return AppState(editor(), frame=0, max_frame=0, **options)


@pytest.fixture
def state() -> Any:
    with immediate() as state:
        yield state


# -- update(fn) on a draft ----------------------------------------------------------------


def test_update_changes_attributes_of_a_draft_as_one_version(state: AppState[Editor]) -> None:
    def move(draft: Any) -> None:
        draft.cursor.line = 3
        draft.cursor.column = draft.cursor.line + 4
        draft.doc.title = draft.doc.title.upper()

    state.update(move)
    assert state.version == 1
    assert (state.value.cursor.line, state.value.cursor.column) == (3, 7)
    assert state.value.doc.title == "DRAFT"


def test_update_changes_a_dict_through_the_draft(state: AppState[Editor]) -> None:
    seen: dict[str, Any] = {}

    def change(draft: Any) -> None:
        meters = draft.meters
        meters["center"] = 0.5
        meters["left"] += 1.0
        del meters["right"]
        seen["popped"] = meters.pop("center")
        meters.update({"a": 1.0}, b=2.0)
        seen["default"] = meters.setdefault("c", 3.0)
        seen["get"] = (meters.get("a"), meters.get("zzz", "none"))
        seen["in"] = ("a" in meters, "right" in meters)
        seen["keys"] = sorted(meters)
        seen["items"] = dict(meters.items())
        seen["len"] = len(meters)

    state.update(change)
    assert dict(state.value.meters) == {"left": -11.0, "a": 1.0, "b": 2.0, "c": 3.0}
    assert seen == {
        "popped": 0.5,
        "default": 3.0,
        "get": (1.0, "none"),
        "in": (True, False),
        "keys": ["a", "b", "c", "left"],
        "items": {"left": -11.0, "a": 1.0, "b": 2.0, "c": 3.0},
        "len": 4,
    }
    assert state.version == 1


def test_update_changes_a_list_through_the_draft(state: AppState[Editor]) -> None:
    popped: list[Any] = []

    def change(draft: Any) -> None:
        paragraphs = draft.doc.paragraphs
        paragraphs.append("four")
        paragraphs.insert(0, "zero")
        popped.append(paragraphs.pop())
        popped.append(paragraphs.pop(1))
        del paragraphs[0]
        paragraphs.extend(["x", "y"])
        paragraphs[-1] = "Y"
        paragraphs.remove("x")

    state.update(change)
    assert state.value.doc.paragraphs == ("two", "three", "Y")
    assert popped == ["four", "one"]
    assert state.version == 1


def test_update_changes_models_inside_lists_and_dicts(state: AppState[Editor]) -> None:
    state.update(lambda d: d.rooms.__setitem__("main", Doc(title="m")))

    def change(draft: Any) -> None:
        draft.docs[1].title = "B"
        draft.docs[0].paragraphs.append("a1")
        draft.docs.append(Doc(title="c"))
        draft.docs[-1].paragraphs.append("c1")
        draft.rooms["main"].paragraphs.append("m1")

    state.update(change)
    assert [d.title for d in state.value.docs] == ["a", "B", "c"]
    assert state.value.docs[0].paragraphs == ("a1",)
    assert state.value.docs[2].paragraphs == ("c1",)
    assert state.value.rooms["main"].paragraphs == ("m1",)
    assert state.version == 2


def test_a_draft_validates_each_assignment(state: AppState[Editor]) -> None:
    before = state.value
    with pytest.raises(ValidationError):
        state.update(lambda d: setattr(d.cursor, "line", "down"))
    with pytest.raises(ValidationError):
        state.update(lambda d: d.doc.paragraphs.append(5))
    with pytest.raises(ValidationError):
        state.update(lambda d: d.meters.__setitem__("left", "loud"))
    with pytest.raises(StatePathError):
        state.update(lambda d: setattr(d.doc, "subtitle", "x"))
    with pytest.raises(FrozenStateError):
        state.update(lambda d: delattr(d.doc, "title"))
    assert state.value is before and state.version == 0


def test_an_update_that_changes_nothing_makes_no_version(state: AppState[Editor]) -> None:
    before = state.value
    state.update(lambda d: None)

    def only_reads(draft: Any) -> None:
        assert (draft.doc.title, draft.meters.get("left"), len(draft.docs)) == ("Draft", -12.0, 2)

    state.update(only_reads)
    assert state.value is before and state.version == 0


def test_fn_returning_a_whole_new_value_replaces_the_state(state: AppState[Editor]) -> None:
    state.update(lambda d: Editor(doc=Doc(title="new")))
    assert state.model() == Editor(doc=Doc(title="new"))
    state.update(lambda d: {"cursor": {"line": 9}})
    assert state.model() == Editor(cursor=Cursor(line=9))
    assert state.version == 2
    before = state.value
    with pytest.raises(ValidationError):
        state.update(lambda d: {"cursor": {"line": "nine"}})
    assert state.value is before and state.version == 2


@pytest.mark.parametrize("priority", [NORMAL, CRITICAL])
def test_a_raising_fn_changes_nothing_and_raises_to_its_caller(
    state: AppState[Editor], priority: Priority
) -> None:
    before = state.value

    def half_done(draft: Any) -> None:
        draft.doc.title = "half"
        draft.meters["new"] = 1.0
        raise RuntimeError("gave up")

    with pytest.raises(RuntimeError, match="gave up"):
        state.update(half_done, priority=priority)
    assert state.value is before and state.version == 0
    assert state.stats().counters.updates_failed == 1
    state.set("cursor.line", 1)  # the state goes on
    assert state.value.doc.title == "Draft" and "new" not in state.value.meters


def test_a_draft_kept_after_its_update_refuses_changes(state: AppState[Editor]) -> None:
    kept: list[Any] = []
    state.update(lambda d: kept.append(d))
    state.flush()
    before = state.value
    with pytest.raises(StateError, match="has ended"):
        kept[0].doc.title = "too late"  # would be lost: refused
    with pytest.raises(StateError, match="has ended"):
        kept[0].doc.paragraphs.append("too late")
    assert state.value is before and state.value.doc.title == "Draft"


def test_a_sub_model_assigned_in_a_draft_can_then_be_changed(state: AppState[Editor]) -> None:
    def change(draft: Any) -> None:
        draft.doc = Doc(title="new")
        draft.doc.paragraphs.append("first")  # as on a normal object
        draft.doc.title = "newer"

    state.update(change)
    assert state.value.doc.title == "newer" and state.value.doc.paragraphs == ("first",)


def test_a_list_assigned_in_a_draft_can_then_be_appended_to(state: AppState[Editor]) -> None:
    def change(draft: Any) -> None:
        draft.doc.paragraphs = ["a"]
        draft.doc.paragraphs.append("b")

    state.update(change)
    assert state.value.doc.paragraphs == ("a", "b")


def test_a_model_put_in_a_dict_in_a_draft_keeps_later_changes(state: AppState[Editor]) -> None:
    def change(draft: Any) -> None:
        draft.rooms["main"] = Doc()
        draft.rooms["main"].title = "kept"

    state.update(change)
    assert state.value.rooms["main"].title == "kept"


# -- batch() ------------------------------------------------------------------------------


def test_a_batch_is_one_version_whatever_the_number_of_changes(state: AppState[Editor]) -> None:
    with state.batch() as draft:
        draft.doc.title = "Final"
        draft.meters["left"] = -3.0
        draft.doc.paragraphs.append("four")
        for line in range(50):
            draft.cursor.line = line
        assert state.version == 0 and state.value.doc.title == "Draft"
        assert draft.doc.title == "Final"  # the draft reads its own changes
    assert state.version == 1
    assert state.value.doc.title == "Final" and state.value.cursor.line == 49
    assert state.value.doc.paragraphs[-1] == "four" and state.value.meters["left"] == -3.0


def test_a_batch_that_raises_makes_no_version(state: AppState[Editor]) -> None:
    before = state.value
    with pytest.raises(KeyError), state.batch() as draft:
        draft.doc.title = "lost"
        state.set("cursor.line", 5)
        raise KeyError("inside the block")
    assert state.value is before and state.version == 0
    state.set("cursor.column", 1)
    assert state.value.doc.title == "Draft" and state.value.cursor.line == 0


def test_an_empty_batch_makes_no_version(state: AppState[Editor]) -> None:
    with state.batch() as draft:
        assert draft.doc.title == "Draft"
    assert state.version == 0


def test_a_nested_batch_shares_the_outer_draft_and_version(state: AppState[Editor]) -> None:
    with state.batch() as outer:
        outer.doc.title = "outer"
        with state.batch() as inner:
            assert inner is outer
            inner.cursor.line = 4
        assert state.version == 0
        outer.meters["x"] = 1.0
    assert state.version == 1
    assert (state.value.doc.title, state.value.cursor.line) == ("outer", 4)
    assert state.value.meters["x"] == 1.0


def test_an_error_in_a_nested_batch_leaves_the_whole_batch_out(state: AppState[Editor]) -> None:
    with pytest.raises(ValueError), state.batch() as outer:
        outer.doc.title = "outer"
        with state.batch() as inner:
            inner.cursor.line = 4
            raise ValueError("inner")
    assert state.version == 0 and state.value.doc.title == "Draft"


def test_set_update_and_delete_inside_a_batch_go_into_its_draft(
    state: AppState[Editor],
) -> None:
    with state.batch() as draft:
        state.set("doc.title", "set inside", priority=CRITICAL)
        state.set(("meters", "a.b"), 2.0)
        state.delete("meters.left", priority=LOW)
        state.update(lambda d: d.doc.paragraphs.append("four"))
        assert draft.doc.title == "set inside" and "left" not in draft.meters
        assert state.version == 0 and state.value.doc.title == "Draft"
        assert state.stats().pending == 0
    assert state.version == 1 and state.stats().pending == 0
    assert state.value.doc.title == "set inside"
    assert dict(state.value.meters) == {"right": -9.5, "a.b": 2.0}
    assert state.value.doc.paragraphs == ("one", "two", "three", "four")


def test_replacing_the_whole_state_inside_a_batch_is_a_state_error(
    state: AppState[Editor],
) -> None:
    with pytest.raises(StateError), state.batch():
        state.update(lambda d: Editor())
    with pytest.raises(StateError), state.batch():
        state.set("", Editor())
    assert state.version == 0


def test_a_raising_update_inside_a_batch_leaves_the_draft_as_it_was(
    state: AppState[Editor],
) -> None:
    def half_done(draft: Any) -> None:
        draft.doc.title = "half"
        raise RuntimeError("gave up")

    with state.batch() as draft:
        with pytest.raises(RuntimeError):
            state.update(half_done)
        draft.cursor.line = 3
    assert state.value.cursor.line == 3
    assert state.value.doc.title == "Draft"  # the failed update changed nothing


@pytest.mark.parametrize(
    ("path", "value"),
    [("selection.line", 1), ("docs.5.title", "x"), ("doc.paragraphs.9", "x")],
)
def test_setting_a_missing_part_inside_a_batch_is_a_state_path_error(
    state: AppState[Editor], path: str, value: Any
) -> None:
    with pytest.raises(StatePathError), state.batch():
        state.set(path, value)
    assert state.version == 0


def test_deleting_a_missing_key_inside_a_batch_is_a_state_path_error(
    state: AppState[Editor],
) -> None:
    with pytest.raises(StatePathError), state.batch():
        state.delete("meters.nope")
    assert state.version == 0


def test_a_bad_priority_inside_a_batch_is_a_configuration_error(state: AppState[Editor]) -> None:
    with pytest.raises(ConfigurationError), state.batch():
        state.set("doc.title", "x", priority="urgent")  # type: ignore[arg-type]
    assert state.version == 0 and state.value.doc.title == "Draft"


def test_a_batch_keeps_normal_updates_that_were_waiting() -> None:
    clock = FakeClock(auto=False)
    with AppState(editor(), clock=clock) as state:
        state.set("doc.title", "first")  # at once: no version for a frame yet
        state.set("cursor.line", 5)  # within the frame: waits for its end
        assert state.stats().pending == 1
        with state.batch() as draft:
            draft.meters["x"] = 1.0
        assert state.stats().pending == 0
        assert state.value.meters["x"] == 1.0
        assert state.value.cursor.line == 5  # the update that waited was applied, not lost


def test_other_threads_wait_for_a_batch(state: AppState[Editor]) -> None:
    entered, done = threading.Event(), threading.Event()

    def other() -> None:
        entered.set()
        state.set("cursor.line", 7, priority=CRITICAL)
        done.set()

    with state.batch() as draft:
        thread = threading.Thread(target=other)
        thread.start()
        assert entered.wait(5)
        time.sleep(0.05)
        assert not done.is_set()  # waiting for the block
        draft.doc.title = "batch"
    thread.join(5)
    assert done.is_set()
    assert state.version == 2
    assert state.at(1).doc.title == "batch" and state.at(1).cursor.line == 0
    assert state.value.cursor.line == 7


# -- undo, redo, at, versions ---------------------------------------------------------------


def test_undo_and_redo_move_through_versions_as_new_versions(state: AppState[Editor]) -> None:
    assert not state.can_undo and not state.can_redo
    assert state.undo() is False and state.redo() is False and state.version == 0
    state.set("doc.title", "one")
    state.set("doc.title", "two")
    assert state.can_undo and not state.can_redo
    assert state.undo() is True
    assert state.value.doc.title == "one" and state.version == 3
    assert state.value is state.at(1)
    assert state.can_redo
    assert state.undo() is True
    assert state.value.doc.title == "Draft" and state.value is state.at(0)
    assert not state.can_undo
    assert state.redo() is True and state.value.doc.title == "one"
    assert state.redo() is True and state.value.doc.title == "two"
    assert state.redo() is False
    assert state.versions() == [0, 1, 2, 3, 4, 5, 6]


def test_a_change_after_undo_drops_redo(state: AppState[Editor]) -> None:
    state.set("doc.title", "one")
    state.undo()
    state.set("cursor.line", 3)
    assert not state.can_redo and state.redo() is False
    assert state.value.doc.title == "Draft" and state.value.cursor.line == 3


def test_undo_takes_back_a_whole_batch(state: AppState[Editor]) -> None:
    before = state.value
    with state.batch() as draft:
        draft.doc.title = "batch"
        del draft.meters["left"]
        draft.docs.pop()
    assert state.undo()
    assert state.value == before


def test_at_gives_each_kept_version(state: AppState[Editor]) -> None:
    titles = [state.value.doc.title]
    for n in range(5):
        state.set("doc.title", f"t{n}")
        titles.append(state.value.doc.title)
    assert [state.at(v).doc.title for v in state.versions()] == titles
    with pytest.raises(StateError):
        state.at(6)
    with pytest.raises(StateError):
        state.at(-1)


def test_history_keeps_the_last_n_versions_and_undo_goes_back_as_far() -> None:
    with immediate(history=3) as state:
        for line in range(1, 8):
            state.set("cursor.line", line)
        assert state.versions() == [5, 6, 7]
        assert state.stats().versions_kept == 3
        with pytest.raises(StateError):
            state.at(4)
        undone = 0
        while state.undo():
            undone += 1
        assert undone == 2 and state.value.cursor.line == 5


def test_history_bytes_bounds_the_versions_kept() -> None:
    with immediate(history_bytes=4000) as state:
        for n in range(60):
            state.set(("meters", f"k{n}"), float(n))
        kept = state.versions()
        assert kept[-1] == 60 and 1 < len(kept) < 61
        assert state.stats().history_bytes <= 4000
        with pytest.raises(StateError):
            state.at(kept[0] - 1)


def test_undo_never_goes_past_the_oldest_version_kept_by_history_bytes() -> None:
    with immediate(history_bytes=4000) as state:
        for n in range(60):
            state.set(("meters", f"k{n}"), float(n))
        kept = state.versions()
        oldest = state.at(kept[0])
        undone = 0
        while state.undo():
            undone += 1
        assert undone <= len(kept) - 1
        assert state.value == oldest


def test_trim_keeps_only_the_newest_versions(state: AppState[Editor]) -> None:
    for line in range(1, 6):
        state.set("cursor.line", line)
    state.trim(2)
    assert state.versions() == [4, 5]
    assert state.undo() and not state.undo()
    assert state.value.cursor.line == 4


def test_flush_returns_the_version(state: AppState[Editor]) -> None:
    assert state.flush() == 0
    state.set("cursor.line", 1)
    assert state.flush() == 1


# -- bad input --------------------------------------------------------------------------------


async def _a_coroutine_callback(old: Any, new: Any) -> None:
    pass


BAD_CALLS: dict[str, tuple[Any, type[StatekeepError]]] = {
    "set: a path that is a number": (lambda s: s.set(42, 1), StatePathError),
    "set: a path that is a list": (lambda s: s.set(["doc", "title"], "x"), StatePathError),
    "set: a priority that is a string": (
        lambda s: s.set("doc.title", "x", priority="high"),
        ConfigurationError,
    ),
    "set: a priority out of range": (
        lambda s: s.set("doc.title", "x", priority=7),
        ConfigurationError,
    ),
    "set: no priority": (lambda s: s.set("doc.title", "x", priority=None), ConfigurationError),
    "set: a negative deadline": (
        lambda s: s.set("doc.title", "x", deadline=-1),
        ConfigurationError,
    ),
    "set: a CRITICAL with a negative deadline": (
        lambda s: s.set("doc.title", "x", priority=CRITICAL, deadline=-0.5),
        ConfigurationError,
    ),
    "set: a NaN deadline": (
        lambda s: s.set("doc.title", "x", deadline=math.nan),
        ConfigurationError,
    ),
    "set: a deadline that is a string": (
        lambda s: s.set("doc.title", "x", deadline="soon"),
        ConfigurationError,
    ),
    "set: a deadline that is a bool": (
        lambda s: s.set("doc.title", "x", deadline=True),
        ConfigurationError,
    ),
    "set: a value of the wrong type": (lambda s: s.set("cursor.line", "x"), ValidationError),
    "get: an unknown field": (lambda s: s.get("doc.subtitle"), StatePathError),
    "update: not a function": (lambda s: s.update("title"), ConfigurationError),
    "update: a bad priority": (
        lambda s: s.update(lambda d: None, priority="x"),
        ConfigurationError,
    ),
    "update: a bad deadline": (
        lambda s: s.update(lambda d: None, deadline=-3),
        ConfigurationError,
    ),
    "delete: the state itself": (lambda s: s.delete(""), StatePathError),
    "delete: a field": (lambda s: s.delete("doc.title"), StatePathError),
    "delete: a bad priority": (
        lambda s: s.delete("meters.left", priority="x"),
        ConfigurationError,
    ),
    "subscribe: a number": (lambda s: s.subscribe(42, print), ConfigurationError),
    "subscribe: an unknown field": (lambda s: s.subscribe("doc.nope", print), StatePathError),
    "subscribe: a callback that is not callable": (
        lambda s: s.subscribe("doc.title", "print"),
        ConfigurationError,
    ),
    "subscribe: a coroutine callback outside a loop": (
        lambda s: s.subscribe("doc.title", _a_coroutine_callback),
        ConfigurationError,
    ),
    "at: a version not kept": (lambda s: s.at(99), StateError),
    "at: a version that is a string": (lambda s: s.at("1"), StatekeepError),
    "trim: a count that is a string": (lambda s: s.trim("all"), ConfigurationError),
    "unsubscribe: not a subscription": (lambda s: s.unsubscribe("sub"), ConfigurationError),
    "durable_version: not kept in a store": (lambda s: s.durable_version, StateError),
    "wait_durable: not kept in a store": (lambda s: s.wait_durable(0.1), StateError),
}


@pytest.mark.parametrize(("call", "error"), list(BAD_CALLS.values()), ids=list(BAD_CALLS))
def test_bad_input_is_a_typed_error_and_changes_nothing(
    state: AppState[Editor], call: Any, error: type[StatekeepError]
) -> None:
    state.set("cursor.line", 1)
    before, version, kept = state.value, state.version, state.versions()
    subscriptions = state.stats().subscriptions
    with pytest.raises(error):
        call(state)
    assert state.value is before and state.version == version
    assert state.versions() == kept and state.can_undo
    assert state.stats().pending == 0 and state.stats().subscriptions == subscriptions


BAD_OPTIONS: dict[str, tuple[Any, dict[str, Any]]] = {
    "a number instead of a model": (42, {}),
    "a model's name": ("Editor", {}),
    "a model with required fields, uninstantiated": (NeedsATitle, {}),
    "an unknown option": (Editor, {"frames": 0.1}),
    "an empty name": (Editor, {"name": ""}),
    "a name that is not a string": (Editor, {"name": 5}),
    "a name too long": (Editor, {"name": "n" * 201}),
    "history 0": (Editor, {"history": 0}),
    "history a bool": (Editor, {"history": True}),
    "history a float": (Editor, {"history": 1.5}),
    "history_bytes negative": (Editor, {"history_bytes": -1}),
    "history_bytes a string": (Editor, {"history_bytes": "1 MB"}),
    "frame negative": (Editor, {"frame": -0.016}),
    "frame NaN": (Editor, {"frame": math.nan}),
    "frame a bool": (Editor, {"frame": True}),
    "idle negative": (Editor, {"idle": -1}),
    "low_max_age infinite": (Editor, {"low_max_age": math.inf}),
    "max_frame below frame": (Editor, {"frame": 0.05, "max_frame": 0.01}),
    "clock a string": (Editor, {"clock": "monotonic"}),
    "clock zero": (Editor, {"clock": 0}),
}


@pytest.mark.parametrize(("initial", "options"), list(BAD_OPTIONS.values()), ids=list(BAD_OPTIONS))
def test_bad_options_are_a_configuration_error(initial: Any, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        AppState(initial, **options)


def test_good_options_are_kept() -> None:
    clock = FakeClock(auto=False)
    state = AppState(
        Editor,
        name="editor",
        history=5,
        history_bytes=10_000,
        frame=0.02,
        max_frame=0.2,
        idle=0.3,
        low_max_age=2,
        clock=clock,
    )
    with state:
        options = state.options
        assert (options.name, options.history, options.history_bytes) == ("editor", 5, 10_000)
        assert (options.frame, options.max_frame, options.idle, options.low_max_age) == (
            0.02,
            0.2,
            0.3,
            2,
        )
        assert options.clock is clock
        assert "editor" in repr(state) and state.stats().name == "editor"


def test_a_coroutine_callback_subscribed_inside_a_loop_is_accepted(
    state: AppState[Editor],
) -> None:
    async def subscribe() -> bool:
        return state.subscribe("doc.title", _a_coroutine_callback).cancel()

    assert asyncio.run(subscribe()) is True


# -- closing ------------------------------------------------------------------------------


CLOSED_CALLS: dict[str, Any] = {
    "set": lambda s: s.set("doc.title", "x"),
    "set CRITICAL": lambda s: s.set("doc.title", "x", priority=CRITICAL),
    "delete": lambda s: s.delete("meters.left"),
    "update": lambda s: s.update(lambda d: None),
    "subscribe": lambda s: s.subscribe("doc.title", print),
    "undo": lambda s: s.undo(),
    "redo": lambda s: s.redo(),
    "batch": lambda s: s.batch().__enter__(),
}


@pytest.mark.parametrize("call", list(CLOSED_CALLS.values()), ids=list(CLOSED_CALLS))
def test_a_closed_state_refuses_changes_and_still_reads(call: Any) -> None:
    state = immediate()
    state.set("doc.title", "one")
    state.close()
    assert state.closed
    with pytest.raises(StoreClosedError):
        call(state)
    assert state.value.doc.title == "one" and state.get("doc.title") == "one"
    assert state.version == 1 and state.at(0).doc.title == "Draft"
    state.close()  # again: nothing to do
