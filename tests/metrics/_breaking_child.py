"""Child processes of test_breaking_metrics.py: scenarios that fork, deadlock
or depend on the process-wide metrics thread, run apart from pytest.

Usage: python _breaking_child.py MODE DIRECTORY. Exit 0: the behaviour a
user expects; exit 1: the defect (printed); a hang is caught by a timeout
inside the child and reported as exit 1.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import statekeep
from statekeep.metrics import AlertRule, Snapshot, metrics_app


class Todo(statekeep.Entity, collection="breaking_todos"):
    title: str = ""


def within(seconds: float, call: Callable[[], object]) -> bool:
    """True if call() returned within seconds (it runs on a daemon thread)."""
    done = threading.Event()

    def run() -> None:
        call()
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done.wait(seconds)


def saves_in(text: str) -> float:
    for line in text.splitlines():
        if line.startswith('statekeep_operation_seconds_count{operation="save"}'):
            return float(line.split()[-1])
    return 0.0


def read_calls_metrics(directory: Path) -> int:
    """An alert's read that asks the store for its metrics."""
    holder: dict[str, statekeep.Store] = {}

    def read(snapshot: Snapshot) -> Mapping[str, float]:
        holder["store"].metrics()
        return {"": 0.0}

    store = statekeep.open(
        f"sqlite:///{directory / 'a.db'}", alerts=[AlertRule("r", "d", read, above=1)]
    )
    holder["store"] = store
    time.sleep(2.2)  # the metrics thread has evaluated the rule
    if not within(3, store.alerts):
        print("store.alerts() hangs: the metrics thread holds Alerts._lock in read()")
        return 1
    store.close()
    return 0


def fork_in_alert_read(directory: Path) -> int:
    """fork() while the metrics thread is inside a (slow) alert read."""
    inside = threading.Event()

    def read(snapshot: Snapshot) -> Mapping[str, float]:
        inside.set()
        time.sleep(1.0)
        return {"": 0.0}

    store = statekeep.open(
        f"sqlite:///{directory / 'a.db'}", alerts=[AlertRule("slow", "d", read, above=1)]
    )
    store.save(Todo(title="before"))
    if not inside.wait(5):
        return 2
    pid = os.fork()
    if pid == 0:
        os._exit(0 if within(4, store.alerts) else 1)
    _, status = os.waitpid(pid, 0)
    store.close()
    if os.waitstatus_to_exitcode(status) != 0:
        print("the child's store.alerts() hangs: Alerts._lock was held at the fork")
        return 1
    return 0


def fork_double_count(directory: Path) -> int:
    """A store opened before fork (gunicorn --preload), pooled over a directory."""
    store = statekeep.open(f"sqlite:///{directory / 'a.db'}")
    for _ in range(10):
        store.save(Todo(title="in the parent"))
    app = metrics_app(store, multiprocess_dir=directory / "pool")
    before = saves_in(app.scrape().decode())
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        app.scrape()  # the worker answers a scrape: its file is written
        os.write(ready_w, b"x")
        time.sleep(2)
        os._exit(0)
    os.read(ready_r, 1)
    after = saves_in(app.scrape().decode())
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    store.close()
    if after != before:
        print(f"the pooled save count went from {before} to {after}; the child saved nothing")
        return 1
    return 0


def fork_alerts(directory: Path) -> int:
    """In a forked child, the metrics thread ticks and alerts fire."""
    level = {"v": 0.0}
    rule = AlertRule(
        "lvl", "{value}", lambda s: {"": s.value("app_level")}, above=1, reads=("app_level",)
    )
    store = statekeep.open(f"sqlite:///{directory / 'a.db'}", alerts=[rule])
    store.registry.gauge("app_level", read=lambda: level["v"])
    raised: list[statekeep.AlertRaised] = []
    store.on(statekeep.AlertRaised, raised.append)
    pid = os.fork()
    if pid == 0:
        level["v"] = 5.0
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and not raised:
            time.sleep(0.05)
        os._exit(0 if raised and [f.alert for f in store.alerts()] == ["lvl"] else 1)
    _, status = os.waitpid(pid, 0)
    parent = store.alerts()
    store.close()
    return 0 if os.waitstatus_to_exitcode(status) == 0 and parent == [] else 1


def ticker_after_close(directory: Path) -> int:
    """Docs: the metrics thread ends when the last metered store closes."""
    store = statekeep.open(f"sqlite:///{directory / 'a.db'}")
    store.save(Todo(title="x"))
    store.close()  # `store` is still referenced, as a module global or a `with` target is
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        if not any(t.name == "statekeep-metrics" for t in threading.enumerate()):
            return 0
        time.sleep(0.1)
    print("statekeep-metrics still runs 3.5 s after the only store closed")
    return 1


def slow_read_stalls(directory: Path) -> int:
    """One store's slow alert read delays every other store's alerts."""
    inside = threading.Event()

    def slow(snapshot: Snapshot) -> Mapping[str, float]:
        inside.set()
        time.sleep(3.0)
        return {"": 0.0}

    level = {"v": 0.0}
    a = statekeep.open(
        f"sqlite:///{directory / 'a.db'}", alerts=[AlertRule("s", "d", slow, above=1)]
    )
    b = statekeep.open(
        f"sqlite:///{directory / 'b.db'}",
        alerts=[AlertRule("lvl", "d", lambda s: {"": level["v"]}, above=1)],
    )
    if not inside.wait(5):
        return 2
    level["v"] = 5.0
    deadline = time.monotonic() + 2.0  # the docs: rules are evaluated once a second
    while time.monotonic() < deadline and not b.alerts():
        time.sleep(0.05)
    fired = bool(b.alerts())
    a.close()
    b.close()
    if not fired:
        print("store b's alert was not evaluated for 2 s: store a's read held the thread")
        return 1
    return 0


def sigkill_writer(directory: Path) -> int:
    """A worker: saves, answers a scrape (its file), then waits to be killed."""
    store = statekeep.open(f"sqlite:///{directory / 'worker.db'}")
    for _ in range(7):
        store.save(Todo(title="worker"))
    metrics_app(store, multiprocess_dir=directory / "pool").scrape()
    print("ready", flush=True)
    time.sleep(30)
    return 0


def open_close_many(directory: Path) -> int:
    """Short-lived stores: the metrics thread and its members go with them."""
    from statekeep.metrics import TICKER

    for i in range(100):
        with statekeep.open(f"sqlite:///{directory / 'a.db'}") as store:
            store.save(Todo(title=str(i)))
        del store
    import gc

    gc.collect()
    deadline = time.monotonic() + 3.5
    while time.monotonic() < deadline:
        if not any(t.name == "statekeep-metrics" for t in threading.enumerate()):
            return 0 if len(TICKER._members) == 0 else 1
        time.sleep(0.1)
    return 1


MODES: dict[str, Callable[[Path], int]] = {
    f.__name__: f
    for f in (
        read_calls_metrics,
        fork_in_alert_read,
        fork_double_count,
        fork_alerts,
        ticker_after_close,
        slow_read_stalls,
        sigkill_writer,
        open_close_many,
    )
}

if __name__ == "__main__":
    code = MODES[sys.argv[1]](Path(sys.argv[2]))
    sys.stdout.flush()
    os._exit(code)  # a hung daemon thread must not keep the child alive
