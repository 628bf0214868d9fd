# mypy: ignore-errors
"""Attacks on statekeep.flow by a hostile new user. Each test named for a
defect failed when it was written (its docstring says how); all are fixed
(two by refusing the configuration instead: a rate too small to count, and
retries with neither an attempt limit nor a backoff). The others are cheap
regression checks of attacks that found nothing."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from typing import Any

import pytest

import statekeep
from conformance.models import Todo
from statekeep.errors import (
    CircuitOpenError,
    ConfigurationError,
    ConflictError,
    StatekeepError,
    ThrottledError,
    TransientBackendError,
)
from statekeep.flow import (
    AsyncDebounce,
    Batcher,
    CircuitBreaker,
    CircuitState,
    Debounce,
    FakeClock,
    Handle,
    Retry,
    Throttle,
    debounce,
)


class Stop(BaseException):
    """A BaseException that is not a cancellation (think SystemExit)."""


def _in_thread(fn: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(("ok", fn()))
        except BaseException as exc:  # noqa: BLE001
            out.append(("raised", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


# -- Throttle -------------------------------------------------------------------


def test_a_tiny_rate_is_still_a_limit() -> None:
    """rate=1e-310: per / rate is inf, (burst - 1) * inf is NaN, and every
    comparison with NaN admitted: the throttle admitted everything. Fixed:
    a rate whose interval a float cannot hold is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="too small"):
        Throttle(rate=1e-310, clock=FakeClock())
    throttle = Throttle(rate=1e-300, clock=FakeClock())  # tiny, but countable
    assert sum(throttle.try_acquire() for _ in range(5)) == 1


@pytest.mark.timeout(30)
def test_a_short_cool_down_does_not_double_the_queue() -> None:
    """cool_down(0) while 30 callers wait (one each 10 ms): each waiter wakes
    at its old moment, sees the epoch moved, and books again behind the whole
    queue, so the last one goes at ~0.6 s instead of ~0.3 s."""
    throttle = Throttle(rate=100)  # 10 ms apart
    admitted: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def one() -> None:
            await throttle.acquire_async()
            admitted.append(loop.time() - start)

        tasks = [asyncio.create_task(one()) for _ in range(30)]
        await asyncio.sleep(0)  # every one has booked its moment
        throttle.cool_down(0.0)
        await asyncio.gather(*tasks)

    asyncio.run(main())
    assert max(admitted) < 0.45, max(admitted)


@pytest.mark.timeout(30)
def test_a_throttled_async_generator_does_not_block_the_loop() -> None:
    """@Throttle on an async generator function gets the sync wrapper:
    calling it runs `with throttle:` (time.sleep) on the event loop."""
    throttle = Throttle(rate=2, burst=1)

    @throttle
    async def numbers():
        yield 1

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for _ in range(3):
            async for _n in numbers():
                pass
            await asyncio.sleep(0)
        # 3 calls at 2/s need ~1 s; but the loop must stay free meanwhile
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        began = loop.time()
        gen = numbers()  # would block the loop ~0.5 s here
        blocked = loop.time() - began
        task.cancel()
        await gen.aclose()
        del start
        return blocked

    blocked = asyncio.run(main())
    assert blocked < 0.1, f"the event loop was blocked {blocked:.2f} s"


