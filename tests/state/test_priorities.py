"""statekeep.state priorities on a FakeClock: CRITICAL applied at once under
a NORMAL flood (with the NORMAL updates before it); NORMAL updates within a
frame coalesced into one version at the frame's end by the timer thread, or
sooner at a deadline; LOW applied once no CRITICAL or NORMAL came for `idle`,
at its deadline, or at low_max_age; the decisions in stats(); flush() and
close() applying what waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from statekeep.errors import StoreClosedError
from statekeep.flow import FakeClock
from statekeep.state import AppState, Priority

CRITICAL, NORMAL, LOW = Priority.CRITICAL, Priority.NORMAL, Priority.LOW
FRAME = 0.016  # the default frame


class Studio(BaseModel):
    transport: str = "stopped"
    meters: dict[str, float] = {}
    level: int = 0
    background: int = 0
    note: str = ""


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Waits in real time for what the timer thread does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def still(condition: Callable[[], bool], seconds: float = 0.15) -> bool:
    """condition holds all along `seconds` of real time (the timer thread had
    its chance to act)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not condition():
            return False
        time.sleep(0.005)
    return condition()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(auto=False)


@pytest.fixture
def state(clock: FakeClock) -> Iterator[AppState[Studio]]:
    with AppState(Studio, clock=clock, name="studio") as state:
        yield state


def start_a_frame(state: AppState[Studio]) -> int:
    """A NORMAL update applied at once (nothing applied yet): the frame
    starts now, so NORMAL updates at this moment wait for its end."""
    state.set("note", "frame")
    assert state.stats().pending == 0
    return state.version


# -- CRITICAL -------------------------------------------------------------------------------


def test_critical_is_applied_at_once_under_a_normal_flood(state: AppState[Studio]) -> None:
    version = start_a_frame(state)
    for n in range(200):
        state.set("meters.left", float(n))
    assert state.stats().pending == 200 and state.version == version
    transport = []
    state.subscribe("transport", lambda old, new: transport.append(new))
    state.set("transport", "playing", priority=CRITICAL)
    assert state.value.transport == "playing" and transport == ["playing"]
    assert state.value.meters["left"] == 199.0  # the NORMAL updates before it, in order
    assert state.version == version + 1 and state.stats().pending == 0
    for n in range(50):
        state.set("meters.left", -float(n))
    state.update(lambda d: setattr(d, "transport", "stopped"), priority=CRITICAL)
    assert state.value.transport == "stopped" and state.value.meters["left"] == -49.0
    assert state.version == version + 2


def test_critical_sets_in_a_row_are_each_a_version(state: AppState[Studio]) -> None:
    for n in range(10):
        state.set("level", n, priority=CRITICAL)
        assert state.value.level == n and state.version == n + 1
    decisions = state.stats().decisions
    assert decisions.immediate == 10 and decisions.batched == 0 and decisions.mode == "immediate"


# -- NORMAL ---------------------------------------------------------------------------------


def test_normal_updates_in_one_frame_become_one_version_at_its_end(
    state: AppState[Studio], clock: FakeClock
) -> None:
    version = start_a_frame(state)
    for n in range(50):
        state.set("meters.left", float(n))
        state.update(lambda d: setattr(d, "level", d.level + 1))
    stats = state.stats()
    assert stats.pending == 100 and stats.decisions.mode == "batched"
    assert stats.decisions.batched == 100 and stats.frame == pytest.approx(FRAME)
    assert still(lambda: state.version == version)  # the clock has not moved
    clock.advance(FRAME / 2)
    assert still(lambda: state.version == version)  # within the frame
    clock.advance(FRAME)
    assert eventually(lambda: state.version == version + 1)
    assert state.value.meters["left"] == 49.0 and state.value.level == 50
    assert still(lambda: state.version == version + 1)  # one version for all of them
    stats = state.stats()
    assert stats.pending == 0 and stats.coalesced >= 99
    assert stats.counters.updates_applied == 101 and stats.counters.versions == 2


