"""Processes the exactness tests (test_exact_*) kill, signal or run side by side.

Each writes what the parent must know as lines on its standard output, one
os.write() per line (or per group of whole lines under PIPE_BUF), so a line
the parent reads was written whole before any kill.

python _exact_child.py MODE URL ARGS...   (or: spawner -)

hold COUNT PREFIX [UPDATE_ID]
    enqueues COUNT Marks (ids PREFIX0, PREFIX1, ...) that wait in the queue
    (journaled, a window of an hour); with UPDATE_ID, also an update of that
    stored Mark (read, title "from PREFIX", enqueued: based on the version
    read). Waits until all are durable, writes "ready" and sleeps.
pause
    (run with STATEKEEP_TEST_PAUSE_AFTER_COMMIT set) enqueues Mark "e" as
    CRITICAL, journaled; once it is committed, enqueues Mark "probe" as
    CRITICAL and writes "probing": while the engine pauses after the commit
    of "e", "probe" is not stored.
shed
    max_pending 5, policy shed_low: enqueues five LOW Marks l0..l4, waits
    until they are durable, then a sixth (NORMAL) entity, which sheds l0.
    As soon as l0's receipt says so, writes "shed l0" and kills itself.
shared-writer NAME COUNT IDS SEED EVERY
    writes "ready", waits for a line on stdin, then enqueues COUNT Shared
    writes (n = 1..COUNT, writer NAME, every third CRITICAL) spread over IDS
    ids, pausing 1 ms every EVERY writes (many small batches); flushes and
    writes "result <errors> <dead letters> <unsettled> <error kinds>" and
    "last <id> <n>" for each id.
saver COUNT IDS SEED
    writes "ready", waits for a line on stdin, then saves COUNT times a
    Shared it reads (writer "saver"), again after a ConflictError.
sigterm-thread COUNT
    opens the store on the main thread, enqueues COUNT Marks from another
    thread (the first enqueue is not on the main thread), waits until they
    are durable, writes "ready" and sleeps on the main thread.
sigterm-opt-out
    drain_on_sigterm=False: enqueues on the main thread, writes "handler
    default" (or "handler installed") and "ready", and sleeps.
sigterm-off-main COUNT
    opens the store and enqueues COUNT Marks on another thread; writes
    "warnings <n>" (statekeep's warnings naming install_sigterm_handler,
    logged or warnings.warn()),
    calls statekeep.writebehind.install_sigterm_handler() on the main
    thread, writes "ready" and sleeps.
stress SEED WRITES IDS PREFIX
    reads the stored Plains PREFIX0.. (their versions and counters), writes
    "ready", then enqueues WRITES writes (stress_plan) under policy shed_low
    (max_pending 250 of IDS 300: LOW writes are shed), NORMAL ones waiting up
    to 0.3 s for company (many acknowledged writes pending at any moment),
    each based on the version read. A thread reports every receipt's news:
    "D id counter priority" once durable, "S ..." once stored, "F ... Error"
    once failed; "R ..." is a write enqueue refused (QueueFullError).
    Flushes, writes "done" and closes.
spawner -
    forks a child (any of the above) per request on stdin: see spawner().
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import random
import signal
import sys
import threading
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import statekeep
from statekeep import (
    ConflictError,
    NotFoundError,
    Policy,
    Priority,
    QueueFullError,
    Receipt,
    WriteBehindOptions,
)
from writebehind._exact import Mark, Plain, Shared, journaled, payload_of, stress_plan

PRIORITIES = (Priority.LOW, Priority.NORMAL, Priority.CRITICAL)
PIPE_BUF = 4096


def say(*lines: str) -> None:
    """Writes whole lines, in os.write() calls of at most PIPE_BUF bytes."""
    chunk = b""
    for line in lines:
        data = (line + "\n").encode()
        if len(chunk) + len(data) > PIPE_BUF:
            os.write(1, chunk)
            chunk = b""
        chunk += data
    if chunk:
        os.write(1, chunk)


def sleep_forever() -> None:
    while True:
        time.sleep(3600)


def waits(**options: Any) -> WriteBehindOptions:
    """Journaled, and NORMAL and LOW writes wait an hour for company."""
    return WriteBehindOptions(**journaled(window=3600, low_max_age=3600, **options))


def hold(url: str, count: int, prefix: str, update: str | None) -> None:
    store = statekeep.open(url, writebehind=waits())
    receipts = [
        store.enqueue(Mark(id=f"{prefix}{n}", title=f"held {n}", n=n)) for n in range(count)
    ]
    if update is not None:
        older = store.get(Mark, update)
        older.title = f"from {prefix}"
        receipts.append(store.enqueue(older))
    for receipt in receipts:
        assert receipt.wait_durable(30)
    assert not any(receipt.stored for receipt in receipts)
    say("ready")
    sleep_forever()


def pause(url: str) -> None:
    assert os.environ.get("STATEKEEP_TEST_PAUSE_AFTER_COMMIT")
    store = statekeep.open(url, writebehind=WriteBehindOptions(**journaled(window=0.01)))
    store.enqueue(Mark(id="e", title="enqueued"), Priority.CRITICAL)
    end = time.monotonic() + 30
    while not store.get_many(Mark, ["e"]):  # committed by another thread: nothing to wait on
        assert time.monotonic() < end, "e was not committed within 30 s"
        time.sleep(0.002)
    store.enqueue(Mark(id="probe", title="probe"), Priority.CRITICAL)
    say("probing")
    sleep_forever()


def shed(url: str) -> None:
    store = statekeep.open(url, writebehind=waits(policy=Policy.SHED_LOW, max_pending=5))
    lows = [store.enqueue(Mark(id=f"l{n}", title="low", n=n), Priority.LOW) for n in range(5)]
    for receipt in lows:
        assert receipt.wait_durable(30)
    store.enqueue(Mark(id="n", title="normal"))  # a sixth entity: the oldest LOW write goes
    try:
        lows[0].wait_stored(30)
    except QueueFullError:
        say("shed l0")
        os.kill(os.getpid(), signal.SIGKILL)
    say("l0 was not shed")


def shared_writer(url: str, name: str, count: int, ids: int, seed: int, every: int) -> None:
    store = statekeep.open(url)
    rng = random.Random(seed)
    say("ready")
    sys.stdin.readline()
    receipts: list[Receipt] = []
    last: dict[str, int] = {}
    for n in range(1, count + 1):
        id = f"s{rng.randrange(ids)}"
        receipts.append(store.enqueue(Shared(id=id, n=n, writer=name), PRIORITIES[n % 3]))
        last[id] = n
        if n % every == 0:
            time.sleep(0.001)  # spread over many batches: many chances to race
    assert store.flush(120), "flush timed out"
    errors = Counter(type(r.error).__name__ for r in receipts if r.error is not None)
    unsettled = sum(1 for r in receipts if r.error is None and not r.stored)
    dead = len(store.writebehind.dead_letters())
    kinds = ",".join(f"{kind}:{n}" for kind, n in sorted(errors.items())) or "-"
    say(
        f"result {sum(errors.values())} {dead} {unsettled} {kinds}",
        *(f"last {id} {n}" for id, n in sorted(last.items())),
    )
    store.close()


def saver(url: str, count: int, ids: int, seed: int) -> None:
    store = statekeep.open(url)
    rng = random.Random(seed)
    say("ready")
    sys.stdin.readline()
    conflicts = 0
    for n in range(1, count + 1):
        id = f"s{rng.randrange(ids)}"
        while True:
            try:
                entity = store.get(Shared, id)
            except NotFoundError:
                entity = Shared(id=id)
            entity.n, entity.writer = -n, "saver"
            try:
                store.save(entity)
                break
            except ConflictError:
                conflicts += 1  # a real conflict of save(): read again
    say(f"result {conflicts}")
    store.close()


def enqueue_and_wait(store: statekeep.Store, count: int) -> None:
    receipts = [store.enqueue(Mark(id=f"t{n}", title="before SIGTERM", n=n)) for n in range(count)]
    for receipt in receipts:
        assert receipt.wait_durable(30)
    assert not any(receipt.stored for receipt in receipts)


def in_thread(work: Callable[[], None]) -> None:
    failed: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


def sigterm_thread(url: str, count: int) -> None:
    store = statekeep.open(url, writebehind=waits())
    in_thread(lambda: enqueue_and_wait(store, count))
    say("ready")
    sleep_forever()


def sigterm_opt_out(url: str) -> None:
    options: dict[str, Any] = {"drain_on_sigterm": False}  # an option of issue 11
    store = statekeep.open(url, writebehind=WriteBehindOptions(**options))
    assert store.enqueue(Mark(id="a", title="x")).wait_stored(30)
    installed = signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    say("handler installed" if installed else "handler default", "ready")
    sleep_forever()


class Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def sigterm_off_main(url: str, count: int) -> None:
    caught = Warnings()
    logging.getLogger("statekeep").addHandler(caught)
    opened: list[statekeep.Store] = []

    def open_and_enqueue() -> None:
        opened.append(statekeep.open(url, writebehind=waits()))
        enqueue_and_wait(opened[0], count)

    with warnings.catch_warnings(record=True) as warned:  # logged, or a Python warning
        warnings.simplefilter("always")
        in_thread(open_and_enqueue)
    messages = caught.messages + [str(w.message) for w in warned]
    naming = [m for m in messages if "install_sigterm_handler" in m]
    say(f"warnings {len(naming)}")
    install = getattr(statekeep.writebehind, "install_sigterm_handler", None)
    assert install is not None, "statekeep.writebehind.install_sigterm_handler does not exist"
    install()
    say("ready")
    sleep_forever()


def stress(url: str, seed: int, writes: int, ids: int, prefix: str) -> None:
    options = WriteBehindOptions(policy=Policy.SHED_LOW, max_pending=250, window=0.3)
    store = statekeep.open(url, writebehind=options)
    names = [f"{prefix}{n}" for n in range(ids)]
    found = store.get_many(Plain, names)
    versions = {id: entity.version for id, entity in found.items()}
    start = {id: found[id].counter if id in found else 0 for id in names}
    handoff: queue.SimpleQueue[tuple[Receipt, str] | None] = queue.SimpleQueue()
    reporter = threading.Thread(target=report, args=(handoff,), name="report")
    reporter.start()
    say("ready")
    for n, (id, counter, priority) in enumerate(stress_plan(seed, writes, names, start), 1):
        entity = Plain(
            id=id, counter=counter, payload=payload_of(id, counter), version=versions.get(id, 0)
        )
        what = f"{id} {counter} {priority}"
        try:
            handoff.put((store.enqueue(entity, PRIORITIES[priority]), what))
        except QueueFullError:
            say(f"R {what}")
        if n % 50 == 0:
            time.sleep(0.002)
    handoff.put(None)
    reporter.join()
    assert store.flush(120), "flush timed out"
    say("done")
    store.close()


def report(handoff: queue.SimpleQueue[tuple[Receipt, str] | None]) -> None:
    """Tells the parent each receipt's news, polling (receipts have no callback)."""
    watching: list[tuple[Receipt, str, list[bool]]] = []
    ended = False
    while not ended or watching:
        while True:
            try:
                entry = handoff.get_nowait()
            except queue.Empty:
                break
            if entry is None:
                ended = True
                break
            watching.append((*entry, [False]))
        lines, keep = [], []
        for receipt, what, said in watching:
            error = receipt.error
            if error is not None:
                lines.append(f"F {what} {type(error).__name__}")
                continue
            if not said[0] and receipt.durable:
                lines.append(f"D {what}")
                said[0] = True
            if receipt.stored:
                lines.append(f"S {what}")
                continue
            keep.append((receipt, what, said))
        watching = keep
        if lines:
            say(*lines)
        time.sleep(0.003)


