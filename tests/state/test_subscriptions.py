"""statekeep.state subscriptions: a subscriber is called only when its part
changed (identity first, equality second), once per version, with the old and
new values; wildcards give the entries that changed; selector functions are
re-run only when a part they read changed, and re-tracked; cancel; a failing
callback or selector is isolated (logged, counted); callbacks' own updates
come after; coroutine callbacks run on their loop; threads updating at once."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from statekeep.flow import FakeClock
from statekeep.state import AppState, Priority

from ._models import Cursor, Doc

CRITICAL, NORMAL, LOW = Priority.CRITICAL, Priority.NORMAL, Priority.LOW


class Editor(BaseModel):
    doc: Doc = Doc()
    meters: dict[str, float] = {}
    cursor: Cursor = Cursor()
    docs: list[Doc] = []
    rooms: dict[str, Doc] = {}
    total: int = 0
    counts: dict[str, int] = {}


def editor() -> Editor:
    return Editor(
        doc=Doc(title="Draft", paragraphs=["one"]),
        meters={"left": -12.0, "right": -9.5},
        docs=[Doc(title="a"), Doc(title="b")],
        rooms={"main": Doc(title="m")},
    )


class Calls:
    """A callback that records (old, new) and the state's version at the call."""

    def __init__(self, state: AppState[Any] | None = None) -> None:
        self.state = state
        self.calls: list[tuple[Any, Any]] = []
        self.versions: list[int] = []

    def __call__(self, old: Any, new: Any) -> None:
        self.calls.append((old, new))
        if self.state is not None:
            self.versions.append(self.state.version)


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def state() -> Any:
    with AppState(editor(), frame=0, max_frame=0) as state:  # every update applied on its call
        yield state


# -- which subscribers, when, with what ----------------------------------------------------


def test_a_path_subscriber_gets_the_old_and_new_values(state: AppState[Editor]) -> None:
    title = Calls(state)
    state.subscribe("doc.title", title)
    state.set("doc.title", "One")
    state.set("doc.title", "Two", priority=CRITICAL)
    state.update(lambda d: setattr(d.doc, "title", "Three"))
    assert title.calls == [("Draft", "One"), ("One", "Two"), ("Two", "Three")]
    assert title.versions == [1, 2, 3]


def test_only_subscribers_of_the_changed_part_are_called(state: AppState[Editor]) -> None:
    calls = {
        path: Calls()
        for path in [
            "doc.title",
            "doc.paragraphs",
            "meters.left",
            "meters.right",
            "cursor",
            "cursor.line",
            "cursor.column",
            "docs",
            "docs.1.title",
            "rooms.main",
        ]
    }
    for path, callback in calls.items():
        state.subscribe(path, callback)

    def called() -> set[str]:
        found = {path for path, callback in calls.items() if callback.calls}
        for callback in calls.values():
            callback.calls.clear()
        return found

    state.set("cursor.column", 3)
    assert called() == {"cursor", "cursor.column"}
    state.set("meters.left", 0.0)
    assert called() == {"meters.left"}
    state.set("meters.new", 1.0)
    assert called() == set()
    state.set("docs.1.title", "B")
    assert called() == {"docs", "docs.1.title"}
    state.set("docs.0.title", "A")
    assert called() == {"docs"}
    state.set("doc", Doc(title="Draft", paragraphs=["other"]))  # the title is equal
    assert called() == {"doc.paragraphs"}
    state.set("rooms.main.paragraphs", ["p"])
    assert called() == {"rooms.main"}
    assert state.stats().counters.callbacks == 8


def test_a_container_subscriber_sees_its_parts_change_and_a_part_subscriber_its_container(
    state: AppState[Editor],
) -> None:
    doc, title = Calls(), Calls()
    state.subscribe("doc", doc)
    state.subscribe("doc.title", title)
    state.set("doc.title", "New")
    assert [(old.title, new.title) for old, new in doc.calls] == [("Draft", "New")]
    state.set("doc", {"title": "Whole", "paragraphs": []})
    assert title.calls == [("Draft", "New"), ("New", "Whole")]
    assert len(doc.calls) == 2


