"""statekeep.flow.Retry as users meet it: a decorator, sync and async, its
stop rules, its statistics under threads, and bad input."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from statekeep.errors import ConfigurationError, TransientBackendError
from statekeep.flow import Backoff, FakeClock, Retry


class Flaky:
    """Fails `failures` times with `error`, then returns "ok"."""

    def __init__(self, failures: int, error: type[Exception] = TransientBackendError) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self, *args: Any) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return "ok"


def test_a_decorated_function_is_tried_again_with_growing_waits() -> None:
    clock = FakeClock()
    flaky = Flaky(3)
    retry = Retry(5, backoff=Backoff(base=1.0, cap=10.0), clock=clock)
    wrapped = retry(flaky)
    assert wrapped() == "ok"
    assert flaky.calls == 4
    assert clock.now() == 1 + 2 + 4
    counts = retry.stats().counts
    assert counts == {"calls": 1, "succeeded": 1, "retries": 3, "gave_up": 0, "not_retried": 0}


def test_it_gives_up_after_its_attempts_with_the_last_error() -> None:
    flaky = Flaky(10)
    retry = Retry(3, backoff=None)
    with pytest.raises(TransientBackendError, match="failure 3"):
        retry.call(flaky)
    assert flaky.calls == 3
    assert retry.stats().counts["gave_up"] == 1


def test_only_what_retry_on_and_when_allow_is_tried_again() -> None:
    retry = Retry(5, backoff=None, retry_on=TransientBackendError)
    flaky = Flaky(2, error=KeyError)
    with pytest.raises(KeyError):
        retry.call(flaky)
    assert flaky.calls == 1
    assert retry.stats().counts["not_retried"] == 1

    picky = Retry(5, backoff=None, when=lambda exc: "1" in str(exc))
    flaky = Flaky(5)
    with pytest.raises(TransientBackendError, match="failure 2"):
        picky.call(flaky)


def test_the_deadline_stops_before_a_wait_would_pass_it() -> None:
    clock = FakeClock()
    retry = Retry(None, backoff=Backoff(base=1.0, cap=1.0), deadline=3.5, clock=clock)
    flaky = Flaky(100)
    with pytest.raises(TransientBackendError):
        retry.call(flaky)
    assert flaky.calls == 4  # at 0, 1, 2 and 3; a fifth at 4 would pass 3.5
    assert clock.now() == 3.0


def test_async_functions_retry_on_the_loop() -> None:
    clock = FakeClock()
    retry = Retry(4, backoff=0.5, clock=clock)
    attempts = 0

    @retry
    async def fetch(x: int) -> int:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise TransientBackendError("busy")
        return x * 2

    assert asyncio.run(fetch(21)) == 42
    assert attempts == 3 and clock.now() == 1.0


def test_cancellation_and_interrupts_are_never_retried() -> None:
    retry = Retry(5, backoff=None)
    calls = 0

    @retry
    async def cancelled() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(cancelled())

    @retry
    def interrupted() -> None:
        nonlocal calls
        calls += 1
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    assert calls == 2


def test_statistics_are_exact_under_threads() -> None:
    retry = Retry(3, backoff=None)
    per_thread = 2000

    def work() -> None:
        state = {"n": 0}

        @retry
        def sometimes() -> None:
            state["n"] += 1
            if state["n"] % 4 == 0:  # every fourth attempt fails once
                raise TransientBackendError("again")

        for _ in range(per_thread):
            sometimes()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    counts = retry.stats().counts
    assert counts["calls"] == counts["succeeded"] == 8 * per_thread
    # per thread: attempts = calls + retries, and every 4th attempt failed
    assert counts["retries"] == 8 * (per_thread // 3)


def test_on_retry_hears_each_failure_tried_again() -> None:
    heard: list[tuple[str, int]] = []
    retry = Retry(4, backoff=None, on_retry=lambda exc, n: heard.append((str(exc), n)))
    retry.call(Flaky(2))
    assert heard == [("failure 1", 1), ("failure 2", 2)]


@pytest.mark.parametrize(
    "options",
    [
        {"attempts": 0},
        {"attempts": None},
        {"attempts": 2.5},
        {"backoff": -1},
        {"backoff": "1s"},
        {"backoff": None, "jitter": 0.5},
        {"jitter": 2},
        {"retry_on": ValueError()},
        {"retry_on": ()},
        {"retry_on": BaseException},
        {"when": 3},
        {"deadline": -1},
        {"on_retry": "x"},
        {"clock": 1},
    ],
)
def test_bad_options_are_configuration_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Retry(**options)
    with pytest.raises(ConfigurationError):
        Retry()(3)  # type: ignore[call-overload]