@pytest.mark.timeout(30)
def test_max_concurrent_on_a_generator_function_holds_while_it_runs() -> None:
    """@Throttle(max_concurrent=1) on a generator function releases the slot
    when the generator object is made, before its body runs: two bodies run
    at once."""
    throttle = Throttle(max_concurrent=1)
    inside = 0
    most = 0
    lock = threading.Lock()

    @throttle
    def rows():
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        time.sleep(0.05)
        yield 1
        with lock:
            inside -= 1

    threads = [threading.Thread(target=lambda: list(rows())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert most == 1


def test_throttle_regressions_that_held() -> None:
    """for_key under threads, release() misuse, timeouts: what held."""
    parent = Throttle(rate=1000, burst=5, max_keys=4, clock=FakeClock())
    seen: list[Throttle] = []

    def grab() -> None:
        for i in range(200):
            seen.append(parent.for_key(i % 3))

    threads = [threading.Thread(target=grab) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(t) for t in seen}) == 3
    capped = Throttle(max_concurrent=1)
    capped.acquire()
    with pytest.raises(ThrottledError):
        capped.acquire(timeout=0.01)
    capped.release()
    with pytest.raises(ConfigurationError):
        capped.release()
    with pytest.raises(ConfigurationError):
        Throttle(rate=1).acquire(timeout=-1)


# -- Retry ------------------------------------------------------------------------


def test_the_deadline_counts_from_the_first_try() -> None:
    """The deadline is measured from the end of the first (failed) call,
    not from its start: a first try that took 10 s still gets retried under
    deadline=5 ("the next try would start after deadline seconds from the
    first")."""
    clock = FakeClock()
    calls = 0

    def slow_failure() -> None:
        nonlocal calls
        calls += 1
        clock.advance(10)
        raise ValueError("slow")

    retry = Retry(5, deadline=5, backoff=None, clock=clock)
    with pytest.raises(ValueError):
        retry.call(slow_failure)
    assert calls == 1


def test_a_deadline_on_the_fake_clock_ends_without_backoff() -> None:
    """Retry(None, deadline=5, backoff=None) on a FakeClock: nothing moved
    the fake time, so it retried for ever (on the real clock, it spins until
    the deadline). Fixed: no attempt limit needs a backoff as well."""
    with pytest.raises(ConfigurationError, match="backoff"):
        Retry(None, deadline=5, backoff=None, retry_on=ValueError, clock=FakeClock())


def test_retry_regressions_that_held() -> None:
    """on_retry raising, a when raising, async cancellation mid-backoff."""

    def boom(*_: Any) -> bool:
        raise RuntimeError("callback")

    with pytest.raises(RuntimeError):
        Retry(3, backoff=None, on_retry=boom).call(lambda: 1 / 0)

    retry = Retry(3, backoff=5.0)
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise ValueError

    async def main() -> None:
        task = asyncio.create_task(retry.call_async(failing))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert calls == 1


# -- CircuitBreaker -----------------------------------------------------------------


def test_a_breaker_on_a_generator_counts_failures_while_iterating() -> None:
    """@breaker on a generator function guards only making the generator:
    failures raised while iterating never count, so it never opens."""
    breaker = CircuitBreaker(2, clock=FakeClock())

    @breaker
    def rows():
        raise ConnectionError("down")
        yield 1

    for _ in range(2):
        with pytest.raises(ConnectionError):
            list(rows())
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitOpenError):  # fails fast now
        list(rows())


def test_breaker_probe_regressions_that_held() -> None:
    """A probe cancelled or interrupted by a BaseException frees its place."""
    clock = FakeClock()
    breaker = CircuitBreaker(1, reset_timeout=1, clock=clock)
    breaker.trip()
    clock.advance(1)

    def interrupted() -> None:
        raise Stop

    with pytest.raises(Stop):
        breaker.call(interrupted)
    assert breaker.call(lambda: "fine") == "fine"
    assert breaker.state is CircuitState.CLOSED


# -- Debounce -------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_base_exception_in_fn_does_not_kill_the_debounce_thread() -> None:
    """fn raising a BaseException on the debounce's thread ends that thread;
    root._thread still points at it, so no later call is ever invoked."""
    calls: list[int] = []

    def fn(n: int) -> int:
        calls.append(n)
        if n == 1:
            raise Stop
        return n

    debounced = Debounce(fn, wait=0.01)
    debounced(1)
    time.sleep(0.3)
    handle = debounced(2)
    try:
        assert handle.result(timeout=3) == 2
    finally:
        debounced.cancel()