def test_a_batch_calls_each_subscriber_once_with_the_first_and_last_values(
    state: AppState[Editor],
) -> None:
    doc, title, line = Calls(state), Calls(state), Calls(state)
    state.subscribe("doc", doc)
    state.subscribe("doc.title", title)
    state.subscribe("cursor.line", line)
    with state.batch() as draft:
        for n in range(5):
            draft.doc.title = f"t{n}"
            draft.doc.paragraphs.append(f"p{n}")
        state.set("doc.title", "last")
    assert title.calls == [("Draft", "last")] and title.versions == [1]
    assert len(doc.calls) == 1 and doc.calls[0][1].paragraphs[-1] == "p4"
    assert line.calls == []

    def move(draft: Any) -> None:
        for n in range(10):
            draft.cursor.line = n

    state.update(move)
    assert line.calls == [(0, 9)] and line.versions == [2]


def test_an_equal_value_does_not_call(state: AppState[Editor]) -> None:
    cursor, title, meters = Calls(), Calls(), Calls()
    state.subscribe("cursor", cursor)
    state.subscribe("doc.title", title)
    state.subscribe("meters", meters)
    state.set("cursor", Cursor(line=1))
    state.set("cursor", Cursor(line=1))  # a new value, equal
    state.set("doc.title", "".join(["Dr", "aft"]))  # equal, not the same object
    state.set("meters", {"left": -12, "right": -9.5})
    state.update(lambda d: setattr(d.cursor, "line", 1))
    assert len(cursor.calls) == 1 and title.calls == [] and meters.calls == []
    assert state.version == 5
    assert state.stats().counters.callbacks == 1


def test_undo_and_redo_call_with_the_values_they_bring_back(state: AppState[Editor]) -> None:
    title = Calls()
    state.subscribe("doc.title", title)
    state.set("doc.title", "One")
    state.undo()
    state.redo()
    assert title.calls == [("Draft", "One"), ("One", "Draft"), ("Draft", "One")]


def test_a_subscriber_of_an_int_key_is_called_for_either_path_form() -> None:
    class Counts(BaseModel):
        by_id: dict[int, str] = {}

    with AppState(Counts, frame=0, max_frame=0) as state:
        calls = Calls()
        state.subscribe("by_id.7", calls)
        state.set(("by_id", 7), "seven")
        state.set("by_id.7", "SEVEN")
        state.set("by_id.8", "eight")
        assert calls.calls == [(None, "seven"), ("seven", "SEVEN")]


def test_setting_an_item_by_a_negative_index_calls_its_subscribers(
    state: AppState[Editor],
) -> None:
    last = Calls()
    state.subscribe("docs.1.title", last)
    state.set("docs.-1.title", "by -1")
    assert state.value.docs[1].title == "by -1"
    assert last.calls == [("b", "by -1")]


# -- wildcards ------------------------------------------------------------------------------


def test_a_wildcard_gives_the_entries_that_changed_added_or_removed(
    state: AppState[Editor],
) -> None:
    meters = Calls()
    state.subscribe("meters.*", meters)
    state.set("meters.left", -6.0)
    state.set("meters.center", 0.0)
    state.delete("meters.right")
    state.set("doc.title", "elsewhere")
    state.set("meters.left", -6.0)  # equal
    assert meters.calls == [
        ({"left": -12.0}, {"left": -6.0}),
        ({}, {"center": 0.0}),
        ({"right": -9.5}, {}),
    ]


def test_a_wildcard_is_called_once_for_a_batch_of_entries(state: AppState[Editor]) -> None:
    meters = Calls(state)
    state.subscribe("meters.*", meters)
    with state.batch() as draft:
        draft.meters["left"] = 1.0
        draft.meters["left"] = 2.0
        draft.meters["new"] = 3.0
        del draft.meters["right"]
    assert meters.calls == [({"left": -12.0, "right": -9.5}, {"left": 2.0, "new": 3.0})]
    assert meters.versions == [1]


def test_a_wildcard_compares_entries_when_the_whole_dict_is_replaced(
    state: AppState[Editor],
) -> None:
    meters = Calls()
    state.subscribe("meters.*", meters)
    state.set("meters", {"left": -12.0, "right": -9.5})  # the same entries
    assert meters.calls == []
    state.set("meters", {"left": -12.0, "other": 1.0})
    assert meters.calls == [({"right": -9.5}, {"other": 1.0})]
    state.update(lambda d: Editor())  # the whole state replaced
    assert meters.calls[-1] == ({"left": -12.0, "other": 1.0}, {})


