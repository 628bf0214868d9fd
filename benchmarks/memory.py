"""4. Peak RSS of save_many over a generator of N entities, in a child process.

Bounded memory means the peak must not grow with N. The reference (no
target): the same generator through sqlite3 executemany a thousand rows at a
time, which holds nothing but the current chunk: what the interpreter, pydantic
and SQLite need anyway.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from .harness import Progress, Result, Sizes, remove_db

LIMIT = "sqlite3 executemany of a generator (reference)"
STATEKEEP = "statekeep save_many of a generator"
MAX_PEAK_MB = 200
_MB = 1024 * 1024


def child_report(module: str, *args: str) -> dict[str, Any]:
    """Runs `python -m module args...` (a child that prints a JSON report with
    a "peak" as its last line), polling its RSS too: the fallback peak where
    the child finds no VmHWM. RuntimeError if it fails."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", module, *args]
    polled = 0
    with subprocess.Popen(command, stdout=subprocess.PIPE, env=env, text=True) as child:
        process = psutil.Process(child.pid)
        while child.poll() is None:
            try:
                polled = max(polled, process.memory_info().rss)
            except psutil.Error:  # it ended between poll() and here
                break
            time.sleep(0.05)
        out, _ = child.communicate()
    if child.returncode != 0:
        raise RuntimeError(f"the memory child {module} {args[:1]} failed: code {child.returncode}")
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    if report["peak"] is None:
        report["peak"] = polled
    return report


def _child(contender: str, count: int, path: str) -> dict[str, Any]:
    try:
        return child_report("benchmarks._rss_child", contender, str(count), path)
    finally:
        remove_db(path)


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    n = sizes.memory
    reports = {}
    for name, contender in ((LIMIT, "raw"), (STATEKEEP, "statekeep")):
        progress(f"memory: {name} ({n:,} entities in a child process)")
        reports[name] = _child(contender, n, f"{workdir}/memory_{contender}.db")
        if reports[name]["count"] != n:
            raise RuntimeError(f"{name} stored {reports[name]['count']} of {n} entities")
    label = f"save_many {n:,} from a generator: peak RSS"
    results = []
    for name in (LIMIT, STATEKEEP):
        report = reports[name]
        peak, baseline = report["peak"] / _MB, (report["baseline"] or 0) / _MB
        detail = f"peak {peak:.0f} MB, +{peak - baseline:.0f} MB over start"
        ops = n / report["seconds"]
        ratio = ops / (n / reports[LIMIT]["seconds"])
        if name == STATEKEEP:
            results.append(
                Result(
                    label,
                    name,
                    ops,
                    ratio,
                    target=f"peak RSS < {MAX_PEAK_MB} MB",
                    passed=peak < MAX_PEAK_MB,
                    detail=detail,
                )
            )
        else:
            results.append(Result(label, name, ops, 1.0, detail=detail))
    return results
