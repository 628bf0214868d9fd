"""The memory guard: cold states compressed, histories dropped past the
watermark, events on the guard and on the stores' buses; values intact."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

import statekeep
from statekeep.errors import ConfigurationError
from statekeep.state import (
    AppState,
    MemoryGuard,
    MemoryPressure,
    MemoryRelieved,
    Priority,
    memory_guard,
)

CRITICAL = Priority.CRITICAL


class Meters(BaseModel):
    title: str = ""
    meters: dict[str, float] = {}


class Memory:
    """A resident-memory reading the test sets."""

    def __init__(self) -> None:
        self.bytes = 1_000

    def __call__(self) -> int:
        return self.bytes


@pytest.fixture
def memory() -> Memory:
    return Memory()


@pytest.fixture
def guard(memory: Memory) -> Iterator[MemoryGuard]:
    gc.collect()  # the states of earlier tests are gone (a state holds cycles)
    made = memory_guard(
        watermark=10_000, interval=0, cold_after=None, pressure_cold_after=0, read=memory
    )
    yield made
    memory_guard(interval=1.0)  # the default guard again for the tests after


def meters(n: int = 200) -> Meters:
    return Meters(title="t", meters={f"m{i}": float(i) for i in range(n)})


def test_every_new_state_is_watched(guard: MemoryGuard) -> None:
    state = AppState(meters())
    assert state in guard.states


def test_a_cold_state_is_compressed_and_its_value_comes_back_intact(
    guard: MemoryGuard,
) -> None:
    guard.cold_after = 0.0
    state = AppState(meters())
    for i in range(5):
        state.set("meters.m1", float(100 + i), priority=CRITICAL)
    before, version = state.value, state.version
    guard.check()
    assert state.compressed
    assert state.versions() == [version]  # the history went with it
    assert state.value == before  # decompressed on read
    assert not state.compressed
    assert state.version == version


def test_an_update_of_a_compressed_state_applies_on_its_value(guard: MemoryGuard) -> None:
    state = AppState(meters())
    assert state.compress()
    state.set("meters.m2", -1.0, priority=CRITICAL)
    assert state.value.meters["m2"] == -1.0
    assert state.value.meters["m3"] == 3.0
    assert state.value.title == "t"


def test_a_state_in_use_is_not_compressed(guard: MemoryGuard) -> None:
    guard.cold_after = 10.0
    state = AppState(meters())
    guard.check()
    state.set("title", "busy", priority=CRITICAL)
    guard.check()
    assert not state.compressed


def test_compress_is_refused_while_updates_wait_or_a_batch_is_open(guard: MemoryGuard) -> None:
    from statekeep.flow import FakeClock

    state = AppState(meters(), clock=FakeClock(auto=False))
    state.set("title", "a")  # immediate: the first in a while
    state.set("title", "b")  # waits for its frame
    assert not state.compress()
    state.flush()
    with state.batch() as draft:
        draft.title = "c"
        assert not state.compress()
    assert state.compress()
    assert not state.compress()  # already
    assert state.value.title == "c"


def test_pressure_drops_histories_compresses_and_is_announced(
    guard: MemoryGuard, memory: Memory
) -> None:
    seen: list[object] = []
    guard.on_event.append(seen.append)
    states = [AppState(meters()) for _ in range(3)]
    values = []
    for state in states:
        for i in range(4):
            state.set("meters.m0", float(i), priority=CRITICAL)
        values.append(state.value)
    guard.pressure_cold_after = 3600.0  # none is cold: histories are dropped only
    assert guard.check() is False
    memory.bytes = 20_000
    assert guard.check() is True
    assert [len(s.versions()) for s in states] == [1, 1, 1]
    assert not any(s.can_undo for s in states)
    assert [s.value for s in states] == values
    assert [type(e) for e in seen] == [MemoryPressure]
    event = seen[0]
    assert isinstance(event, MemoryPressure)
    assert (event.rss, event.watermark, event.trimmed) == (20_000, 10_000, 3)
    assert guard.check() is True
    assert len(seen) == 1  # once per crossing
    memory.bytes = 9_500  # under the watermark, not under 90% of it
    assert guard.check() is True
    memory.bytes = 8_000
    assert guard.check() is False
    assert [type(e) for e in seen] == [MemoryPressure, MemoryRelieved]
    assert guard.stats.pressure_events == 1
    assert guard.stats.trimmed == 3


def test_under_pressure_idle_states_are_compressed_at_the_hardest_level(
    guard: MemoryGuard, memory: Memory
) -> None:
    state = AppState(meters(2_000))
    value = state.value
    memory.bytes = 50_000
    guard.check()
    assert state.compressed
    assert state._cold is not None and state._cold[1] == 19
    assert guard.stats.compressed == 1
    assert state.value == value


def test_pressure_reaches_the_bus_of_a_store_and_its_snapshots_compress_harder(
    guard: MemoryGuard, memory: Memory, tmp_path: Path
) -> None:
    events: list[str] = []
    with statekeep.open(f"sqlite:///{tmp_path / 'app.db'}") as store:
        store.on(MemoryPressure, lambda e: events.append(e.kind))
        store.on(MemoryRelieved, lambda e: events.append(e.kind))
        state = store.state("meters", meters(), level=None)
        state.set("meters.m5", 55.0, priority=CRITICAL)
        memory.bytes = 50_000
        guard.check()
        memory.bytes = 10
        guard.check()
        assert events == ["memory_pressure", "memory_relieved"]
        assert state._persister is not None
        assert state._persister.codec.level == 9  # type: ignore[attr-defined]
        state.set("meters.m6", 66.0, priority=CRITICAL)  # decompressed, changed, persisted
        state.wait_durable(10)
    with statekeep.open(f"sqlite:///{tmp_path / 'app.db'}") as store:
        again = store.state("meters", Meters)
        assert again.value.meters["m5"] == 55.0
        assert again.value.meters["m6"] == 66.0


def test_a_failing_guard_callback_is_isolated(guard: MemoryGuard, memory: Memory) -> None:
    seen: list[object] = []

    def broken(event: object) -> None:
        raise RuntimeError("boom")

    guard.on_event.extend([broken, seen.append])
    AppState(meters())
    memory.bytes = 50_000
    guard.check()
    assert len(seen) == 1


@pytest.mark.parametrize(
    "options",
    [
        {"watermark": -1},
        {"watermark": "1GB"},
        {"interval": -1.0},
        {"cold_after": float("nan")},
        {"pressure_cold_after": True},
        {"read": 5},
        {"high": 1},
    ],
)
def test_bad_guard_options_are_refused(options: dict[str, object], guard: MemoryGuard) -> None:
    with pytest.raises(ConfigurationError):
        memory_guard(**options)
    assert memory_guard() is guard  # the guard in place stays


def test_a_new_guard_takes_over_the_states_of_the_old(guard: MemoryGuard, memory: Memory) -> None:
    state = AppState(meters())
    newer = memory_guard(watermark=5, interval=0, read=memory)
    assert newer is not guard
    assert state in newer.states


def test_a_state_nobody_holds_or_closed_is_collected_and_its_timer_ends() -> None:
    import threading
    import weakref

    state = AppState(meters(), frame=0.02)
    state.set("title", "a")  # at once: the first in a while
    state.set("title", "b")  # waits for its frame: the timer thread starts
    thread = state._coordinator._thread
    assert isinstance(thread, threading.Thread) and thread.is_alive()
    gone = weakref.ref(state)
    del state
    for _ in range(50):
        gc.collect()
        if gone() is None:
            break
        thread.join(0.1)
    assert gone() is None
    thread.join(5.0)
    assert not thread.is_alive()