def test_a_wildcard_in_the_middle_of_a_path(state: AppState[Editor]) -> None:
    titles, items = Calls(), Calls()
    state.subscribe("rooms.*.title", titles)
    state.subscribe("docs.*.title", items)
    state.set("rooms.main.title", "M")
    state.set("rooms.side", Doc(title="s"))
    state.set("rooms.side.paragraphs", ["not a title"])
    state.set("docs.0.title", "A")
    state.update(lambda d: d.docs.append(Doc(title="c")))
    assert titles.calls == [({"main": "m"}, {"main": "M"}), ({}, {"side": "s"})]
    assert items.calls == [({0: "a"}, {0: "A"}), ({}, {2: "c"})]


# -- selector functions ----------------------------------------------------------------------


def test_a_selector_runs_only_when_a_part_it_read_changed(state: AppState[Editor]) -> None:
    runs: list[int] = []

    def title_of(snapshot: Any) -> Any:
        runs.append(1)
        return snapshot.doc.title

    title = Calls()
    state.subscribe(title_of, title)
    assert len(runs) == 1  # run once at subscribe
    for n in range(20):
        state.set(("meters", f"m{n}"), float(n))
        state.set("cursor.line", n)
    state.set("doc.paragraphs", ["p"])
    state.update(lambda d: d.docs.append(Doc()))
    assert len(runs) == 1
    state.set("doc.title", "New")
    assert len(runs) == 2 and title.calls == [("Draft", "New")]
    state.set("doc", Doc(title="New"))  # its container replaced: run, equal, not called
    assert len(runs) == 3 and len(title.calls) == 1


def test_a_selector_of_a_computed_value(state: AppState[Editor]) -> None:
    count, double = Calls(), Calls()
    state.subscribe(lambda s: len(s.doc.paragraphs), count)
    state.subscribe(lambda s: s.cursor.line * 2, double)
    state.update(lambda d: d.doc.paragraphs.append("two"))
    state.set("doc.paragraphs.0", "ONE")  # the same length
    state.set("cursor.line", 4)
    state.set("cursor.column", 4)
    assert count.calls == [(1, 2)]
    assert double.calls == [(0, 8)]


def test_a_conditional_selector_is_tracked_again_on_each_run(state: AppState[Editor]) -> None:
    runs: list[int] = []

    def watched(snapshot: Any) -> Any:
        runs.append(1)
        if snapshot.cursor.line > 0:
            return snapshot.meters.get("left")
        return snapshot.doc.title

    calls = Calls()
    state.subscribe(watched, calls)
    state.set("meters.left", 1.0)  # not read yet
    assert len(runs) == 1 and calls.calls == []
    state.set("cursor.line", 1)  # now it reads meters.left, not doc.title
    assert len(runs) == 2 and calls.calls == [("Draft", 1.0)]
    state.set("doc.title", "no longer read")
    assert len(runs) == 2
    state.set("meters.left", 2.0)
    assert len(runs) == 3 and calls.calls == [("Draft", 1.0), (1.0, 2.0)]
    state.set("cursor.line", 0)  # back to doc.title
    assert calls.calls == [("Draft", 1.0), (1.0, 2.0), (2.0, "no longer read")]
    runs.clear()
    state.set("meters.left", 3.0)
    assert runs == []


def test_a_selector_returning_a_new_equal_list_is_not_called(state: AppState[Editor]) -> None:
    calls = Calls()
    state.subscribe(lambda s: [d.title for d in s.docs], calls)
    state.set("docs", [{"title": "a"}, {"title": "b"}])
    assert calls.calls == []
    state.set("docs.1.title", "B")
    assert calls.calls == [(["a", "b"], ["a", "B"])]


# -- cancelling --------------------------------------------------------------------------------


def test_cancel_and_unsubscribe_stop_the_calls(state: AppState[Editor]) -> None:
    title, line, runs = Calls(), Calls(), []

    def line_of(snapshot: Any) -> Any:
        runs.append(1)
        return snapshot.cursor.line

    first = state.subscribe("doc.title", title)
    second = state.subscribe(line_of, line)
    assert state.stats().subscriptions == 2
    assert first.cancel() is True and first.cancel() is False
    assert state.unsubscribe(second) is True and state.unsubscribe(second) is False
    assert state.stats().subscriptions == 0
    state.set("doc.title", "x")
    state.set("cursor.line", 5)
    assert title.calls == [] and line.calls == [] and runs == [1]