def spawner() -> None:
    """Forks a child per line of stdin, {"out": FIFO, "err": log, "args": [...]}
    (statekeep is imported already), and answers "pid N". Its children are
    reaped by the system (SIGCHLD ignored); it ends at the end of its input."""
    import statekeep.backends.sqlite  # imported once, for every child

    with contextlib.suppress(ImportError):  # the postgresql extra
        import statekeep.backends.postgres  # noqa: F401
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    while line := sys.stdin.buffer.readline():
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            forked(request["out"], request["err"], request["args"])
        os.write(1, f"pid {pid}\n".encode())


def forked(out: str, err: str, args: list[str]) -> None:
    """The forked child: its output to the FIFO, its errors to the log."""
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.dup2(os.open(out, os.O_WRONLY), 1)  # waits for the parent's reader
        os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644), 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        sys.stdin = open(os.devnull)  # noqa: SIM115 - not the spawner's buffered requests
        main(args)
        code = 0
    except BaseException:  # noqa: BLE001 - reported on the log, then the process ends
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


def main(argv: list[str]) -> None:
    mode, url, *rest = argv
    if mode == "spawner":
        spawner()
    elif mode == "hold":
        hold(url, int(rest[0]), rest[1], rest[2] if len(rest) > 2 else None)
    elif mode == "pause":
        pause(url)
    elif mode == "shed":
        shed(url)
    elif mode == "shared-writer":
        shared_writer(url, rest[0], int(rest[1]), int(rest[2]), int(rest[3]), int(rest[4]))
    elif mode == "saver":
        saver(url, int(rest[0]), int(rest[1]), int(rest[2]))
    elif mode == "sigterm-thread":
        sigterm_thread(url, int(rest[0]))
    elif mode == "sigterm-opt-out":
        sigterm_opt_out(url)
    elif mode == "sigterm-off-main":
        sigterm_off_main(url, int(rest[0]))
    elif mode == "stress":
        stress(url, int(rest[0]), int(rest[1]), int(rest[2]), rest[3])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
