"""The benchmarks keep working: a quick run of every one of them succeeds.

Speed is measured by `make bench`, never asserted here; this only checks that
each benchmark still runs against the current API and reports every target.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_run_reports_every_benchmark(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--output", str(output)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    table = output.read_text()
    for name in ("save_many", "save ", "get ", "peak RSS"):
        assert name in table, f"{name!r} missing from the benchmark table"
    assert "statekeep" in table and "SQLAlchemy" in table
