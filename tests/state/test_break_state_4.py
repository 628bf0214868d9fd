"""Hostile-user probes of statekeep.state, fourth round: pydantic model
features (model config, extra fields, RootModel), subscriptions (negative
indices, cancel() while a version is announced, async selectors), threads
first using a nested model, delete() into None, store.state() names, values
set back where they were read, history bounds and LOW deadlines.

Each test asserts what a demanding user expects (docs/state.md), so it fails
where the bug is: a bad input raises a typed error (statekeep.errors) and
leaves the state as it was; a value the state accepts is one its model
accepts; a subscription is called when, and only when, what it selects
changed.
"""

from __future__ import annotations

import gc
import inspect
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pydantic
import pytest
from pydantic import BaseModel, ConfigDict, RootModel, create_model

import statekeep
from statekeep.errors import (
    ConfigurationError,
    StatekeepError,
    StatePathError,
    ValidationError,
)
from statekeep.flow import FakeClock
from statekeep.state import AppState, Priority

CRITICAL, NORMAL, LOW = Priority.CRITICAL, Priority.NORMAL, Priority.LOW


def _url(tmp_path: Path, name: str = "state.db") -> str:
    return f"sqlite:///{tmp_path / name}"


# -- 1. the model's config is part of its fields' types --------------------------------------------
class NoNaN(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)
    level: float = 0.0


class Short(BaseModel):
    model_config = ConfigDict(str_max_length=5)
    take: str = ""


class Lowered(BaseModel):
    model_config = ConfigDict(str_to_lower=True)
    tag: str = ""


class StrictCount(BaseModel):
    model_config = ConfigDict(strict=True)
    n: int = 0


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        pytest.param(NoNaN, "level", float("nan"), id="allow_inf_nan=False-nan"),
        pytest.param(NoNaN, "level", float("inf"), id="allow_inf_nan=False-inf"),
        pytest.param(Short, "take", "x" * 21, id="str_max_length"),
        pytest.param(Lowered, "tag", "LOUD", id="str_to_lower"),
        pytest.param(StrictCount, "n", "5", id="strict"),
    ],
)
def test_set_validates_with_the_models_config(
    model: type[BaseModel], field: str, value: Any
) -> None:
    """Docs: each change is validated at its path by the field's type and its
    constraints. A model's ConfigDict (allow_inf_nan=False, str_max_length,
    str_to_lower, strict) constrains its fields, but set() validates with a
    TypeAdapter of the bare annotation, which knows nothing of the model's
    config: the state takes NaN, a 21-character take, "LOUD" kept upper case,
    "5" for a strict int; then state.model() raises pydantic_core's raw
    ValidationError, and the state can never be turned back into its model.
    Expected: what the model itself does (refuse, or the value it makes).
    (_shape.ModelShape.fields / Shape.adapter: the config is dropped.)"""
    state: AppState[Any] = AppState(model)
    before, version = state.value, state.version
    try:
        expected = getattr(model.model_validate({field: value}), field)
    except pydantic.ValidationError:
        with pytest.raises(ValidationError):
            state.set(field, value, priority=CRITICAL)
        assert state.value == before and state.version == version
        return
    state.set(field, value, priority=CRITICAL)
    assert state.get(field) == expected
    assert getattr(state.model(), field) == expected


class Allowing(BaseModel):
    model_config = ConfigDict(extra="allow")
    a: int = 0


class HoldsAllowing(BaseModel):
    part: Allowing = Allowing()


def test_extra_allow_fields_are_kept_or_refused() -> None:
    """A model with extra="allow" keeps the fields it was given that it does
    not declare. AppState(Allowing(a=1, b=5)) and set("part", {"a": 1, "b": 2})
    take them without a word and drop them: state.model() has no b. Expected:
    kept (the model's own behaviour), or refused with a typed error.
    (_shape.ModelShape.adopt keeps only model_fields.)"""
    try:
        state: AppState[Any] = AppState(Allowing(a=1, b=5))
    except StatekeepError:
        pass
    else:
        assert state.model().model_extra == {"b": 5}
    holder = AppState(HoldsAllowing)
    try:
        holder.set("part", {"a": 1, "b": 2}, priority=CRITICAL)
    except StatekeepError:
        assert holder.value == AppState(HoldsAllowing).value
        return
    assert holder.model().part.model_extra == {"b": 2}


class Readings(RootModel[list[int]]):
    pass


