"""statekeep.flow.Pipeline: stages in the declared order, a handle of each
item's final outcome, per-key debouncing into batches, a breaker that fails
items fast, one stats() and one close()."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from statekeep.errors import CircuitOpenError, ConfigurationError, FlowClosedError
from statekeep.flow import FakeClock, Pipeline


def test_debounce_per_key_then_batch_sends_the_last_item_of_each_burst() -> None:
    batches: list[list[tuple[str, int]]] = []
    lock = threading.Lock()

    def store(items: list[tuple[str, int]]) -> list[str]:
        with lock:
            batches.append(list(items))
        return [f"{key}:{n}" for key, n in items]

    pipeline = (
        Pipeline("ingest")
        .debounce(wait=0.05, key=lambda item: item[0])
        .batch(store, max_size=10, max_delay=0.01)
    )
    handles = [pipeline.put((key, n)) for n in range(20) for key in ("a", "b", "c")]
    results = [h.result(10) for h in handles]
    pipeline.close()
    sent = sorted(item for batch in batches for item in batch)
    assert sent == [("a", 19), ("b", 19), ("c", 19)]
    assert set(results) == {"a:19", "b:19", "c:19"}  # folded items get the one that went on
    stats = pipeline.stats()
    assert stats["debounce"].counts["calls"] == 60
    assert stats["batch"].counts["succeeded"] == 3


def test_map_and_each_fail_only_the_item_that_failed() -> None:
    seen: list[int] = []

    def keep(n: int) -> int:
        if n == 3:
            raise ValueError("three")
        seen.append(n)
        return n

    pipeline = Pipeline().map(lambda n: n * 2).map(lambda n: n - 3).each(keep)
    handles = pipeline.put_many(range(5))
    with pytest.raises(ValueError, match="three"):
        handles[3].result(1)
    assert [h.result(1) for i, h in enumerate(handles) if i != 3] == [-3, -1, 1, 5]
    assert seen == [-3, -1, 1, 5]


def test_the_throttle_stage_keeps_its_rate() -> None:
    clock = FakeClock()
    pipeline = Pipeline().throttle(rate=10, burst=2, clock=clock).each(lambda item: clock.now())
    moments = [pipeline.put(i).result(1) for i in range(6)]
    assert moments == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3, 0.4])


def test_a_breaker_stage_fails_items_fast_once_the_batches_keep_failing() -> None:
    calls = 0

    def down(items: list[int]) -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("the sink is down")

    clock = FakeClock()
    pipeline = (
        Pipeline().breaker(3, reset_timeout=60, clock=clock).batch(down, max_size=1, max_delay=0.0)
    )
    for n in range(3):
        with pytest.raises(ConnectionError):
            pipeline.put(n).result(5)
    deadline = time.monotonic() + 5
    while pipeline.stats()["breaker"].counts["opened"] < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(CircuitOpenError):
        pipeline.put(99).result(5)
    assert calls == 3  # the fourth never reached the sink
    pipeline.close()


def test_close_drains_every_part_and_refuses_later_puts() -> None:
    stored: list[int] = []
    pipeline = (
        Pipeline()
        .debounce(wait=60.0)  # only close() ends the burst
        .batch(lambda items: stored.extend(items), max_size=100, max_delay=60.0)
    )
    handle = pipeline.put(1)
    pipeline.put(2)
    pipeline.close()
    assert stored == [2] and handle.result(5) is None
    with pytest.raises(FlowClosedError):
        pipeline.put(3)
    pipeline.close()  # twice: nothing more


def test_a_table_of_every_part() -> None:
    from rich.console import Console

    pipeline = Pipeline("shown").throttle(rate=1000).batch(lambda items: None, max_delay=0.0)
    pipeline.put(1).result(5)
    console = Console(record=True, width=100)
    console.print(pipeline.table())
    text = console.export_text()
    assert "throttle" in text and "batch" in text and "admitted" in text
    pipeline.close()


@pytest.mark.parametrize(
    "build",
    [
        lambda: Pipeline(3),  # type: ignore[arg-type]
        lambda: Pipeline().map(3),  # type: ignore[arg-type]
        lambda: Pipeline().each(None),  # type: ignore[arg-type]
        lambda: Pipeline().debounce(wait=-1),
        lambda: Pipeline().debounce(key=3),  # type: ignore[arg-type]
        lambda: Pipeline().throttle(rate=0),
        lambda: Pipeline().breaker(0),
        lambda: Pipeline().batch(print, max_size=0),
        lambda: Pipeline().each(print).map(print),
        lambda: Pipeline().map(print).put(1),
    ],
)
def test_bad_declarations_are_configuration_errors(build: Any) -> None:
    with pytest.raises(ConfigurationError):
        build()