@pytest.mark.timeout(30)
def test_a_method_debounce_is_per_instance_even_when_an_id_is_reused() -> None:
    """@debounce on a method keys each instance by id(obj): a new object that
    reuses a dead one's id joins its open period; with leading only, its
    call folds into the dead object's invocation and never runs."""

    class Doc:
        def __init__(self) -> None:
            self.n = 0

        @debounce(wait=30, leading=True, trailing=False)
        def touch(self) -> None:
            self.n += 1

    first = Doc()
    first.touch()
    old = id(first)
    del first
    gc.collect()
    again = None
    keep = []
    for _ in range(10_000):
        candidate = Doc()
        if id(candidate) == old:
            again = candidate
            break
        keep.append(candidate)
    if again is None:
        pytest.skip("no id reused")
    again.touch()
    try:
        assert again.n == 1
    finally:
        Doc.touch.close()


@pytest.mark.timeout(30)
def test_async_debounce_close_waits_for_a_running_invocation() -> None:
    """AsyncDebounce.close() says it "waits for running invocations", but it
    cancels them: an invocation in progress is cut short, its handle
    cancelled."""
    finished: list[int] = []

    async def save(n: int) -> int:
        await asyncio.sleep(0.05)
        finished.append(n)
        return n

    async def main() -> None:
        debounced = AsyncDebounce(save, wait=0.01, leading=True)
        handle = debounced(1)
        await asyncio.sleep(0.01)  # the leading invocation is running
        await debounced.close()
        assert finished == [1]
        assert await handle == 1

    asyncio.run(main())


def test_debounce_regressions_that_held() -> None:
    """An Exception in fn reaches the handle; close() from fn itself; keys."""
    clock = FakeClock(auto=False)
    out: list[int] = []
    debounced = Debounce(lambda n: out.append(n) or n, wait=1, max_wait=2, clock=clock)
    handles = [debounced.for_key(k)(k) for k in range(50)]
    clock.advance(1)
    assert [h.result(timeout=5) for h in handles] == list(range(50))
    debounced.close()


# -- Batcher ------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_process_raising_a_base_exception_settles_its_items() -> None:
    """process raising a BaseException (not Exception) skips the settling: the
    batch's handles never resolve, its concurrency slot is never given back,
    and close(timeout=) then hangs for ever (the workers never go idle)."""
    raised = []

    def process(items: list[int]) -> None:
        if not raised:
            raised.append(items)
            raise Stop

    batcher = Batcher(process, max_size=2, max_delay=0.01)  # caller_runs=True
    first = batcher.add(1)
    with pytest.raises(Stop):
        batcher.add(2)  # fills the batch: this thread processes it
    assert first.done(), "the batch's other handle never resolves"
    later = batcher.add(3)
    thread, _ = _in_thread(lambda: batcher.close(timeout=1))
    thread.join(5)
    assert not thread.is_alive(), "close(timeout=1) hangs"
    assert later.done()


@pytest.mark.timeout(30)
def test_close_honours_its_timeout() -> None:
    """close(timeout=0.1) with a batch in flight: flush gives up after 0.1 s
    but close then joins the worker threads with no timeout, waiting for the
    whole batch (here, until the test lets it go)."""
    release = threading.Event()
    batcher = Batcher(lambda items: release.wait(10) and None, max_size=10, max_delay=0.0)
    batcher.add(1)
    time.sleep(0.1)  # the worker is processing it
    thread, out = _in_thread(lambda: batcher.close(timeout=0.1))
    thread.join(2)
    alive = thread.is_alive()
    release.set()
    thread.join(10)
    assert not alive, "close(timeout=0.1) still blocked after 2 s"
    assert out == [("ok", False)]


