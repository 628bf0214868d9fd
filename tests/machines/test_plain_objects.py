"""A machine moves plain objects and dataclasses too (what transitions and
python-statemachine move), Store.on_rollback undoes what a rolled-back block
did in memory, and count_by works on a backend without a grouped count."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import statekeep
from statekeep import ConfigurationError, Entity, Machine, State, TransitionError


class Gate(Machine):
    closed = State(initial=True)
    opened = State()
    open = closed.to(opened, cond="powered", after="count")
    close = opened.to(closed)


class Turnstile:
    state: Gate = Gate.closed

    def __init__(self, powered: bool = True) -> None:
        self.powered = powered
        self.turns = 0

    def count(self) -> None:
        self.turns += 1


@dataclasses.dataclass
class Door:
    powered: bool = True
    turns: int = 0
    state: Gate = Gate.closed

    def count(self) -> None:
        self.turns += 1


class Slotted:
    __slots__ = ("state",)
    state: Gate


def test_a_plain_object_moves_from_its_class_default() -> None:
    gate = Turnstile()
    Gate.send(gate, "open")
    assert gate.state is Gate.opened and gate.turns == 1
    Gate.close(gate)
    assert vars(gate) == {"powered": True, "turns": 1, "state": Gate.closed}
    assert Gate.allowed_events(gate) == ["open"]


def test_a_plain_objects_guard_is_read_when_sent() -> None:
    gate = Turnstile(powered=False)
    with pytest.raises(TransitionError, match="held back by its guards"):
        Gate.open(gate)
    assert gate.state is Gate.closed and gate.turns == 0 and "state" not in vars(gate)


def test_a_dataclass_moves() -> None:
    door = Door()
    Gate.open(door)
    Gate.send(door, "close")
    assert door == Door(turns=1, state=Gate.closed)


def test_an_action_that_raises_leaves_a_plain_object_as_it_was() -> None:
    gate = Turnstile()

    def broken(self: Turnstile) -> None:
        self.turns = 99
        raise RuntimeError("jammed")

    class Jam(Machine):
        shut = State(initial=True)
        ajar = State(final=True)
        push = shut.to(ajar, after=broken)

    class Box:
        state: Jam = Jam.shut

        def __init__(self) -> None:
            self.turns = 0

    box = Box()
    with pytest.raises(RuntimeError, match="jammed"):
        Jam.push(box)
    assert vars(box) == {"turns": 0} and box.state is Jam.shut
    assert gate.turns == 0


def test_objects_a_machine_cannot_move_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="__dict__"):
        Gate.send(Slotted(), "open")
    with pytest.raises(ConfigurationError, match="no field of Gate"):
        Gate.send(object(), "open")
    with pytest.raises(ConfigurationError, match="no field of Gate"):
        Gate.send(3, "open")


def test_on_rollback_runs_when_the_block_rolls_back_and_only_then() -> None:
    undone: list[str] = []
    with statekeep.open("memory://") as store:
        store.on_rollback(lambda: undone.append("outside"))  # no block: never
        with store.transaction():
            store.on_rollback(lambda: undone.append("committed"))
        with pytest.raises(RuntimeError), store.transaction():
            store.on_rollback(lambda: undone.append("first"))
            with store.transaction():  # a savepoint that commits into the outer block
                store.on_rollback(lambda: undone.append("inner"))
            raise RuntimeError("roll back")
    assert undone == ["inner", "first"]  # last first


class Light(Machine):
    off = State(initial=True)
    on = State()
    flip = off.to(on)
    flop = on.to(off)


class Lamp(Entity, collection="mc_plain_lamp"):
    state: Light = Light.off
    room: str = ""


class NoGrouping:
    """A backend of one's own without count_by: the store counts state by state."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "count_by":
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_count_by_without_a_grouped_count_counts_each_state() -> None:
    inner = statekeep.backends.open_backend("memory://", {})
    with statekeep.open("memory://", backend=NoGrouping(inner)) as store:
        assert store.count_by(Lamp, "state") == {}
        store.save_many([Lamp(), Lamp(state=Light.on, room="hall"), Lamp(state=Light.on)])
        assert store.count_by(Lamp, "state") == {Light.off: 1, Light.on: 2}
        assert store.count_by(Lamp, "state", room="hall") == {Light.on: 1}


def test_the_store_takes_an_event_itself_as_well_as_its_name() -> None:
    with statekeep.open("memory://") as store:
        lamp = store.save(Lamp())
        store.send(lamp, Light.flip)
        assert store.get(Lamp, lamp.id).state is Light.on
        report = store.transition_many(Lamp, Light.flop)
        assert report.moved == 1 and store.get(Lamp, lamp.id).state is Light.off
