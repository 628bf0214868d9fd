"""statekeep.state against a reference: random sets, deletes, update(fn)s,
batches, flushes, undo, redo and at() on an AppState (CRITICAL at once,
NORMAL waiting for a frame on a clock that does not move) and on plain
deep-copied data; the state has the reference's values at every version,
at(v) gives what version v was, and snapshots taken earlier never change."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from pydantic import BaseModel

from statekeep.errors import StateError, StatekeepError
from statekeep.flow import FakeClock
from statekeep.state import AppState, Priority

from ._models import thaw

CRITICAL, NORMAL = Priority.CRITICAL, Priority.NORMAL
HISTORY = 6  # versions kept: undo goes back HISTORY - 1 versions


class Item(BaseModel):
    name: str = ""
    qty: int = 0


class Root(BaseModel):
    title: str = ""
    count: int = 0
    meters: dict[str, float] = {}
    items: list[Item] = []
    tags: list[str] = []
    focus: Item | None = None


Data = dict[str, Any]
FAILS = (LookupError, TypeError)  # what a change of the reference raises where it cannot apply


# -- the changes: each made on the state and on the reference -----------------------------------


class Op:
    in_batch = True  # can be made inside a batch()

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        raise NotImplementedError

    def on_data(self, data: Data) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class SetTitle(Op):
    title: str

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        state.set("title", self.title, priority=priority)

    def on_data(self, data: Data) -> None:
        data["title"] = self.title


@dataclass(frozen=True)
class AddToCount(Op):
    amount: int

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        amount = self.amount
        state.update(lambda d: setattr(d, "count", d.count + amount), priority=priority)

    def on_data(self, data: Data) -> None:
        data["count"] += self.amount


@dataclass(frozen=True)
class SetMeter(Op):
    key: str
    value: float

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        state.set(("meters", self.key), self.value, priority=priority)

    def on_data(self, data: Data) -> None:
        data["meters"][self.key] = self.value


@dataclass(frozen=True)
class DeleteMeter(Op):
    key: str

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        state.delete(("meters", self.key), priority=priority)

    def on_data(self, data: Data) -> None:
        del data["meters"][self.key]


@dataclass(frozen=True)
class MergeMeters(Op):
    values: tuple[tuple[str, float], ...]

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        values = dict(self.values)
        state.update(lambda d: d.meters.update(values), priority=priority)

    def on_data(self, data: Data) -> None:
        data["meters"].update(dict(self.values))


@dataclass(frozen=True)
class RenameItem(Op):
    index: int
    name: str
    as_text: bool  # the path as "items.1.name" or as a tuple

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        path: Any = f"items.{self.index}.name" if self.as_text else ("items", self.index, "name")
        state.set(path, self.name, priority=priority)

    def on_data(self, data: Data) -> None:
        data["items"][self.index]["name"] = self.name


@dataclass(frozen=True)
class AddToQty(Op):
    index: int
    amount: int

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        index, amount = self.index, self.amount

        def add(draft: Any) -> None:
            item = draft.items[index]
            item.qty = item.qty + amount

        state.update(add, priority=priority)

    def on_data(self, data: Data) -> None:
        data["items"][self.index]["qty"] += self.amount


@dataclass(frozen=True)
class AppendItem(Op):
    name: str
    qty: int

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        item = Item(name=self.name, qty=self.qty)
        state.update(lambda d: d.items.append(item), priority=priority)

    def on_data(self, data: Data) -> None:
        data["items"].append({"name": self.name, "qty": self.qty})


@dataclass(frozen=True)
class InsertItem(Op):
    index: int
    name: str

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        index, item = self.index, {"name": self.name}
        state.update(lambda d: d.items.insert(index, item), priority=priority)

    def on_data(self, data: Data) -> None:
        data["items"].insert(self.index, {"name": self.name, "qty": 0})


@dataclass(frozen=True)
class PopItem(Op):
    index: int

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        index = self.index

        def pop(draft: Any) -> None:
            draft.items.pop(index)

        state.update(pop, priority=priority)

    def on_data(self, data: Data) -> None:
        data["items"].pop(self.index)


@dataclass(frozen=True)
class DeleteItem(Op):
    index: int

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        state.delete(("items", self.index), priority=priority)

    def on_data(self, data: Data) -> None:
        del data["items"][self.index]


@dataclass(frozen=True)
class SetTags(Op):
    tags: tuple[str, ...]

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        state.set("tags", list(self.tags), priority=priority)

    def on_data(self, data: Data) -> None:
        data["tags"] = list(self.tags)


@dataclass(frozen=True)
class ExtendTags(Op):
    tags: tuple[str, ...]

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        tags = self.tags
        state.update(lambda d: d.tags.extend(tags), priority=priority)

    def on_data(self, data: Data) -> None:
        data["tags"].extend(self.tags)


@dataclass(frozen=True)
class SetFocus(Op):
    item: tuple[str, int] | None

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        value = None if self.item is None else Item(name=self.item[0], qty=self.item[1])
        state.set("focus", value, priority=priority)

    def on_data(self, data: Data) -> None:
        data["focus"] = None if self.item is None else {"name": self.item[0], "qty": self.item[1]}


@dataclass(frozen=True)
class SetFocusQty(Op):
    qty: int

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        state.set("focus.qty", self.qty, priority=priority)

    def on_data(self, data: Data) -> None:
        data["focus"]["qty"] = self.qty  # TypeError while focus is None


@dataclass(frozen=True)
class Replace(Op):
    """fn returning a whole new value."""

    title: str
    in_batch = False

    def on_state(self, state: AppState[Root], priority: Priority) -> None:
        title = self.title
        state.update(lambda d: Root(title=title, count=len(d.items)), priority=priority)

    def on_data(self, data: Data) -> None:
        new = Root(title=self.title, count=len(data["items"])).model_dump()
        data.clear()
        data.update(new)


names = st.text(alphabet="xyz", max_size=3)
small = st.integers(-3, 3)
keys = st.sampled_from(["a", "b", "c.d"])
meter_values = st.floats(-100, 100, allow_nan=False, width=32).map(float)

OPS = st.one_of(
    st.builds(SetTitle, names),
    st.builds(AddToCount, small),
    st.builds(SetMeter, keys, meter_values),
    st.builds(DeleteMeter, keys),
    st.builds(MergeMeters, st.lists(st.tuples(keys, meter_values), max_size=3).map(tuple)),
    st.builds(RenameItem, small, names, st.booleans()),
    st.builds(AddToQty, small, st.integers(1, 5)),
    st.builds(AppendItem, names, st.integers(0, 9)),
    st.builds(InsertItem, small, names),
    st.builds(PopItem, small),
    st.builds(DeleteItem, small),
    st.builds(SetTags, st.lists(names, max_size=3).map(tuple)),
    st.builds(ExtendTags, st.lists(names, max_size=2).map(tuple)),
    st.builds(SetFocus, st.none() | st.tuples(names, st.integers(0, 9))),
    st.builds(SetFocusQty, st.integers(0, 9)),
    st.builds(Replace, names),
)


def applied(op: Op, data: Data) -> Data | None:
    """data after op (a copy), or None where op cannot apply."""
    new = copy.deepcopy(data)
    try:
        op.on_data(new)
    except FAILS:
        return None
    return new


def replayed(ops: list[Op], data: Data) -> Data:
    """Updates that waited, applied in order; one that fails is dropped."""
    for op in ops:
        new = applied(op, data)
        if new is not None:
            data = new
    return data


def batchable(ops: list[Op]) -> list[Op]:
    """ops that can go into a batch's draft."""
    return [op for op in ops if op.in_batch]