def test_root_model_state_gives_its_model_back() -> None:
    """AppState(Readings([1, 2])) (a RootModel) works: get("root.0") is 1.
    But state.model() raises pydantic_core's raw ValidationError ("Input
    should be a valid list", input {'root': [1, 2]}): model() validates the
    plain dict of the fields, which a RootModel does not take.
    (_appstate.AppState.model.)"""
    state: AppState[Any] = AppState(Readings([1, 2]))
    assert state.get("root.0") == 1
    assert state.model() == Readings([1, 2])


# -- 2. subscriptions ------------------------------------------------------------------------------
class Doc(BaseModel):
    title: str = ""
    paragraphs: list[str] = ["a", "b", "c"]


class Editor(BaseModel):
    doc: Doc = Doc()
    cursor: int = 0
    anything: Any = None
    maybe: Optional[list[int]] = None  # noqa: UP045


def test_subscription_to_a_negative_index_hears_its_item_change() -> None:
    """subscribe("doc.paragraphs.-1") (docs: "doc.paragraphs.-1" is a path)
    is filed under the part -1, but versions record the concrete index (2),
    so a change of the last paragraph by its index is never announced, and
    a later unrelated change of the list announces a stale (old, new).
    Expected: called once with ("c", "Z"), and not again when the last item
    did not change. (_watch.Index / Watch.start: a negative index is not
    matched against the concrete paths versions record.)"""
    state = AppState(Editor)
    calls: list[tuple[Any, Any]] = []
    state.subscribe("doc.paragraphs.-1", lambda old, new: calls.append((old, new)))
    state.set("doc.paragraphs.2", "Z", priority=CRITICAL)
    assert calls == [("c", "Z")]
    state.update(lambda d: d.doc.paragraphs.insert(0, "new"), priority=CRITICAL)  # last is "Z"
    assert calls == [("c", "Z")]


@pytest.mark.parametrize("target", ["cursor", "doc.title"], ids=["same-path", "other-path"])
def test_a_subscription_cancelled_by_an_earlier_callback_is_not_called(target: str) -> None:
    """Callback A cancels subscription B (cancel() returns True) while a
    version is announced: B is still called for that version, after it was
    cancelled. _dispatch calls the candidates found before the callbacks ran
    without looking whether each is still subscribed. (_appstate._dispatch.)"""
    state = AppState(Editor)
    calls: list[str] = []
    subscriptions: dict[str, Any] = {}

    def first(old: Any, new: Any) -> None:
        calls.append("A")
        assert subscriptions["B"].cancel()

    subscriptions["A"] = state.subscribe("cursor", first)
    subscriptions["B"] = state.subscribe(target, lambda old, new: calls.append("B"))
    with state.batch() as draft:
        draft.cursor = 1
        draft.doc.title = "changed"
    assert calls == ["A"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_async_selector_is_refused() -> None:
    """subscribe(async_selector, callback): the selector returns a coroutine
    object that is never awaited (RuntimeWarning), reads nothing, so the
    subscription is filed under no path and silently never fires. Docs: a
    bad subscription target is a ConfigurationError. (_subscription.make_watch
    checks only the callback for a coroutine function.)"""
    state = AppState(Editor)

    async def cursor(snapshot: Any) -> int:
        return int(snapshot.cursor)

    heard: list[Any] = []
    try:
        try:
            state.subscribe(cursor, lambda old, new: heard.append(new))
        except ConfigurationError:
            return
        state.set("cursor", 3, priority=CRITICAL)
        assert heard == [3], "an async selector was taken and never fires"
    finally:
        state.close()
        for leftover in gc.get_objects():  # the coroutines it made and never awaited
            if inspect.iscoroutine(leftover) and leftover.cr_code is cursor.__code__:
                leftover.close()


# -- 3. threads ------------------------------------------------------------------------------------
@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Threads switch as often as the interpreter lets them (a loaded machine)."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


@pytest.mark.usefixtures("busy_switching")
def test_threads_first_using_a_nested_model_never_get_a_false_path_error() -> None:
    """Threads subscribe to (or set) a field of a nested model the state has
    not used yet: one compiles the model's fields, and ModelShape.fields
    publishes its dict empty first and fills it after, so the others see a
    half-filled dict and get StatePathError "Panel has no field 'f299'" for a
    field that exists. (_shape.ModelShape.fields: `self._fields = {}` before
    filling it, without a lock.)"""
    failures = 0
    for trial in range(20):
        fields: dict[str, Any] = {f"f{i}": (list[int], []) for i in range(300)}
        panel = create_model(f"Panel{trial}", **fields)
        model = create_model(f"Mixer{trial}", panel=(Optional[panel], None))  # noqa: UP045
        state: AppState[Any] = AppState(model)
        barrier = threading.Barrier(8)
        errors: list[BaseException] = []

        def subscribe(
            state: AppState[Any] = state,
            barrier: threading.Barrier = barrier,
            errors: list[BaseException] = errors,
        ) -> None:
            barrier.wait()
            try:
                state.subscribe("panel.f299", lambda old, new: None)
            except BaseException as exc:  # noqa: BLE001 - reported
                errors.append(exc)

        threads = [threading.Thread(target=subscribe) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        failures += bool(errors)
    assert failures == 0, f"{failures} of 20 trials raised a false StatePathError"


# -- 4. delete() ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        pytest.param("maybe.0", id="optional-list-that-is-None"),
        pytest.param("anything.key", id="any-field-that-is-None"),
        pytest.param(("anything", 0), id="any-field-that-is-None-index"),
    ],
)
def test_delete_inside_a_none_is_a_state_path_error(path: Any) -> None:
    """delete("maybe.0") where maybe (Optional[list[int]]) is None, or
    delete("anything.key") where an Any field is None: a raw TypeError
    ("'NoneType' object is not iterable"). set() at the same paths says
    StatePathError "maybe is None: set it first". (_paths.remove:
    list(parent) of None.)"""
    state = AppState(Editor)
    before, version = state.value, state.version
    with pytest.raises(StatePathError):
        state.delete(path, priority=CRITICAL)
    assert state.value == before and state.version == version