def test_a_subscription_as_a_context_manager(state: AppState[Editor]) -> None:
    title = Calls()
    with state.subscribe("doc.title", title):
        state.set("doc.title", "inside")
    state.set("doc.title", "outside")
    assert title.calls == [("Draft", "inside")]


def test_a_callback_may_cancel_its_own_subscription(state: AppState[Editor]) -> None:
    calls: list[Any] = []
    subscriptions: list[Any] = []

    def once(old: Any, new: Any) -> None:
        calls.append(new)
        subscriptions[0].cancel()

    subscriptions.append(state.subscribe("cursor.line", once))
    state.set("cursor.line", 1)
    state.set("cursor.line", 2)
    assert calls == [1]


# -- failures ------------------------------------------------------------------------------


def test_a_failing_callback_is_isolated_logged_and_counted(
    state: AppState[Editor], caplog: pytest.LogCaptureFixture
) -> None:
    before, after = Calls(), Calls()

    def broken(old: Any, new: Any) -> None:
        raise RuntimeError(f"broken at {new}")

    state.subscribe("doc.title", before)
    failing = state.subscribe("doc.title", broken)
    state.subscribe("doc.title", after)
    with caplog.at_level(logging.ERROR, logger="statekeep.state"):
        state.set("doc.title", "One")
        state.set("doc.title", "Two", priority=CRITICAL)
    assert before.calls == after.calls == [("Draft", "One"), ("One", "Two")]
    assert state.value.doc.title == "Two" and state.version == 2
    assert failing.failed == 2
    assert state.stats().counters.callbacks_failed == 2
    failures = [r for r in caplog.records if r.name == "statekeep.state"]
    assert len(failures) == 2 and all(r.exc_info for r in failures)
    assert "broken at Two" in caplog.text


