"""`statekeep bench --quick --json`: runs, and prints its report as JSON on stdout."""

from __future__ import annotations

import json

import pytest

import statekeep

from .conftest import run_process


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_quick_json() -> None:
    done = run_process("bench", "--quick", "--json", timeout=500)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {
        "rows",
        "statekeep_version",
        "python_version",
        "sqlite_version",
        "pydantic_version",
        "platform",
        "cpu_count",
        "load_average",
        "total_seconds",
        "quick",
        "rounds",
        "memory",
    } <= set(report)
    assert report["quick"] is True and report["statekeep_version"] == statekeep.__version__
    assert len(report["rows"]) == 6
    for row in report["rows"]:
        assert {
            "path",
            "items",
            "median_s",
            "best_s",
            "items_per_s",
            "raw_median_s",
            "raw_best_s",
            "raw_items_per_s",
            "ratio",
            "peak_bytes",
        } <= set(row)
        assert row["items"] > 0 and row["median_s"] > 0 and row["ratio"] > 0