def test_a_frame_ends_on_the_timer_thread(state: AppState[Studio], clock: FakeClock) -> None:
    threads: list[str] = []
    state.subscribe("level", lambda old, new: threads.append(threading.current_thread().name))
    start_a_frame(state)
    state.set("level", 1)
    clock.advance(FRAME)
    assert eventually(lambda: threads != [])
    assert threads == ["statekeep-state-studio"]


def test_a_normal_update_after_a_quiet_frame_is_applied_at_once(
    state: AppState[Studio], clock: FakeClock
) -> None:
    version = start_a_frame(state)
    clock.advance(FRAME)
    state.set("level", 1)
    assert state.value.level == 1 and state.version == version + 1
    assert state.stats().decisions.immediate == 2


def test_a_deadline_applies_the_frame_sooner(clock: FakeClock) -> None:
    with AppState(Studio, clock=clock) as late, AppState(Studio, clock=clock) as soon:
        start_a_frame(late)
        start_a_frame(soon)
        late.set("level", 1)
        soon.set("level", 1, deadline=FRAME / 4)
        clock.advance(FRAME / 2)
        assert eventually(lambda: soon.value.level == 1)
        assert still(lambda: late.value.level == 0)
        clock.advance(FRAME)
        assert eventually(lambda: late.value.level == 1)


def test_a_zero_deadline_is_applied_before_the_call_returns(state: AppState[Studio]) -> None:
    version = start_a_frame(state)
    state.set("level", 1)
    state.set("meters.left", 2.0, deadline=0)
    assert state.value.level == 1 and state.value.meters["left"] == 2.0
    assert state.version == version + 1 and state.stats().pending == 0


# -- LOW ------------------------------------------------------------------------------------


def test_low_waits_until_nothing_higher_came_for_idle(
    state: AppState[Studio], clock: FakeClock
) -> None:
    idle = state.options.idle
    start_a_frame(state)
    state.set("background", 1, priority=LOW)
    stats = state.stats()
    assert stats.pending == 1 and stats.decisions.deferred == 1
    assert stats.decisions.mode == "deferred"
    clock.advance(idle / 2)
    assert still(lambda: state.value.background == 0)
    state.set("level", 1)  # NORMAL: activity again
    clock.advance(idle * 0.8)  # idle since that one: less than idle
    assert still(lambda: state.value.background == 0)
    clock.advance(idle * 0.3)
    assert eventually(lambda: state.value.background == 1)
    assert state.stats().pending == 0


def test_a_critical_set_is_activity_that_low_waits_for(
    state: AppState[Studio], clock: FakeClock
) -> None:
    idle = state.options.idle
    start_a_frame(state)
    state.set("background", 1, priority=LOW)
    clock.advance(idle * 0.8)
    state.set("transport", "playing", priority=CRITICAL)  # activity again
    clock.advance(idle * 0.5)  # idle since the CRITICAL one: less than idle
    assert still(lambda: state.value.background == 0)
    clock.advance(idle)
    assert eventually(lambda: state.value.background == 1)


def test_low_is_applied_at_low_max_age_under_constant_activity(clock: FakeClock) -> None:
    with AppState(Studio, clock=clock, idle=0.1, low_max_age=1.0) as state:
        start_a_frame(state)
        state.set("background", 1, priority=LOW)
        for n in range(19):  # a NORMAL update every 50 ms: never idle for 100 ms
            clock.advance(0.05)
            state.set("level", n)
        assert clock.now() == pytest.approx(0.95)
        assert still(lambda: state.value.background == 0, 0.1)
        clock.advance(0.05)
        state.set("level", 99)
        assert eventually(lambda: state.value.background == 1)