def test_a_failing_selector_is_isolated_and_runs_again_later(
    state: AppState[Editor], caplog: pytest.LogCaptureFixture
) -> None:
    state.set("cursor.line", 1)
    inverse, line = Calls(), Calls()
    failing = state.subscribe(lambda s: 12 // s.cursor.line, inverse)
    state.subscribe("cursor.line", line)
    with caplog.at_level(logging.ERROR, logger="statekeep.state"):
        state.set("cursor.line", 0)
    assert line.calls == [(1, 0)] and inverse.calls == []
    assert failing.failed == 1 and state.stats().counters.callbacks_failed == 1
    assert "ZeroDivisionError" in caplog.text
    state.set("cursor.line", 4)
    assert inverse.calls == [(12, 3)]


# -- callbacks that change the state ----------------------------------------------------------


def test_an_update_made_by_a_callback_comes_after_the_versions_callbacks(
    state: AppState[Editor],
) -> None:
    seen_by_second: list[Any] = []

    def follow(old: Any, new: Any) -> None:
        state.set("doc.title", f"line {new}")

    state.subscribe("cursor.line", follow)
    state.subscribe("cursor.line", lambda o, n: seen_by_second.append(state.value.doc.title))
    titles = Calls(state)
    state.subscribe("doc.title", titles)
    state.set("cursor.line", 3)
    assert seen_by_second == ["Draft"]  # not yet applied while the callbacks ran
    assert state.value.doc.title == "line 3"
    assert state.version == 2 and titles.versions == [2]


def test_an_update_made_by_a_callback_of_a_critical_set_is_applied(
    state: AppState[Editor],
) -> None:
    state.subscribe("cursor.line", lambda o, n: state.set("doc.title", f"line {n}"))
    state.set("cursor.line", 3, priority=CRITICAL)
    assert state.value.doc.title == "line 3"
    assert state.version == 2


def test_an_update_made_by_a_callback_of_a_version_the_timer_made_is_applied() -> None:
    clock = FakeClock(auto=False)
    with AppState(editor(), clock=clock) as state:
        state.subscribe("cursor.line", lambda o, n: state.set("doc.title", f"line {n}"))
        state.set("cursor.line", 1)  # at once
        assert state.value.doc.title == "line 1"
        state.set("cursor.line", 2)  # waits for its frame: the timer thread applies it
        clock.advance(0.2)
        assert eventually(lambda: state.value.cursor.line == 2)
        assert eventually(lambda: state.value.doc.title == "line 2", timeout=1.0)


def test_a_callback_keeping_a_value_in_bounds_settles(state: AppState[Editor]) -> None:
    def clamp(old: Any, new: Any) -> None:
        if new > 10:
            state.set("cursor.line", 10)

    state.subscribe("cursor.line", clamp)
    state.set("cursor.line", 15)
    assert state.value.cursor.line == 10 and state.version == 2


# -- coroutine callbacks ----------------------------------------------------------------------


def test_coroutine_callbacks_run_on_the_loop_they_subscribed_from(
    state: AppState[Editor],
) -> None:
    async def main() -> tuple[int, list[tuple[Any, Any, int]]]:
        got: list[tuple[Any, Any, int]] = []
        done = asyncio.Event()

        async def on_line(old: Any, new: Any) -> None:
            got.append((old, new, threading.get_ident()))
            if new == 3:
                done.set()

        state.subscribe("cursor.line", on_line)

        def from_another_thread() -> None:
            for line in (1, 2, 3):
                state.set("cursor.line", line, priority=CRITICAL)

        await asyncio.to_thread(from_another_thread)
        await asyncio.wait_for(done.wait(), 5)
        return threading.get_ident(), got

    loop_thread, got = asyncio.run(main())
    assert [(old, new) for old, new, _ in got] == [(0, 1), (1, 2), (2, 3)]
    assert {thread for _, _, thread in got} == {loop_thread}


def test_an_object_with_a_coroutine_call_runs_on_its_loop(state: AppState[Editor]) -> None:
    class Listener:
        def __init__(self) -> None:
            self.done = asyncio.Event()
            self.thread = 0

        async def __call__(self, old: Any, new: Any) -> None:
            self.thread = threading.get_ident()
            self.done.set()

    async def main() -> tuple[int, int]:
        listener = Listener()
        state.subscribe("doc.title", listener)
        await asyncio.to_thread(state.set, "doc.title", "x")
        await asyncio.wait_for(listener.done.wait(), 5)
        return threading.get_ident(), listener.thread

    loop_thread, called_on = asyncio.run(main())
    assert called_on == loop_thread


def test_a_failing_coroutine_callback_is_logged_and_counted(
    state: AppState[Editor], caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> Any:
        done = asyncio.Event()

        async def broken(old: Any, new: Any) -> None:
            done.set()
            raise RuntimeError("async broken")

        sub = state.subscribe("doc.title", broken)
        state.set("doc.title", "x")
        await asyncio.wait_for(done.wait(), 5)
        for _ in range(10):
            await asyncio.sleep(0)
        return sub

    with caplog.at_level(logging.ERROR, logger="statekeep.state"):
        sub = asyncio.run(main())
    assert "async broken" in caplog.text
    assert sub.failed == 1
    assert state.stats().counters.callbacks_failed == 1


# -- threads ---------------------------------------------------------------------------------


def test_threads_updating_at_once_lose_nothing_and_subscribers_see_versions_in_order() -> None:
    threads_n, each = 6, 150
    with AppState(Editor, frame=0.002, max_frame=0.01) as state:
        total, counts, versions = Calls(state), Calls(state), Calls(state)
        state.subscribe("total", total)
        state.subscribe("counts.*", counts)
        state.subscribe(lambda s: s.total, versions)
        start = threading.Barrier(threads_n)

        def work(n: int) -> None:
            key = f"t{n}"
            start.wait()
            for i in range(each):

                def add(draft: Any) -> None:
                    draft.total += 1
                    draft.counts[key] = draft.counts.get(key, 0) + 1

                state.update(add, priority=CRITICAL if i % 10 == 0 else NORMAL)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        state.flush()
        assert state.value.total == threads_n * each
        assert dict(state.value.counts) == {f"t{n}": each for n in range(threads_n)}
        for calls in (total, versions):
            assert calls.versions == sorted(set(calls.versions))  # increasing, once each
            assert [new for _, new in calls.calls] == sorted({new for _, new in calls.calls})
            assert all(
                previous[1] == current[0]
                for previous, current in zip(calls.calls, calls.calls[1:], strict=False)
            )
            assert calls.calls[-1][1] == threads_n * each
        assert counts.versions == sorted(set(counts.versions))
        assert state.stats().counters.updates_applied == threads_n * each