@pytest.mark.timeout(30)
def test_on_progress_raising_does_not_kill_the_worker() -> None:
    """An on_progress callback that raises ends the batcher's worker thread:
    a later item waiting for max_delay is never processed."""
    calls: list[int] = []

    def progress(settled: int) -> None:
        calls.append(settled)
        if len(calls) == 1:
            raise RuntimeError("progress bar broke")

    batcher = Batcher(lambda items: None, max_size=10, max_delay=0.01, on_progress=progress)
    batcher.add(1)
    time.sleep(0.3)
    later = batcher.add(2)
    try:
        assert later.result(timeout=3) is None
    finally:
        pass  # close() would hang: the worker is gone


@pytest.mark.timeout(30)
def test_a_retry_predicate_raising_does_not_lose_the_batch() -> None:
    """Retry(when=...) is called by the batcher with its lock held, inside
    the settling: when it raises, the batch is never settled (handles hang,
    the worker thread dies, _running stays 1)."""

    def when(exc: BaseException) -> bool:
        raise RuntimeError("predicate broke")

    def process(items: list[int]) -> None:
        raise ValueError("down")

    batcher = Batcher(process, max_size=10, max_delay=0.01, retry=Retry(3, backoff=None, when=when))
    handle = batcher.add(1)
    with pytest.raises(Exception):
        handle.result(timeout=3)


@pytest.mark.timeout(30)
def test_on_retry_may_look_at_the_batcher() -> None:
    """Retry's on_retry runs with the batcher's (non-reentrant) lock held:
    an on_retry that reads batcher.pending or stats() deadlocks the worker."""
    holder: list[Batcher] = []
    heard: list[int] = []
    failed_once: list[bool] = []

    def process(items: list[int]) -> list[Any]:
        if not failed_once:
            failed_once.append(True)
            return [ValueError("once")]
        return list(items)

    retry = Retry(3, backoff=None, on_retry=lambda exc, n: heard.append(holder[0].pending))
    batcher = Batcher(process, max_size=10, max_delay=0.01, retry=retry)
    holder.append(batcher)
    handle = batcher.add(7)
    assert handle.result(timeout=3) == 7  # TimeoutError: the worker is deadlocked


@pytest.mark.timeout(30)
def test_a_shed_items_done_callback_may_use_the_batcher() -> None:
    """shed_oldest fails the shed handle while holding the batcher's lock, so
    its done callbacks run under it: one that reads batcher.pending
    deadlocks the add() that shed it."""
    blocker = threading.Event()
    batcher3 = Batcher(
        lambda items: blocker.wait(10) and None,
        max_size=2,
        max_delay=0.0,
        max_pending=3,
        policy="shed_oldest",
        caller_runs=False,
    )
    in_flight = batcher3.add(0)  # taken at once by the worker, which blocks
    time.sleep(0.1)
    oldest = batcher3.add(1)
    batcher3.add(2)  # 3 pending (1 in flight + 2 waiting): full
    seen3: list[int] = []
    oldest.add_done_callback(lambda h: seen3.append(batcher3.pending))
    thread, _ = _in_thread(lambda: batcher3.add(3))  # sheds `oldest`
    thread.join(3)
    alive = thread.is_alive()
    if not alive:
        blocker.set()
    assert not alive, "add() deadlocked in the shed item's done callback"
    assert seen3 and in_flight is not None


@pytest.mark.timeout(30)
def test_a_done_callback_raising_does_not_strand_other_waiters() -> None:
    """settle_all wakes a batch's waiters one after another: a done callback
    that raises on one item's handle stops the loop, so a thread waiting on
    another item of the same batch is never woken (and the worker dies)."""
    batcher = Batcher(lambda items: None, max_size=10, max_delay=0.3, caller_runs=False)
    first = batcher.add(1)
    second = batcher.add(2)

    def bad(_: Handle) -> None:
        raise RuntimeError("callback broke")

    first.add_done_callback(bad)
    thread, out = _in_thread(lambda: second.result(timeout=3))
    thread.join(5)
    assert out == [("ok", None)], out


