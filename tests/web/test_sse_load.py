"""The dashboard's stream under load: 100 pages on /events for 30 s while the
store takes 10k writes/s, and 5 pages that stop reading for 10 s on top.

The server (tests/web/_load_server.py) runs in a process of its own: the
dashboard, uvicorn and the writer thread share its GIL, as they would in an
app, and the test's clients (asyncio sockets parsing every frame) and its
sampling take none of it, so what is timed is the server. Clients keep the
signals a page would (tests/web/_sse_clients.py).

Asserted:
- every page ends on the final state: after the writes stop and are flushed,
  each one's signals show the stored count (`wb.stored`) and the entity
  count (`counts.0.count`) the store reports;
- the server's memory is flat: its RSS, sampled each second, grows by at most
  RSS_GROWTH_MB over the last third of the run (by then the store's SQLite
  cache, the metrics' windows and every page's stream are warm; what grows
  after that grows with time, i.e. leaks);
- pages that stop reading do not slow the store: the writes enqueued a second
  while they stall are within 10% of those in the stretch before they came,
  they still end on the final state, and they got fewer frames than a page
  that kept reading (the feed skipped states for them: nothing queued).

STATEKEEP_STRESS=1: a 120 s run. The figures are printed (pytest -s).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]
import pytest
from benchmarks._sse import Client, lookup

pytestmark = pytest.mark.slow

STRESS = os.environ.get("STATEKEEP_STRESS", "") not in ("", "0")
SECONDS = 120.0 if STRESS else 30.0  # of writing; slow pages stall in the middle third
RATE = 10_000  # writes/s offered
CLIENTS = 100
SLOW_CLIENTS = 5
SLOW_RCVBUF = 4096  # a stalled page's socket takes little before the server feels it
RSS_GROWTH_MB = 16.0
SLOWDOWN = 0.10
SERVER = Path(__file__).with_name("_load_server.py")


def _post(base: str, path: str) -> Any:
    request = urllib.request.Request(base + path, method="POST", data=b"")
    with urllib.request.urlopen(request, timeout=90) as answer:
        return json.load(answer)


def _get(base: str, path: str) -> Any:
    with urllib.request.urlopen(base + path, timeout=30) as answer:
        return json.load(answer)


def _final(client: Client, stored: int, count: int) -> bool:
    shown = (lookup(client.signals, "wb.stored"), lookup(client.signals, "counts.0.count"))
    return shown == (stored, count)


async def _load(port: int, server: psutil.Process) -> dict[str, Any]:
    base = f"http://127.0.0.1:{port}"
    fast = [Client(port) for _ in range(CLIENTS)]
    slow = [Client(port, rcvbuf=SLOW_RCVBUF) for _ in range(SLOW_CLIENTS)]
    tasks = [asyncio.create_task(c.run()) for c in fast]
    rss: list[tuple[float, int]] = []
    try:
        await asyncio.wait_for(asyncio.gather(*(c.connected.wait() for c in fast)), 30)
        for client in fast:
            assert client.error is None, client.error
        await asyncio.wait_for(asyncio.gather(*(c.changed.wait() for c in fast)), 30)
        await asyncio.to_thread(_post, base, f"/_load/write?rate={RATE}&seconds={SECONDS}")
        start = time.monotonic()
        third = SECONDS / 3
        slow_frames_at: dict[str, float] = {}
        fast_frames_at: dict[str, int] = {}
        phase = 0
        while (now := time.monotonic() - start) < SECONDS + 0.5:
            rss.append((now, server.memory_info().rss))
            if phase == 0 and now >= third:
                for client in slow:
                    client.paused.set()  # reads its headers, then nothing
                tasks += [asyncio.create_task(c.run()) for c in slow]
                fast_frames_at["stall"] = fast[0].frames
                phase = 1
            elif phase == 1 and now >= 2 * third:
                slow_frames_at["stall"] = statistics.median(c.frames for c in slow)
                fast_frames_at["drain"] = fast[0].frames
                for client in slow:
                    client.paused.clear()
                phase = 2
            await asyncio.sleep(1.0 - (time.monotonic() - start) % 1.0)
        written = await asyncio.to_thread(_get, base, "/_load/figures")
        while written["writing"]:
            await asyncio.sleep(0.2)
            written = await asyncio.to_thread(_get, base, "/_load/figures")
        final = await asyncio.to_thread(_post, base, "/_load/flush")
        everyone = fast + slow
        deadline = time.monotonic() + 15
        while not all(_final(c, final["stored"], final["count"]) for c in everyone):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        return {
            "written": written,
            "final": final,
            "rss": rss,
            "fast": fast,
            "slow": slow,
            "fast_frames_at": fast_frames_at,
            "slow_frames_during_stall": slow_frames_at.get("stall", 0),
        }
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def test_a_hundred_pages_follow_ten_thousand_writes_a_second(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, str(SERVER), str(tmp_path / "load.db")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("PORT "), line
        port = int(line.split()[1])
        _wait_healthy(port)
        run = asyncio.run(_load(port, psutil.Process(process.pid)))
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        if process.stdout is not None:
            process.stdout.close()
    _judge(run)


def _wait_healthy(port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            _get(f"http://127.0.0.1:{port}", "/healthz")
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _judge(run: dict[str, Any]) -> None:
    written, final = run["written"], run["final"]
    fast: list[Client] = run["fast"]
    slow: list[Client] = run["slow"]
    per_second: list[int] = written["per_second"]
    third = int(SECONDS / 3)
    # the first second warms up; the stall's first second is the connecting
    before = statistics.mean(per_second[1:third])
    during = statistics.mean(per_second[third + 1 : 2 * third])
    achieved = written["enqueued"] / written["elapsed"]
    rss = run["rss"]
    last = [value for at, value in rss if at >= SECONDS - third]
    growth = (max(last) - last[0]) / 2**20
    frames_fast = statistics.median(c.frames for c in fast)
    frames_slow = statistics.median(c.frames for c in slow)
    stall_fast = run["fast_frames_at"]["drain"] - run["fast_frames_at"]["stall"]
    print(
        f"\nSSE load: {CLIENTS}+{SLOW_CLIENTS} pages, {SECONDS:.0f} s at {RATE}/s offered: "
        f"enqueued {achieved:,.0f}/s ({written['enqueued']:,}), {before:,.0f}/s before the "
        f"stall, {during:,.0f}/s during it; stored {final['stored']:,}, "
        f"count {final['count']:,}; server RSS {rss[0][1] / 2**20:.0f} -> "
        f"{rss[-1][1] / 2**20:.0f} MB, +{growth:.1f} MB over the last {third} s; frames a "
        f"page: {frames_fast:.0f} (reading), {frames_slow:.0f} (stalled {third} s); during "
        f"the stall a reading page got {stall_fast}, a stalled one "
        f"{run['slow_frames_during_stall']:.0f}; writes each second: {per_second}"
    )
    for client in fast + slow:
        assert client.error is None, client.error
    late = [
        (lookup(c.signals, "wb.stored"), lookup(c.signals, "counts.0.count"))
        for c in fast + slow
        if not _final(c, final["stored"], final["count"])
    ]
    assert not late, f"{len(late)} pages not on the final state {final}: {late[:5]}"
    assert final["count"] == written["enqueued"] == final["stored"]
    assert growth <= RSS_GROWTH_MB, rss
    assert during >= (1 - SLOWDOWN) * before, per_second
    assert frames_slow < frames_fast, (frames_slow, frames_fast)
