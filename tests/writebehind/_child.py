"""A process that writes through store.enqueue(), for the tests that kill it.

python _child.py stream URL ACKS SEED BASE WRITES ENTITIES
    enqueues WRITES writes to ENTITIES Readings (ids r0, r1, ...) with mixed
    priorities; each write carries the entity's next counter (BASE + 1,
    BASE + 2, ...). A thread waits for each receipt to be durable, in order,
    and then appends "id counter" to ACKS with one os.write(). The
    sequence is a function of SEED, so the parent can replay it.
python _child.py hold URL READY COUNT
    enqueues COUNT Docs (ids d0, d1, ...) that wait in the queue (a window of
    an hour), waits until they are durable, writes READY and sleeps.
python _child.py hold-tags URL READY COUNT
    the same with COUNT Tags (ids g0, g1, ..., code 7).
python _child.py stored-then-saved URL READY
    enqueues Doc "e" (title "enqueued"), flushes it (stored), then saves a
    newer Doc "e" (title "saved") directly, writes READY and sleeps.
python _child.py exit URL COUNT
    enqueues COUNT Docs that wait in the queue and ends without close()
    (the store is still referenced, from a module global, at exit).
python _child.py exit-dropped URL COUNT
    the same, but the store object is dropped first (only the pending
    writes and the engine's threads remain).
"""

from __future__ import annotations

import os
import queue
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import statekeep
from statekeep import Priority
from writebehind.models import Doc, Reading, Tag, payload_of

PRIORITIES = (Priority.LOW, Priority.NORMAL, Priority.CRITICAL)
WEIGHTS = (3, 6, 1)
PAUSE_EVERY = 500  # writes between short pauses: the stream lasts about a second


def stream_plan(seed: int, base: int, writes: int, entities: int) -> list[tuple[str, int, int]]:
    """(id, counter, priority) of every write, in order: the parent replays it."""
    rng = random.Random(seed)
    counters = [base] * entities
    plan = []
    for _ in range(writes):
        e = rng.randrange(entities)
        counters[e] += 1
        (priority,) = rng.choices(range(3), weights=WEIGHTS)
        plan.append((f"r{e}", counters[e], priority))
    return plan


def stream(url: str, acks: str, seed: int, base: int, writes: int, entities: int) -> None:
    plan = stream_plan(seed, base, writes, entities)
    store = statekeep.open(url)
    waiting: queue.SimpleQueue[tuple[statekeep.Receipt, str, int] | None] = queue.SimpleQueue()
    fd = os.open(acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def acknowledge() -> None:
        while (entry := waiting.get()) is not None:
            receipt, id, counter = entry
            receipt.wait_durable()
            os.write(fd, f"{id} {counter}\n".encode())

    acker = threading.Thread(target=acknowledge)
    acker.start()
    for n, (id, counter, priority) in enumerate(plan, 1):
        entity = Reading(id=id, counter=counter, payload=payload_of(id, counter))
        waiting.put((store.enqueue(entity, PRIORITIES[priority]), id, counter))
        if n % PAUSE_EVERY == 0:
            time.sleep(0.005)
    waiting.put(None)
    acker.join()
    store.flush()
    os.write(fd, b"done\n")
    store.close()


def hold(url: str, ready: str, count: int, tags: bool = False) -> None:
    store = statekeep.open(
        url, writebehind=statekeep.WriteBehindOptions(window=3600, low_max_age=3600)
    )
    receipts = [
        store.enqueue(Tag(id=f"g{n}", code=7) if tags else Doc(id=f"d{n}", title=f"held {n}", n=n))
        for n in range(count)
    ]
    for receipt in receipts:
        receipt.wait_durable()
    assert not any(receipt.stored for receipt in receipts)
    Path(ready).write_text("ready")
    time.sleep(3600)


def stored_then_saved(url: str, ready: str) -> None:
    store = statekeep.open(url)
    store.enqueue(Doc(id="e", title="enqueued")).wait_stored()
    newer = store.get(Doc, "e")
    newer.title = "saved"
    store.save(newer)
    Path(ready).write_text("ready")
    time.sleep(3600)


def enqueue_forever(url: str, ready: str) -> None:
    """Enqueues without a pause (so a signal most likely lands inside enqueue)."""
    store = statekeep.open(url)
    store.enqueue(Doc(id="first", title="first")).wait_stored()
    Path(ready).write_text("ready")
    n = 0
    while True:
        store.enqueue(Doc(id=f"d{n % 1000}", title="busy", n=n))
        n += 1


kept: list[statekeep.Store] = []


def exit_without_close(url: str, count: int, keep: bool) -> None:
    store = statekeep.open(
        url, writebehind=statekeep.WriteBehindOptions(window=3600, low_max_age=3600)
    )
    for n in range(count):
        store.enqueue(Doc(id=f"d{n}", title=f"left {n}", n=n))
    if keep:
        kept.append(store)


def main(argv: list[str]) -> None:
    mode, url, *rest = argv
    if mode == "stream":
        acks, seed, base, writes, entities = rest
        stream(url, acks, int(seed), int(base), int(writes), int(entities))
    elif mode == "hold":
        hold(url, rest[0], int(rest[1]))
    elif mode == "hold-tags":
        hold(url, rest[0], int(rest[1]), tags=True)
    elif mode == "stored-then-saved":
        stored_then_saved(url, rest[0])
    elif mode == "enqueue-forever":
        enqueue_forever(url, rest[0])
    elif mode in ("exit", "exit-dropped"):
        exit_without_close(url, int(rest[0]), keep=mode == "exit")
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