@pytest.mark.timeout(30)
def test_close_from_inside_process_does_not_hang() -> None:
    """close() called by process itself (on the batcher's thread, which close
    takes care not to join) waits in flush() for the batch it is part of:
    it never returns."""
    holder: list[Batcher] = []
    closed = threading.Event()

    def process(items: list[int]) -> None:
        holder[0].close()
        closed.set()

    batcher = Batcher(process, max_size=10, max_delay=0.01, caller_runs=False)
    holder.append(batcher)
    batcher.add(1)
    assert closed.wait(3), "close() inside process hangs"


@pytest.mark.timeout(30)
def test_a_bad_timeout_is_refused_and_adds_nothing() -> None:
    """add(item, timeout="soon") on the fast path is accepted (the timeout is
    only checked when add() must wait), and the item goes in."""
    processed: list[Any] = []
    batcher = Batcher(processed.extend, max_size=10, max_delay=0.01)
    with pytest.raises(ConfigurationError):
        batcher.add("x", timeout="soon")
    batcher.close(5)
    assert processed == []


def test_bad_input_gets_typed_errors() -> None:
    """Bare TypeErrors: FakeClock.set("1"), add_many(None), Batcher.map(.., None),
    Handle.add_done_callback(5) (raises later, in whoever settles it)."""
    problems = []
    cases = [
        ("FakeClock.set('1')", lambda: FakeClock().set("1")),
        ("Batcher.map(None)", lambda: Batcher.map(lambda xs: None, None)),
        ("add_done_callback(5)", lambda: Handle().add_done_callback(5)),
    ]
    for label, case in cases:
        try:
            case()
        except StatekeepError:
            continue
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{label}: {type(exc).__name__}")
            continue
        problems.append(f"{label}: accepted")
    assert problems == []


# -- store.batcher ----------------------------------------------------------------------------


def test_store_batcher_unknown_option_is_a_configuration_error() -> None:
    with statekeep.open("memory://") as store, pytest.raises(ConfigurationError):
        store.batcher(Todo, max_sise=10)


@pytest.mark.timeout(60)
def test_a_transient_error_in_the_one_by_one_fallback_saves_nothing_twice(store_url: str) -> None:
    """A batch with a stale entity falls back to saving one by one; a
    TransientBackendError there retries the whole batch, and the entities
    saved one by one before it are saved again (version 2, not 1)."""
    with statekeep.open(store_url) as store:
        stale = Todo(title="stale")
        store.save(stale)
        other = store.get(Todo, stale.id)
        store.save(other)  # `stale` is now a version behind
        good, late = Todo(title="good"), Todo(title="late")
        real_save = store.save
        failed: list[bool] = []

        def flaky_save(entity: Any) -> Any:
            if entity is late and not failed:
                failed.append(True)
                raise TransientBackendError("busy, once")
            return real_save(entity)

        store.save = flaky_save  # the fallback's one-by-one saves
        try:
            with store.batcher(
                Todo,
                max_size=3,
                max_delay=0.01,
                retry=Retry(5, backoff=None, retry_on=TransientBackendError),
            ) as batcher:
                handles = [batcher.add(e) for e in (good, stale, late)]
        finally:
            del store.save
        assert failed
        with pytest.raises(ConflictError):
            handles[1].result(5)
        assert handles[2].result(5).version == 1
        assert handles[0].result(5).version == 1
        assert store.get(Todo, good.id).version == 1


def test_a_rate_refusal_under_max_concurrent_says_when_to_retry() -> None:
    """Throttle(rate=1, max_concurrent=2): a caller refused by the rate (a
    slot was free) gets retry_after=None, because the refusal is built while
    its own concurrency slot is still held, so the throttle looks full."""
    throttle = Throttle(rate=1, max_concurrent=2, clock=FakeClock())
    throttle.acquire()
    with pytest.raises(ThrottledError) as refused:
        throttle.acquire(timeout=0.05)
    assert refused.value.retry_after is not None
    assert refused.value.retry_after == pytest.approx(1.0)
    assert throttle.stats().gauges["in_flight"] == 1


