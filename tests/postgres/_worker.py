"""A process that races others to increment Tallies, for test_multiprocess.py.

python _worker.py MODE URL DIRECTORY INDEX ROUNDS ENTITIES SEED [BATCH]

Writes DIRECTORY/ready-INDEX, waits for DIRECTORY/go (so that every worker
starts at the same moment), then does ROUNDS read-modify-write rounds on
Tallies t0 .. t{ENTITIES-1}:

- MODE save: get one Tally, add 1 to its total, save it; on ConflictError
  read it again and retry, until the increment is saved.
- MODE save_many: get BATCH distinct Tallies (in a random order), add 1 to
  each, save_many them in one transaction; on ConflictError read them all
  again and retry.

At the end it writes DIRECTORY/result-INDEX.json (atomically):
  successes: [id, version saved, total saved] for every saved increment
  conflicts: [id, version held, version stored just after] for every ConflictError
  transient: the message of every TransientBackendError (the round is retried)
  restored:  how many times a failed save left an entity's version other than as held
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import statekeep
from postgres.models import Tally
from statekeep.errors import ConflictError, TransientBackendError

BARRIER_TIMEOUT = 60.0


def wait_for_go(directory: Path, index: int) -> None:
    (directory / f"ready-{index}").write_text("ready")
    go = directory / "go"
    end = time.monotonic() + BARRIER_TIMEOUT
    while not go.exists():
        if time.monotonic() > end:
            raise SystemExit(f"worker {index}: no go after {BARRIER_TIMEOUT}s")
        time.sleep(0.001)


class Log:
    def __init__(self, index: int) -> None:
        self.writer = f"w{index}"
        self.successes: list[tuple[str, int, int]] = []
        self.conflicts: list[tuple[str, int, int]] = []
        self.transient: list[str] = []
        self.restored = 0


def save_rounds(store: statekeep.Store, log: Log, rng: random.Random, rounds: int, n: int) -> None:
    for _ in range(rounds):
        id = f"t{rng.randrange(n)}"
        tally = store.get(Tally, id)
        while True:
            held = tally.version
            tally.total += 1
            tally.writer = log.writer
            try:
                store.save(tally)
            except ConflictError as exc:
                if exc.id != id or tally.version != held:
                    log.restored += 1
                now = store.get(Tally, id)
                log.conflicts.append((id, held, now.version))
                tally = now
                continue
            except TransientBackendError as exc:
                log.transient.append(str(exc))
                tally = store.get(Tally, id)
                continue
            log.successes.append((id, tally.version, tally.total))
            break


def save_many_rounds(
    store: statekeep.Store, log: Log, rng: random.Random, rounds: int, n: int, batch: int
) -> None:
    for _ in range(rounds):
        ids = [f"t{i}" for i in rng.sample(range(n), batch)]  # a random order each time
        while True:
            found = store.get_many(Tally, ids)
            tallies = [found[id] for id in ids]
            held = {t.id: t.version for t in tallies}
            for tally in tallies:
                tally.total += 1
                tally.writer = log.writer
            try:
                store.save_many(tallies)
            except ConflictError as exc:
                if {t.id: t.version for t in tallies} != held:
                    log.restored += 1
                now = store.get(Tally, exc.id)
                log.conflicts.append((exc.id, held[exc.id], now.version))
                continue
            except TransientBackendError as exc:
                log.transient.append(str(exc))
                continue
            log.successes.extend((t.id, t.version, t.total) for t in tallies)
            break


def main(argv: list[str]) -> None:
    mode, url, directory_name, index, rounds, entities, seed, *rest = argv
    directory = Path(directory_name)
    log = Log(int(index))
    rng = random.Random(int(seed))
    with statekeep.open(url) as store:
        store.get(Tally, "t0")  # connected and ready before the start
        wait_for_go(directory, int(index))
        if mode == "save":
            save_rounds(store, log, rng, int(rounds), int(entities))
        elif mode == "save_many":
            save_many_rounds(store, log, rng, int(rounds), int(entities), int(rest[0]))
        else:
            raise SystemExit(f"unknown mode {mode!r}")
    result = {
        "successes": log.successes,
        "conflicts": log.conflicts,
        "transient": log.transient,
        "restored": log.restored,
    }
    partial = directory / f"result-{index}.partial"
    partial.write_text(json.dumps(result))
    os.replace(partial, directory / f"result-{index}.json")


if __name__ == "__main__":
    main(sys.argv[1:])