# -- 5. values read from the state and set back ----------------------------------------------------
class Pin(BaseModel):
    z: int = 0


@pytest.mark.parametrize(
    "value",
    [pytest.param(Pin(z=3), id="model"), pytest.param({"pin": Pin(z=1)}, id="dict-of-models")],
)
def test_a_value_read_from_an_any_field_and_set_back_is_unchanged(value: Any) -> None:
    """state.set("anything", Pin(z=3)) keeps a Pin Node (docs: models inside
    Any fields come back as they were set). Setting back the very value read
    from the state, `state.set("anything", state.value.anything)`, turns it
    into an immutables.Map of its fields: the value changed (and no longer
    equals what was read) though nothing was changed. (_shape.Shape.freeze:
    a frozen value is read back through plain() as stored data.)"""
    state = AppState(Editor)
    state.set("anything", value, priority=CRITICAL)
    read = state.value.anything
    state.set("anything", read, priority=CRITICAL)
    assert state.value.anything == read
    state.update(lambda d: setattr(d, "anything", read), priority=CRITICAL)
    assert state.value.anything == read


# -- 6. history and priorities ---------------------------------------------------------------------
class Counter(BaseModel):
    n: int = 0


def test_history_of_one_version_has_no_undo() -> None:
    """Docs: `history=` is the versions kept, "and undo steps: one fewer".
    With history=1 there is no undo step, and version 0 is not kept
    (at(0) is a StateError), yet undo() returns True and goes back to it.
    (_history.History: the undo deque's maxlen is max(1, limit - 1).)"""
    state = AppState(Counter, history=1)
    state.set("n", 1, priority=CRITICAL)
    assert state.versions() == [1]
    assert not state.can_undo
    assert state.undo() is False
    assert state.value.n == 1


def test_low_update_with_deadline_zero_is_applied_at_once() -> None:
    """Docs: "A `deadline=0` applies what waits at once" (and a callback runs
    in the caller's thread for an update applied at once). A NORMAL update
    with deadline=0 is; a LOW one is only handed to the timer thread:
    set() returns before it is applied, and its callback runs in the timer
    thread. (_coordinator.Coordinator.low_update: no run_due() when due.)"""
    state = AppState(Counter, clock=FakeClock(auto=False))
    threads: list[threading.Thread] = []
    state.subscribe("n", lambda old, new: threads.append(threading.current_thread()))
    state.set("n", 1, priority=LOW, deadline=0)
    deadline = time.monotonic() + 5
    while not threads and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threads == [threading.current_thread()]
    state.close()


# -- 7. store.state() names ------------------------------------------------------------------------
def test_a_state_name_that_cannot_be_encoded_is_a_typed_error(tmp_path: Path) -> None:
    """store.state("\ud800", Model) (a lone surrogate, as os.fsdecode gives
    for a file name that is not UTF-8): AppState takes the name, then the
    claim raises a raw UnicodeEncodeError out of store.state(). Expected: a
    typed error (ConfigurationError for a bad name), and the store usable.
    (_options.check_options: the name is not checked to be encodable;
    backends/_claims.py: name.encode().)"""
    with statekeep.open(_url(tmp_path)) as store:
        with pytest.raises(StatekeepError):
            store.state("bad\ud800", Counter)
        assert store.state("good", Counter).value.n == 0
