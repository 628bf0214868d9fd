"""The one retry policy (statekeep.flow) and the one rule for numbers."""

from __future__ import annotations

import math

import pytest

from statekeep._numbers import is_seconds, is_whole
from statekeep.errors import ConfigurationError
from statekeep.flow import Backoff, FakeClock, Retry


def test_backoff_doubles_up_to_the_cap() -> None:
    backoff = Backoff(base=0.1, cap=1.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5, 6)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    )
    assert backoff.delay(10_000) == 1.0  # no overflow after many failures
    assert list(zip(range(3), backoff.delays(), strict=False))[-1][1] == pytest.approx(0.4)


def test_jitter_stays_between_its_bounds() -> None:
    backoff = Backoff(base=1.0, cap=8.0, jitter=0.5)
    delays = [backoff.delay(3) for _ in range(500)]
    assert all(2.0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 400  # random, not one fixed value


@pytest.mark.parametrize(
    "options",
    [
        {"base": 0},
        {"base": -1},
        {"base": math.nan},
        {"cap": math.inf},
        {"factor": 0.5},
        {"jitter": 1.5},
        {"base": True},
        {"base": "1"},
    ],
)
def test_bad_backoff_settings_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Backoff(**options)  # type: ignore[arg-type]


def test_retry_tries_again_only_while_asked() -> None:
    calls: list[int] = []
    told: list[int] = []
    clock = FakeClock()

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TimeoutError("again")
        return "done"

    retry = Retry(
        attempts=3,
        backoff=Backoff(base=0.5, cap=1.0),
        on_retry=lambda exc, n: told.append(n),
        clock=clock,
    )
    assert retry.call(flaky) == "done"
    assert told == [1, 2] and clock.now() == 1.5  # waited 0.5, then 1.0

    calls.clear()
    with pytest.raises(TimeoutError):
        Retry(attempts=2, clock=clock).call(flaky)
    assert len(calls) == 2

    calls.clear()
    with pytest.raises(TimeoutError):
        Retry(attempts=5, when=lambda exc: False).call(flaky)
    assert len(calls) == 1


@pytest.mark.parametrize("attempts", [0, -1, True, 1.5, None, "3"])
def test_bad_attempts_are_refused(attempts: object) -> None:
    with pytest.raises(ConfigurationError):
        Retry(attempts=attempts)  # type: ignore[arg-type]


def test_what_counts_as_a_number() -> None:
    assert is_whole(0) and is_whole(2**63 - 1) and not is_whole(2**63)
    assert not is_whole(True) and not is_whole(1.0) and not is_whole(-1)
    assert is_whole(-5, least=-10)
    assert is_seconds(0) and is_seconds(1.5) and not is_seconds(math.inf)
    assert not is_seconds(math.nan) and not is_seconds(False) and not is_seconds(-0.1)
    assert not is_seconds(0, positive=True) and not is_seconds(math.nan, positive=True)
    assert not is_seconds(10, most=10) and is_seconds(9.9, most=10)
    assert not is_seconds(1e300) and is_seconds(10**9)  # no thread can wait 1e300 s
