"""A process that consumes or writes events, for the cross-process tests.

python _child.py consume URL NAME LOG READY RETENTION
    opens URL with outbox=True (outbox_retention=RETENTION, "none": never
    prune) and subscribes NAME; its handler appends
    "event_id name entity_id version" to LOG with one os.write() per event
    (so a SIGKILL loses at most the event being handled). READY is created
    once it is subscribed. Runs until SIGTERM (stops the subscription, closes
    the store, exits 0) or until it is killed.
python _child.py write URL PREFIX COUNT READY GO
    opens URL with outbox=True, creates READY, waits for the file GO, then
    makes COUNT changes to Items PREFIX0..PREFIX9 (saves, updates with
    optimistic retries, a transaction every tenth change) and exits.
python _child.py ticks URL COUNT PAUSE
    saves COUNT Ticks, one by one, PAUSE seconds apart; each carries the
    wall-clock time just before its save (the latency measurement), and
    prints "took SECONDS" for each save.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import statekeep
from events.models import Item, Tick


def consume(url: str, name: str, log: str, ready: str, retention: str) -> None:
    kept = None if retention == "none" else int(retention)
    store = statekeep.open(url, outbox=True, outbox_retention=kept)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def handle(event: statekeep.Event) -> None:
        received = time.time()
        extra = f" {received - event.entity.sent:.6f}" if isinstance(event, Tick.Created) else ""
        line = f"{event.event_id} {event.name} {event.entity_id} {event.version}{extra}\n"
        os.write(fd, line.encode())

    subscription = store.subscribe(name, handle)
    Path(ready).touch()
    while not stop.wait(0.05):
        if not subscription.running:
            raise SystemExit(f"the subscription stopped: {subscription.stats}")
    subscription.stop()
    store.close()
    os.close(fd)


def write(url: str, prefix: str, count: int, ready: str, go: str) -> None:
    store = statekeep.open(url, outbox=True)
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.001)
    for n in range(count):
        id = f"{prefix}{n % 10}"
        if n % 10 == 9:
            with store.transaction():
                store.save(Item(id=f"{prefix}-t{n}-a", n=n))
                store.save(Item(id=f"{prefix}-t{n}-b", n=n))
            continue
        while True:
            try:
                item = store.get(Item, id)
            except statekeep.NotFoundError:
                item = Item(id=id)
            item.n = n
            try:
                store.save(item)
                break
            except statekeep.ConflictError:
                continue
    store.close()


def ticks(url: str, count: int, pause: float) -> None:
    store = statekeep.open(url, outbox=True)
    store.save(Item(id=f"warm-up-{os.getpid()}"))  # connections made, not measured
    for n in range(count):
        sent = time.time()
        store.save(Tick(id=f"tick{n:05}", sent=sent))
        print(f"took {time.time() - sent:.6f}")
        time.sleep(pause)
    store.close()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    if mode == "consume":
        consume(*args)
    elif mode == "write":
        write(args[0], args[1], int(args[2]), args[3], args[4])
    elif mode == "ticks":
        ticks(args[0], int(args[1]), float(args[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
