"""A process that closes a store while its threads write, for the close() tests.

python _close_child.py URL WRITERS
    opens URL, starts WRITERS threads that save (alone, in blocks and with
    save_many) until the store refuses them, closes the store from the main
    thread once every writer has stored something, and prints one line of
    JSON: the ids each writer saw stored, the errors other than
    StoreClosedError, how long close() took, how many writers outlived it by
    10 s, and how long the last writer took to stop after close() returned.
    Run in a process of its own, so that a crash is a failed test, not a
    dead test run.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time

import statekeep


class Job(statekeep.Entity, collection="close_job"):
    writer: int = 0


def main(url: str, writers: int) -> None:
    store = statekeep.open(url)
    stored: list[list[str]] = [[] for _ in range(writers)]
    errors: list[str] = []
    stopped_at: list[float] = []
    started = threading.Barrier(writers + 1)

    def write(n: int) -> None:
        first = True
        try:
            for i in range(1_000_000):
                job = f"{n}-{i}"
                if i % 3 == 0:
                    store.save(Job(id=job, writer=n))
                    stored[n].append(job)
                elif i % 3 == 1:
                    with store.transaction():
                        store.save(Job(id=job, writer=n))
                        store.save(Job(id=f"{job}-b", writer=n))
                    stored[n] += [job, f"{job}-b"]
                else:
                    store.save_many([Job(id=job, writer=n)])
                    stored[n].append(job)
                if first:
                    first = False
                    started.wait()
        except statekeep.StoreClosedError:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if first:
                started.abort()
            stopped_at.append(time.monotonic())

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        started.wait(30)
    time.sleep(0.05)
    begun = time.monotonic()
    store.close()
    closed = time.monotonic()
    for thread in threads:
        thread.join(10)
    print(
        json.dumps(
            {
                "stored": stored,
                "errors": errors,
                "close_seconds": closed - begun,
                "alive": sum(thread.is_alive() for thread in threads),
                "stop_seconds": max(stopped_at, default=closed) - closed,
            }
        )
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
