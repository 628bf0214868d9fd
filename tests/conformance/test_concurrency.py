"""Threads: optimistic concurrency holds under contention, with no lost update."""

from __future__ import annotations

import threading

import statekeep
from statekeep import ConflictError

from .models import Counter, Todo

THREADS = 8
ROUNDS = 25


def test_one_winner_per_round_and_no_lost_update(store: statekeep.Store) -> None:
    store.save(Counter(id="shared"))
    barrier = threading.Barrier(THREADS, timeout=60)
    outcomes: list[list[str]] = [[""] * THREADS for _ in range(ROUNDS)]
    held_versions: list[list[int]] = [[0] * THREADS for _ in range(ROUNDS)]
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for round in range(ROUNDS):
                held = store.get(Counter, "shared")
                held_versions[round][n] = held.version
                barrier.wait()  # everyone holds the same version now
                held.total += 1
                held.winners = [*held.winners, f"{round}:{n}"]
                try:
                    store.save(held)
                except ConflictError:
                    outcomes[round][n] = "conflict"
                    assert held.version == round + 1  # a loser's version is not moved
                else:
                    outcomes[round][n] = "won"
                    assert held.version == round + 2
                barrier.wait()  # the round is over
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    assert not failures, failures
    for round in range(ROUNDS):
        assert held_versions[round] == [round + 1] * THREADS
        assert sorted(outcomes[round]) == ["conflict"] * (THREADS - 1) + ["won"], round
    final = store.get(Counter, "shared")
    assert final.version == ROUNDS + 1  # the first save, then one per round
    assert final.total == ROUNDS
    winners = [f"{round}:{outcomes[round].index('won')}" for round in range(ROUNDS)]
    assert final.winners == winners


def test_threads_saving_different_entities_lose_nothing(store: statekeep.Store) -> None:
    failures: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(50):
                todo = store.save(Todo(id=f"{n}-{i:02d}", title=f"thread {n}"))
                todo.done = True
                store.save(todo)
            with store.transaction():
                store.save_many(
                    Todo(id=f"{n}-bulk-{i:03d}", title=f"thread {n}") for i in range(200)
                )
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert store.count(Todo) == THREADS * 250
    assert store.count(Todo, done=True) == THREADS * 50
    for n in range(THREADS):
        assert store.count(Todo, title=f"thread {n}") == 250
