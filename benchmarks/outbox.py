"""PostgreSQL with outbox=True: do writers of different entities wait for each other?

Every writer is a process of its own (benchmarks/_outbox_child.py), released
at once; each store is opened with the outbox (and, as the control, without).

1. save_many throughput: 1, 2 and 4 processes each save_many
   `outbox_rows` new entities in one transaction; rows/s is all their rows
   over the time from the start to the last one's commit. Writers of
   different entities should scale with processes (as far as the cores
   allow) and the outbox should cost a fraction, not a multiple.
2. A third process's save latency: while two processes save_many
   `outbox_rows` each, a third saves one entity every 10 ms; its p50, p99
   and slowest save (a global lock held through the big commits shows as
   saves stalled for seconds, or a lock timeout).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from . import _postgres
from .harness import ExtraTable, Progress, Result, Sizes, percentile

TITLE = "PostgreSQL outbox: concurrent writers (processes)"


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result | ExtraTable]:
    url = _postgres.configured_url()
    problem = _postgres.problem(url)
    if problem is not None:
        return [
            Result(
                "PostgreSQL outbox, concurrent writers",
                "skipped: no server",
                detail=f"{_postgres.where(url)}: {problem}; set {_postgres.VARIABLE}",
            )
        ]
    rows: list[tuple[str, ...]] = []
    with _postgres.fresh_schema(url) as schema:
        store_url = _postgres.store_url(url, schema)
        for outbox in (True, False):
            label = "outbox" if outbox else "no outbox (control)"
            for writers in (1, 2, 4):
                progress(f"outbox: save_many, {writers} writer(s), {label}")
                rate, errors = _throughput(store_url, outbox, writers, sizes, workdir)
                rows.append((f"save_many x{writers}", label, f"{rate:,.0f} rows/s", errors, ""))
            progress(f"outbox: a third writer's saves during two save_many, {label}")
            rate, errors, taken, failed = _third_writer(store_url, outbox, sizes, workdir)
            ordered = sorted(taken)
            latency = (
                f"p50 {percentile(ordered, 0.5) * 1000:.1f} ms, "
                f"p99 {percentile(ordered, 0.99) * 1000:.1f} ms, "
                f"max {ordered[-1] * 1000:.0f} ms ({len(ordered)} saves, {failed} failed)"
                if ordered
                else "no save finished"
            )
            rows.append(("2 x save_many + saves", label, f"{rate:,.0f} rows/s", errors, latency))
    return [
        ExtraTable(
            TITLE,
            ("run", "store", "save_many", "failed", "third process's save()"),
            rows,
            note=f"{sizes.outbox_rows:,} rows per save_many, one transaction each",
        )
    ]


def _spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks._outbox_child", *args],
        cwd=Path(__file__).resolve().parent.parent,
        stdout=subprocess.PIPE,
        text=True,
    )


def _finish(children: list[subprocess.Popen[str]]) -> list[dict[str, object]]:
    reports = []
    for child in children:
        out, _ = child.communicate(timeout=900)
        if child.returncode != 0:
            raise RuntimeError(f"an outbox benchmark process failed ({child.returncode})")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    return reports


def _go(workdir: str, name: str) -> Path:
    path = Path(workdir) / name
    path.unlink(missing_ok=True)
    return path


def _rate(reports: list[dict[str, object]], rows_each: int) -> tuple[float, str]:
    done = [r for r in reports if r["error"] is None]
    errors = "; ".join(str(r["error"])[:80] for r in reports if r["error"] is not None)
    if not done:
        return 0.0, errors or "-"
    start = min(float(r["start"]) for r in reports)  # type: ignore[arg-type]
    end = max(float(r["end"]) for r in done)  # type: ignore[arg-type]
    return len(done) * rows_each / (end - start), errors or "-"


def _throughput(
    url: str, outbox: bool, writers: int, sizes: Sizes, workdir: str
) -> tuple[float, str]:
    go = _go(workdir, "outbox-go")
    flag, n = "1" if outbox else "0", str(sizes.outbox_rows)
    children = [_spawn("save_many", url, flag, n, str(go)) for _ in range(writers)]
    go.touch()
    return _rate(_finish(children), sizes.outbox_rows)


def _third_writer(
    url: str, outbox: bool, sizes: Sizes, workdir: str
) -> tuple[float, str, list[float], int]:
    go, stop = _go(workdir, "outbox-go"), _go(workdir, "outbox-stop")
    flag, n = "1" if outbox else "0", str(sizes.outbox_rows)
    saver = _spawn("saves", url, flag, str(go), str(stop))
    writers = [_spawn("save_many", url, flag, n, str(go)) for _ in range(2)]
    go.touch()
    try:
        reports = _finish(writers)
    finally:
        stop.touch()
    [saves] = _finish([saver])
    rate, errors = _rate(reports, sizes.outbox_rows)
    taken = [float(t) for t in saves["taken"]]  # type: ignore[attr-defined]
    return rate, errors, taken, len(saves["errors"])  # type: ignore[arg-type]
