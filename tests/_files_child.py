"""A process that writes to a files store, for the tests that kill it.

python _files_child.py transfer URL ACKS SEED
    runs transactions back to back until it is killed. Transaction n moves
    money between a few Accounts (the sum stays TOTAL), rewrites a few Slots,
    creates Token k<n> and deletes k<n-1>, and records in the Ledger which
    entities it wrote; each of them carries txn=n. The store has an outbox,
    so every transaction also writes its events. After commit returns it
    appends "n" and a newline to ACKS with one os.write().
python _files_child.py increment URL DONE TIMES
    adds 1 to Counter "shared" TIMES times (get, add, save; again on a
    ConflictError), then writes "<conflicts>" to DONE.
python _files_child.py hold URL READY
    opens a transaction, writes READY and sleeps inside it (holding the lock).
"""

from __future__ import annotations

import itertools
import os
import random
import sys
import time
from pathlib import Path

import statekeep

ACCOUNTS, SLOTS, TOTAL = 8, 40, 8_000


class Account(statekeep.Entity, collection="fx_account"):
    balance: int = 0
    txn: int = 0


class Slot(statekeep.Entity, collection="fx_slot"):
    txn: int = 0
    payload: str = ""


class Token(statekeep.Entity, collection="fx_token"):
    txn: int = 0


class Ledger(statekeep.Entity, collection="fx_ledger"):
    txn: int = 0
    wrote: list[str] = []


class Counter(statekeep.Entity, collection="fx_counter"):
    total: int = 0


def payload_of(id: str, txn: int) -> str:
    """A Slot's content follows from its id and txn: a mixed-up document shows."""
    return f"{id}@{txn}:" + "x" * (txn * 7 % 200)


def seed_store(store: statekeep.Store) -> None:
    """Transaction 0: the accounts share TOTAL, token k0, an empty ledger."""
    with store.transaction():
        store.save_many(Account(id=f"a{i}", balance=TOTAL // ACCOUNTS) for i in range(ACCOUNTS))
        store.save(Token(id="k0"))
        store.save(Ledger(id="ledger"))


def transfer(url: str, acks: str, seed: int) -> None:
    rng = random.Random(seed)
    fd = os.open(acks, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    store = statekeep.open(url, outbox=True)
    ledger = store.get(Ledger, "ledger")
    n = ledger.txn
    while True:
        n += 1
        with store.transaction():
            accounts = [store.get(Account, f"a{i}") for i in rng.sample(range(ACCOUNTS), 3)]
            for giver, taker in itertools.pairwise(accounts):
                amount = rng.randint(0, giver.balance)
                giver.balance -= amount
                taker.balance += amount
            slots = []
            for i in rng.sample(range(SLOTS), rng.randint(1, 25)):
                try:
                    slot = store.get(Slot, f"s{i}")
                except statekeep.NotFoundError:
                    slot = Slot(id=f"s{i}")
                slot.txn, slot.payload = n, payload_of(slot.id, n)
                slots.append(slot)
            for account in accounts:
                account.txn = n
            store.save_many([*accounts, *slots])
            store.save(Token(id=f"k{n}", txn=n))
            store.delete(Token, f"k{n - 1}")
            ledger.txn = n
            ledger.wrote = [f"{type(e).__name__}:{e.id}" for e in (*accounts, *slots)]
            store.save(ledger)
        os.write(fd, f"{n}\n".encode())


def increment(url: str, done: str, times: int) -> None:
    conflicts = 0
    with statekeep.open(url, timeout=30) as store:
        for _ in range(times):
            while True:
                counter = store.get(Counter, "shared")
                counter.total += 1
                try:
                    store.save(counter)
                    break
                except statekeep.ConflictError:
                    conflicts += 1
    Path(done).write_text(str(conflicts))


def hold(url: str, ready: str) -> None:
    store = statekeep.open(url)
    with store.transaction():
        store.save(Counter(id="held"))
        Path(ready).write_text("ready")
        time.sleep(3600)


def main(argv: list[str]) -> None:
    mode, url, *rest = argv
    if mode == "transfer":
        transfer(url, rest[0], int(rest[1]))
    elif mode == "increment":
        increment(url, rest[0], int(rest[1]))
    elif mode == "hold":
        hold(url, rest[0])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
