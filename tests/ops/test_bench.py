"""`statekeep bench`: one quick run (shared by the tests) and the table it draws.

The tests check what the report says and how, never how fast anything is:
speed is the benchmark's business, not the suite's.
"""

from __future__ import annotations

import json
import platform
import sqlite3
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from rich.console import Console

import statekeep
from statekeep.ops._bench import BenchReport, BenchRow, bench_table, run_bench

pytestmark = pytest.mark.slow  # one quick run: a few seconds

PATHS = (
    "save_many, time-ordered ids",
    "save_many, random uuid4 ids",
    "save, a commit each",
    "get by id",
    "find on an indexed field",
    "enqueue + flush (write-behind)",
)


@dataclass
class Run:
    report: BenchReport
    directory: Path
    steps: list[tuple[str, int, int]] = field(default_factory=list)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    directory = tmp_path_factory.mktemp("bench")
    steps: list[tuple[str, int, int]] = []
    report = run_bench(
        quick=True,
        directory=directory,
        progress=lambda step, done, total: steps.append((step, done, total)),
    )
    return Run(report, directory, steps)


def test_every_path_has_a_row_with_positive_figures(run: Run) -> None:
    rows = run.report.rows
    assert len(rows) == len(PATHS)
    for row, path in zip(rows, PATHS, strict=True):
        assert row.path.startswith(path)
        assert row.items > 0 and row.peak_bytes > 0
        assert 0 < row.best_s <= row.median_s
        assert 0 < row.raw_best_s <= row.raw_median_s
        assert row.items_per_s > 0 and row.raw_items_per_s > 0 and row.ratio > 0


def test_items_per_second_are_of_the_median_and_the_ratio_is_statekeep_over_raw(
    run: Run,
) -> None:
    for row in run.report.rows:
        assert row.items_per_s == pytest.approx(row.items / row.median_s)
        assert row.raw_items_per_s == pytest.approx(row.items / row.raw_median_s)
        assert row.ratio == pytest.approx(row.items_per_s / row.raw_items_per_s)
        assert (row.ratio < 1) == (row.median_s > row.raw_median_s)  # below 1: slower


def test_progress_counts_every_step_in_order_up_to_the_total(run: Run) -> None:
    total = run.steps[-1][2]
    assert [done for _, done, _ in run.steps] == list(range(1, total + 1))
    assert {t for _, _, t in run.steps} == {total}
    names = [step for step, _, _ in run.steps]
    assert all(names) and len(set(names)) == len(names)
    for path in PATHS:  # both contenders of every round, then the peak memory
        mine = [n for n in names if n.startswith(path)]
        assert len(mine) == 2 * run.report.rounds + 1
        assert sum("statekeep" in n for n in mine) == sum("raw sqlite3" in n for n in mine)
        assert mine[-1].endswith("peak memory")


def test_the_report_names_the_machine_and_the_versions(run: Run) -> None:
    report = run.report
    assert report.quick and report.rounds >= 3
    assert report.statekeep_version == statekeep.__version__
    assert report.python_version.startswith(platform.python_version())
    assert report.sqlite_version == sqlite3.sqlite_version
    assert report.platform == platform.platform()
    assert report.cpu_count is None or report.cpu_count >= 1
    assert report.load_average is None or len(report.load_average) == 3
    assert report.total_seconds > sum(row.median_s + row.raw_median_s for row in report.rows)
    assert "tracemalloc" in report.memory


def test_to_dict_is_plain_json(run: Run) -> None:
    data = run.report.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert [row["path"] for row in data["rows"]] == [row.path for row in run.report.rows]
    assert data["sqlite_version"] == sqlite3.sqlite_version
    assert set(data["rows"][0]) >= {"items", "median_s", "best_s", "ratio", "peak_bytes"}


def test_the_files_are_removed(run: Run) -> None:
    assert list(run.directory.iterdir()) == []


def render(report: BenchReport) -> str:
    console = Console(record=True, width=250)
    console.print(bench_table(report))
    return " ".join(console.export_text().split())  # the caption wraps at the table's width


def test_the_table_names_every_path_and_the_machine(run: Run) -> None:
    text = render(run.report)
    for header in ("path", "items", "median s", "best s", "items/s", "raw items/s", "ratio"):
        assert header in text
    assert "peak memory" in text and "--quick" in text
    for row in run.report.rows:
        assert row.path in text
        assert f"{row.ratio:.2f}" in text
    for context in (f"statekeep {statekeep.__version__}", f"SQLite {sqlite3.sqlite_version}"):
        assert context in text


def test_the_table_of_a_made_up_report() -> None:
    row = BenchRow("get by id", 2_000, 0.5, 0.4, 4_000.0, 0.25, 0.2, 8_000.0, 0.5, 3 * 1024**2)
    report = BenchReport(
        rows=(row,),
        statekeep_version="9.9",
        python_version="3.11.0 (CPython)",
        sqlite_version="3.45.0",
        pydantic_version="2.14.0",
        platform="Linux",
        cpu_count=None,
        load_average=None,
        total_seconds=12.0,
        quick=False,
        rounds=5,
    )
    text = render(report)
    assert "--quick" not in text
    for cell in ("get by id", "2,000", "0.5000", "0.4000", "4,000", "8,000", "0.50", "3.0 MiB"):
        assert cell in text
    assert "? CPUs" in text and "load n/a" in text
    assert "2 CPUs · load 0.50 0.25 0.10" in render(
        replace(report, cpu_count=2, load_average=(0.5, 0.25, 0.1))
    )
