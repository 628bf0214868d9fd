"""A process that writes through store.enqueue(), for the restart test that kills it.

python _child.py stream URL DIRECTORY ENTITIES
    opens URL, writes DIRECTORY/ready, then enqueues writes to ENTITIES
    Readings (ids r0, r1, ...) without end, each with the entity's next counter
    and the payload that goes with it. A thread waits for each receipt to be
    durable, in order, and appends "id counter" to DIRECTORY/acks with one
    os.write() per line; the parent kills the process with SIGKILL.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import statekeep
from postgres.models import Reading, payload_of
from statekeep import Priority

PRIORITIES = (Priority.NORMAL, Priority.NORMAL, Priority.LOW, Priority.CRITICAL)


def stream(url: str, directory: Path, entities: int) -> None:
    store = statekeep.open(
        url, writebehind=statekeep.WriteBehindOptions(window=0.01, retry_base=0.05, retry_cap=0.5)
    )
    waiting: queue.SimpleQueue[tuple[statekeep.Receipt, str, int]] = queue.SimpleQueue()
    fd = os.open(directory / "acks", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def acknowledge() -> None:
        while True:
            receipt, id, counter = waiting.get()
            receipt.wait_durable()
            os.write(fd, f"{id} {counter}\n".encode())

    threading.Thread(target=acknowledge, daemon=True).start()
    (directory / "ready").write_text("ready")
    counters = [0] * entities
    n = 0
    while True:
        e = n % entities
        counters[e] += 1
        id = f"r{e}"
        entity = Reading(id=id, counter=counters[e], payload=payload_of(id, counters[e]))
        waiting.put((store.enqueue(entity, PRIORITIES[n % len(PRIORITIES)]), id, counters[e]))
        n += 1
        if n % 20 == 0:
            time.sleep(0.002)  # a steady stream, not a flood


def main(argv: list[str]) -> None:
    mode, url, directory, *rest = argv
    if mode == "stream":
        stream(url, Path(directory), int(rest[0]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