def test_a_low_deadline_applies_it_sooner(state: AppState[Studio], clock: FakeClock) -> None:
    start_a_frame(state)
    state.set("background", 1, priority=LOW, deadline=0.01)
    state.set("note", "busy")
    clock.advance(0.005)
    assert still(lambda: state.value.background == 0)
    clock.advance(0.006)
    assert eventually(lambda: state.value.background == 1)


def test_low_updates_keep_their_order_and_are_one_version(
    state: AppState[Studio], clock: FakeClock
) -> None:
    version = start_a_frame(state)
    for n in range(10):
        state.set("background", n, priority=LOW)
        state.update(lambda d: setattr(d, "note", d.note + "."), priority=LOW)
    clock.advance(state.options.idle)
    assert eventually(lambda: state.version == version + 1)
    assert state.value.background == 9 and state.value.note == "frame" + "." * 10
    assert still(lambda: state.version == version + 1)


# -- decisions, flush, close --------------------------------------------------------------


def test_stats_count_each_decision(state: AppState[Studio], clock: FakeClock) -> None:
    start_a_frame(state)  # immediate
    for n in range(5):
        state.set("level", n)  # batched
    state.set("background", 1, priority=LOW)  # deferred
    state.set("transport", "playing", priority=CRITICAL)  # immediate
    decisions = state.stats().decisions
    assert (decisions.immediate, decisions.batched, decisions.deferred) == (2, 5, 1)
    assert decisions.mode == "immediate"
    clock.advance(0.01)
    state.set("level", 10)
    assert state.stats().decisions.mode == "batched"
    rows = dict(state.stats().rows())
    assert "2 immediate, 6 batched, 1 deferred" in rows["decisions"]
    assert state.stats().table().row_count == len(rows)
    clock.advance(1.0)
    state.set("level", 11)  # 10 updates in about a second
    assert 5 < state.stats().decisions.rate < 20


def test_flush_applies_everything_waiting_as_one_version(state: AppState[Studio]) -> None:
    version = start_a_frame(state)
    for n in range(5):
        state.set("level", n)
    state.set("background", 7, priority=LOW)
    assert state.stats().pending == 6
    assert state.flush() == version + 1
    assert state.value.level == 4 and state.value.background == 7
    assert state.stats().pending == 0 and state.flush() == version + 1


def test_a_pending_update_that_fails_is_dropped_and_logged(
    state: AppState[Studio], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    start_a_frame(state)
    state.set("meters.left", 1.0)
    state.delete("meters.missing")  # checked when applied: at the frame's end
    state.set("level", 3)
    with caplog.at_level("ERROR", logger="statekeep.state"):
        clock.advance(FRAME)
        assert eventually(lambda: state.value.level == 3)
    assert state.value.meters["left"] == 1.0
    assert state.stats().counters.updates_failed == 1
    assert "meters.missing" in caplog.text


def test_close_applies_what_waits_then_refuses_updates(clock: FakeClock) -> None:
    state = AppState(Studio, clock=clock, name="closing")
    start_a_frame(state)
    state.set("level", 5)
    state.set("background", 6, priority=LOW)
    state.close()
    assert state.closed and state.value.level == 5 and state.value.background == 6
    assert state.stats().pending == 0
    with pytest.raises(StoreClosedError):
        state.set("level", 1)
    with pytest.raises(StoreClosedError):
        state.set("level", 1, priority=CRITICAL)
    assert not any(t.name == "statekeep-state-closing" for t in threading.enumerate())


def test_updates_from_many_threads_in_one_frame_are_one_version(
    state: AppState[Studio], clock: FakeClock
) -> None:
    version = start_a_frame(state)

    def meter(name: str) -> Any:
        for n in range(100):
            state.set(("meters", name), float(n))

    threads = [threading.Thread(target=meter, args=(f"m{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert state.version == version and state.stats().pending == 400
    clock.advance(FRAME)
    assert eventually(lambda: state.version == version + 1)
    assert dict(state.value.meters) == {f"m{i}": 99.0 for i in range(4)}