class AgainstAReference(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock(auto=False)  # never moves: a NORMAL update in a frame waits
        self.state: AppState[Root] = AppState(Root, clock=self.clock, history=HISTORY)
        self.data: Data = Root().model_dump()
        self.waiting: list[Op] = []  # NORMAL updates the state holds for its frame
        self.undo_stack: list[Data] = []
        self.redo_stack: list[Data] = []
        self.at_version: dict[int, Data] = {0: copy.deepcopy(self.data)}
        self.snapshots: list[tuple[Any, Data]] = [(self.state.value, copy.deepcopy(self.data))]

    def record(self, version: int, data: Data, *, undoable: bool) -> None:
        """The state made `version`: data is its value."""
        if undoable:
            self.undo_stack = [*self.undo_stack, self.data][-(HISTORY - 1) :]
            self.redo_stack.clear()
        self.data = data
        self.at_version[version] = copy.deepcopy(data)

    def settle(self, before: int, made: int, data: Data) -> None:
        """`made` versions (0 or 1) after `before` for changes giving data."""
        assert made in (0, 1)
        if made:
            self.record(before + 1, data, undoable=True)
        else:
            assert data == self.data  # no version, so nothing may have changed

    @rule(op=OPS, priority=st.sampled_from([NORMAL, CRITICAL]))
    def change(self, op: Op, priority: Priority) -> None:
        state = self.state
        before, waiting = state.version, state.stats().pending
        error: BaseException | None = None
        try:
            op.on_state(state, priority)
        except (StatekeepError, LookupError) as exc:
            error = exc
        if state.stats().pending > waiting:  # it waits for its frame
            assert priority is NORMAL and error is None and state.version == before
            self.waiting.append(op)
            return
        data = replayed(self.waiting, self.data)  # what waited is applied first
        self.waiting = []
        new = applied(op, data)
        assert (error is None) == (new is not None), (op, error)
        self.settle(before, state.version - before, data if new is None else new)

    @rule(ops=st.lists(OPS, min_size=1, max_size=6), fail=st.booleans())
    def batch(self, ops: list[Op], fail: bool) -> None:
        state, ops = self.state, batchable(ops)
        if self.waiting:  # what waits is applied first, in a version of its own
            before = state.version
            data = replayed(self.waiting, self.data)
            self.waiting = []
            state.flush()
            self.settle(before, state.version - before, data)
        before = state.version
        new: Data | None = self.data
        for op in ops:
            new = None if new is None else applied(op, new)
        try:
            with state.batch():
                for op in ops:
                    op.on_state(state, NORMAL)  # into the batch's draft
                if fail:
                    raise ArithmeticError("the block gave up")
        except (StatekeepError, LookupError, TypeError, AttributeError, ArithmeticError):
            assert state.version == before
            assert fail or new is None
            return
        assert new is not None and not fail, ops
        self.settle(before, state.version - before, new)

    @rule()
    def flush(self) -> None:
        before = self.state.version
        assert self.state.flush() == self.state.version
        data = replayed(self.waiting, self.data)
        self.waiting = []
        self.settle(before, self.state.version - before, data)

    def _step_back_or_forth(self, undo: bool) -> None:
        state = self.state
        before = state.version
        data = replayed(self.waiting, self.data)  # undo() and redo() apply what waits first
        self.waiting = []
        moved = state.undo() if undo else state.redo()
        self.settle(before, state.version - before - moved, data)
        stack, other = (
            (self.undo_stack, self.redo_stack) if undo else (self.redo_stack, self.undo_stack)
        )
        assert moved == bool(stack)
        if moved:
            other.append(self.data)
            if other is self.undo_stack:
                del other[: -(HISTORY - 1)]
            self.data = stack.pop()
            self.at_version[state.version] = copy.deepcopy(self.data)

    @rule()
    def undo(self) -> None:
        self._step_back_or_forth(undo=True)

    @rule()
    def redo(self) -> None:
        self._step_back_or_forth(undo=False)

    @rule(data=st.data())
    def at(self, data: st.DataObject) -> None:
        state = self.state
        version = state.version
        kept = state.versions()
        assert kept == list(range(max(0, version - HISTORY + 1), version + 1))
        chosen = data.draw(st.sampled_from(kept))
        assert thaw(state.at(chosen)) == self.at_version[chosen]
        with pytest.raises(StateError):
            state.at(kept[0] - 1 if kept[0] else version + 1)

    @rule()
    def snapshot(self) -> None:
        self.snapshots.append((self.state.value, copy.deepcopy(self.data)))

    @invariant()
    def the_state_has_the_references_values(self) -> None:
        assert thaw(self.state.value) == self.data
        assert self.state.stats().pending == len(self.waiting)
        assert self.state.can_undo == bool(self.undo_stack)
        assert self.state.can_redo == bool(self.redo_stack)

    @invariant()
    def snapshots_taken_earlier_never_change(self) -> None:
        for snapshot, data in self.snapshots:
            assert thaw(snapshot) == data

    def teardown(self) -> None:
        self.state.close()
        assert thaw(self.state.value) == replayed(self.waiting, self.data)
        assert self.state.model() == Root.model_validate(thaw(self.state.value))


AgainstAReference.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_an_app_state_behaves_as_its_reference = AgainstAReference.TestCase
