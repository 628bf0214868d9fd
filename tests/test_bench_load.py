"""The benchmark report warns when the machine was too busy to trust it."""

from __future__ import annotations

import pytest
from benchmarks.load import Load


def _load(other: float, steal: float = 0.0) -> Load:
    return Load(
        seconds=10.0,
        loadavg_start=(0.5, 0.5, 0.5),
        loadavg_end=(1.0, 0.7, 0.6),
        other_busy=other,
        own_busy=0.5,
        steal=steal,
        cores=2,
    )


@pytest.mark.parametrize(("other", "steal"), [(0.0, 0.0), (0.25, 0.0), (0.1, 0.1)])
def test_a_quiet_enough_machine_gets_no_warning(other: float, steal: float) -> None:
    assert _load(other, steal).warning() is None


@pytest.mark.parametrize(("other", "steal"), [(0.26, 0.0), (0.9, 0.0), (0.0, 0.2)])
def test_a_busy_machine_is_warned_of(other: float, steal: float) -> None:
    warning = _load(other, steal).warning()
    assert warning is not None
    assert f"{other:.0%}" in warning and f"{steal:.0%}" in warning
    assert "not to be trusted" in warning