@pytest.mark.timeout(30)
def test_the_rate_holds_across_threads_and_several_loops() -> None:
    """Regression (held): 3 threads and 3 event loops of 10 tasks on one throttle."""
    throttle = Throttle(rate=200, burst=5)
    times: list[float] = []
    lock = threading.Lock()
    stop = time.monotonic() + 0.5

    def sync_worker() -> None:
        while time.monotonic() < stop:
            throttle.acquire()
            with lock:
                times.append(time.monotonic())

    def loop_worker() -> None:
        async def task() -> None:
            while time.monotonic() < stop:
                await throttle.acquire_async()
                with lock:
                    times.append(time.monotonic())

        async def main() -> None:
            await asyncio.gather(*(task() for _ in range(10)))

        asyncio.run(main())

    threads = [threading.Thread(target=sync_worker) for _ in range(3)]
    threads += [threading.Thread(target=loop_worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    times.sort()
    first = 0
    for last in range(len(times)):
        while times[last] - times[first] > 0.1:
            first += 1
        assert last - first + 1 <= 5 + 200 * 0.1 + 1


@pytest.mark.timeout(60)
def test_many_threads_adding_to_one_store_batcher(store_url: str) -> None:
    """Regression (held): 8 threads x 100 entities into one store.batcher."""
    with statekeep.open(store_url) as store:
        handles: list[Any] = []
        lock = threading.Lock()
        with store.batcher(Todo, max_size=37, max_delay=0.005) as batcher:

            def adder(n: int) -> None:
                mine = [batcher.add(Todo(title=f"{n}-{i}")) for i in range(100)]
                with lock:
                    handles.extend(mine)

            threads = [threading.Thread(target=adder, args=(n,)) for n in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        saved = [h.result(5) for h in handles]
        assert len({t.id for t in saved}) == 800
        assert all(t.version == 1 for t in saved)
        assert store.count(Todo) == 800


def test_a_busy_key_is_kept_while_an_idle_one_can_go() -> None:
    """for_key() eviction looks at only the 8 least recently used keys: with
    those 8 busy and an idle key behind them, it drops a busy one, whose
    spent budget is forgotten (a fresh burst: the key's rate is exceeded)."""
    throttle = Throttle(rate=1, max_keys=10, clock=FakeClock())
    for key in range(9):
        assert throttle.for_key(key).try_acquire()  # spent: state to keep
    throttle.for_key("idle")
    throttle.for_key("new")  # one must go: "idle keys are forgotten first"
    assert not throttle.for_key(0).try_acquire()


@pytest.mark.timeout(30)
def test_a_new_key_beyond_max_keys_is_not_forgotten_at_once() -> None:
    """for_key() beyond max_keys evicts the first idle key among the 16
    oldest, and the key just made (no period yet) counts as idle: with the
    older keys busy, the new child is dropped from the family as it is
    returned. Its burst then splits over two children (two invocations),
    and close() never flushes the orphan: its handle never settles."""
    clock = FakeClock(auto=False)
    calls: list[tuple[str, int]] = []
    debounced = Debounce(lambda key, n: calls.append((key, n)), wait=1, max_keys=2, clock=clock)
    debounced.for_key("a")("a", 0)
    debounced.for_key("b")("b", 0)  # both busy
    first = debounced.for_key("c")("c", 1)
    second = debounced.for_key("c")("c", 2)  # same key, same burst
    assert first is second, "one burst of key c, two invocations"
    debounced.close()
    assert first.done(), "close() left key c's call pending"
    assert sorted(calls) == [("a", 0), ("b", 0), ("c", 2)]
