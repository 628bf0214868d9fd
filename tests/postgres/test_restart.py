"""The PostgreSQL server goes down and comes back while writes go on.

The tests make a private cluster of their own with the real cluster commands
(pg_createcluster, pg_ctlcluster, pg_dropcluster; the shared one other test
runs use is never touched), stop it (`-m fast` and `-m immediate`) and start
it again under a Store that keeps writing:

- while it is down, every read and write fails with TransientBackendError,
  within the configured timeouts; once it is back the same Store works again;
- write-behind writes acknowledged durable across the outage are all stored;
- a write-behind process killed with SIGKILL while the server is down leaves
  its durable writes in the journal, and a fresh open stores them;
- after a longer outage the store works again soon (marked slow; a BUG test,
  see its docstring).

The figures (outage, failures, durable writes) are printed: run with -s.
Under CI=true a cluster that cannot be made fails the tests; elsewhere they
are skipped, saying why.
"""

from __future__ import annotations

import functools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

import _postgres
import statekeep
from statekeep.errors import TransientBackendError

from .models import Doc, Reading, payload_of

CHILD = str(Path(__file__).with_name("_child.py"))
COMMANDS = ("pg_createcluster", "pg_ctlcluster", "pg_dropcluster")
# small limits, so that a call to a server that is down gives up soon
OPTIONS = {
    "timeout": 0.5,
    "connect_timeout": 1,
    "statement_timeout": 5,
    "pool_min": 1,
    "pool_max": 4,
}
HANG_GUARD = 12.0  # seconds no single call may take (the options allow about 1-2)
RECOVERY = 30.0  # seconds the store has to work again once the server is back


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    message = f"no private PostgreSQL cluster for the restart tests: {reason}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def installed_version() -> str | None:
    """The newest PostgreSQL version the cluster commands can make clusters of."""
    root = Path("/usr/lib/postgresql")
    versions = (
        [p.name for p in root.iterdir() if (p / "bin" / "postgres").exists()]
        if root.is_dir()
        else []
    )
    return max(
        versions, key=lambda v: [int(part) for part in v.split(".") if part.isdigit()], default=None
    )


@dataclass
class Cluster:
    version: str
    name: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed: {result.stdout}{result.stderr}")

    def ctl(self, *action: str) -> None:
        self._run("pg_ctlcluster", "--skip-systemctl-redirect", self.version, self.name, *action)

    def stop(self, mode: str) -> None:
        self.ctl("stop", "-m", mode)

    def start(self) -> None:
        self.ctl("start")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A cluster of this module's own, on a free port, with trust authentication;
    dropped (stopped first) at the end."""
    missing = [command for command in COMMANDS if shutil.which(command) is None]
    if missing:
        unavailable(f"{', '.join(missing)} not found (Debian's postgresql-common has them)")
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != "postgres":
        unavailable("making a cluster takes root or the postgres user")
    version = installed_version()
    if version is None:
        unavailable("no PostgreSQL server installed under /usr/lib/postgresql")
    made = Cluster(version, f"sk_restart_{uuid.uuid4().hex[:10]}", free_port())
    try:
        made._run(
            "pg_createcluster", version, made.name, "-p", str(made.port),
            "--start-conf=manual", "--", "--auth=trust",
        )  # fmt: skip
        made.start()
        problem = _postgres.wait_until_reachable(made.url, 30)
        assert problem is None, f"the private cluster does not answer: {problem}"
        yield made
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", version, made.name],
            capture_output=True,
            timeout=120,
            check=False,
        )


@pytest.fixture
def url(cluster: Cluster) -> Iterator[str]:
    """A fresh schema on the private cluster, with small time limits."""
    schema = _postgres.fresh_schema()
    yield _postgres.with_query(
        cluster.url, schema=schema, **{k: str(v) for k, v in OPTIONS.items()}
    )
    if _postgres.reachable(cluster.url) is not None:  # a test that failed while it was down
        cluster.start()
    _postgres.drop_schema(cluster.url, schema)


def journal_dir(url: str) -> Path:
    """Where a store of this URL keeps its write-behind journal (the backend's location)."""
    with statekeep.open(url) as store:
        return Path(store.backend.location + ".writebehind")  # type: ignore[operator]


# -- a stream of saves and reads on a thread ---------------------------------


@dataclass
class Attempt:
    started: float
    ended: float
    what: str
    error: BaseException | None = None


class Traffic(threading.Thread):
    """Saves a new Doc and reads one back, again and again, recording every call."""

    def __init__(self, store: statekeep.Store) -> None:
        super().__init__(name="traffic", daemon=True)
        self.store = store
        self.attempts: list[Attempt] = []
        self.saved: list[str] = []  # ids of the Docs whose save returned
        self.tried: list[str] = []
        self.halt = threading.Event()

    def _call(self, what: str, call: Callable[[], Any]) -> bool:
        started = time.monotonic()
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - recorded, the test checks the types
            self.attempts.append(Attempt(started, time.monotonic(), what, exc))
            return False
        self.attempts.append(Attempt(started, time.monotonic(), what))
        return True

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            doc = Doc(id=f"t{n}", title=f"doc {n}", n=n)
            self.tried.append(doc.id)
            if self._call("save", functools.partial(self.store.save, doc)):
                self.saved.append(doc.id)
            if self.saved:
                self._call("get", functools.partial(self.store.get, Doc, self.saved[-1]))
            n += 1
            time.sleep(0.005)

    def successes(self, after: float, what: str = "save") -> int:
        return sum(
            1 for a in self.attempts if a.error is None and a.what == what and a.started > after
        )

    def failures(self, after: float) -> int:
        return sum(1 for a in self.attempts if a.error is not None and a.started > after)


def eventually(condition: Callable[[], bool], seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, f"not within {seconds}s: {what}"
        time.sleep(0.01)


def fails_transiently(call: Callable[[], Any]) -> float:
    """Runs call, which must raise TransientBackendError; returns how long it took."""
    started = time.monotonic()
    with pytest.raises(TransientBackendError):
        call()
    took = time.monotonic() - started
    assert took < HANG_GUARD, f"a call to a server that is down took {took:.1f}s"
    return took


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_reads_and_writes_fail_transiently_while_down_and_work_again_after(
    cluster: Cluster, url: str, mode: str
) -> None:
    store = statekeep.open(url)
    store.save(Doc(id="before", title="before"))
    traffic = Traffic(store)
    traffic.start()
    try:
        eventually(lambda: traffic.successes(0) >= 20, 30, "saves before the stop")
        stopping = time.monotonic()
        cluster.stop(mode)
        down = time.monotonic()  # the server is gone: nothing can succeed from here

        took = [
            fails_transiently(lambda: store.get(Doc, "before")),
            fails_transiently(lambda: store.get_many(Doc, ["before"])),
            fails_transiently(lambda: list(store.find(Doc, title="before"))),
            fails_transiently(lambda: store.count(Doc)),
            fails_transiently(lambda: store.save(Doc(id="down", title="down"))),
            fails_transiently(lambda: store.save_many([Doc(title="a"), Doc(title="b")])),
            fails_transiently(lambda: store.delete(Doc, "before")),
            fails_transiently(lambda: store.save(Reading(id="new collection"))),
        ]

        def in_transaction() -> None:
            with store.transaction():
                store.save(Doc(id="in transaction"))

        took.append(fails_transiently(in_transaction))
        eventually(lambda: traffic.failures(down) >= 3, 30, "the stream of saves fails")

        starting = time.monotonic()
        cluster.start()
        up = time.monotonic()

        def works() -> bool:
            try:
                store.save(Doc(id=f"after-{time.monotonic()}", title="after"))
                return store.get(Doc, "before").title == "before"
            except TransientBackendError:
                return False

        eventually(works, RECOVERY, "the same store works again")
        recovered = time.monotonic()
        eventually(lambda: traffic.successes(recovered) >= 20, 30, "the stream of saves resumes")
    finally:
        traffic.halt.set()
        traffic.join(timeout=HANG_GUARD * 2)
        if traffic.is_alive():
            store.close()  # fails the stream's call in progress
    assert not traffic.is_alive(), "the stream of saves hangs"

    errors = [a for a in traffic.attempts if a.error is not None]
    others = [repr(a.error) for a in errors if not isinstance(a.error, TransientBackendError)]
    assert not others, f"errors other than TransientBackendError: {others[:5]}"
    slowest = max(a.ended - a.started for a in traffic.attempts)
    assert slowest < HANG_GUARD, f"a call of the stream took {slowest:.1f}s"
    impossible = [
        a for a in traffic.attempts if a.error is None and down < a.started and a.ended < starting
    ]
    assert not impossible, f"calls succeeded while the server was down: {impossible[:3]}"

    # every save that returned is stored, nothing that failed while down is,
    # and nothing else is there
    stored = {d.id for d in store.find(Doc)}
    assert set(traffic.saved) <= stored
    assert not {"down", "in transaction"} & stored
    assert "before" in stored
    assert {id for id in stored if not id.startswith("after-")} <= {"before", *traffic.tried}
    store.close()
    print(
        f"\n[{mode}] stop took {down - stopping:.2f}s, down {starting - down:.2f}s, "
        f"start took {up - starting:.2f}s, working again {recovered - up:.2f}s after start; "
        f"stream: {len(traffic.saved)} saves, {len(errors)} transient failures "
        f"(slowest call {slowest:.2f}s); calls while down took {min(took):.2f}-{max(took):.2f}s"
    )


class Enqueuer(threading.Thread):
    """Enqueues Readings r0, r1, ... in turn, each with the entity's next
    counter, until halted; keeps every receipt."""

    def __init__(self, store: statekeep.Store, entities: int) -> None:
        super().__init__(name="enqueuer", daemon=True)
        self.store = store
        self.entities = entities
        self.receipts: list[tuple[statekeep.Receipt, str, int]] = []
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        counters = [0] * self.entities
        try:
            while not self.halt.is_set():
                e = len(self.receipts) % self.entities
                counters[e] += 1
                id, counter = f"r{e}", counters[e]
                reading = Reading(id=id, counter=counter, payload=payload_of(id, counter))
                self.receipts.append((self.store.enqueue(reading), id, counter))
                if len(self.receipts) % 10 == 0:
                    time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001 - the test checks there was none
            self.error = exc


def test_writes_acknowledged_durable_across_a_restart_are_all_stored(
    cluster: Cluster, url: str
) -> None:
    options = statekeep.WriteBehindOptions(window=0.01, retry_base=0.05, retry_cap=0.5)
    store = statekeep.open(url, writebehind=options)
    stream = Enqueuer(store, entities=50)
    try:
        stream.start()
        eventually(lambda: len(stream.receipts) > 300, 30, "writes before the stop")
        eventually(lambda: stream.receipts[200][0].stored, 30, "writes stored before the stop")
        cluster.stop("immediate")  # batches are in flight: their transactions are cut off
        down = len(stream.receipts)
        eventually(lambda: len(stream.receipts) >= down + 1000, 30, "writes while down")
        eventually(lambda: store.writebehind.stats().retried >= 3, 30, "retries while down")
        during = stream.receipts[down:]
        for receipt, id, counter in during:
            assert receipt.wait_durable(timeout=10), f"{id} {counter} not durable while down"
        assert not any(receipt.stored for receipt, _, _ in during), "stored while down"
        cluster.start()
        up = len(stream.receipts)
        eventually(lambda: len(stream.receipts) >= up + 1000, 30, "writes after the restart")
        stream.halt.set()
        stream.join(timeout=30)
        assert not stream.is_alive() and stream.error is None, stream.error
        receipts = stream.receipts
        durable = [(id, counter) for receipt, id, counter in receipts if receipt.wait_durable(10)]
        assert store.flush(timeout=RECOVERY), "not all stored after the restart"
        assert all(receipt.stored and receipt.error is None for receipt, _, _ in receipts)
        stats = store.writebehind.stats()
    finally:
        stream.halt.set()
        store.close(timeout=5)

    latest: dict[str, int] = {}
    for id, counter in durable:
        latest[id] = max(latest.get(id, 0), counter)
    with statekeep.open(url) as reopened:
        found = {r.id: r for r in reopened.find(Reading)}
    lost = {
        id: (counter, found[id].counter if id in found else None)
        for id, counter in latest.items()
        if id not in found or found[id].counter != counter
    }
    assert not lost, f"durable writes not stored (acknowledged, stored): {lost}"
    assert all(r.payload == payload_of(id, r.counter) for id, r in found.items())
    print(
        f"\n[write-behind] {len(receipts)} writes ({len(during)} while down), "
        f"{len(durable)} durable, {stats.stored} stored in {stats.retried} retries "
        f"(coalesced), all stored: {not lost}"
    )


def read_acks(path: Path) -> tuple[dict[str, int], int]:
    """The highest acknowledged counter by id, and how many acknowledgements."""
    acked: dict[str, int] = {}
    lines = [line for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]
    for line in lines:
        id, counter = line.split()
        acked[id] = max(acked.get(id, 0), int(counter))
    return acked, len(lines)


def test_durable_writes_of_a_process_killed_while_the_server_is_down_are_stored(
    cluster: Cluster, url: str, tmp_path: Path
) -> None:
    journal = journal_dir(url)
    acks = tmp_path / "acks"
    log = tmp_path / "child.log"
    with log.open("wb") as output:
        child = subprocess.Popen(
            [sys.executable, CHILD, "stream", url, str(tmp_path), "40"],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        eventually(
            lambda: child.poll() is not None or (acks.exists() and read_acks(acks)[1] >= 200),
            60,
            "acknowledgements",
        )
        assert child.poll() is None, log.read_text()
        cluster.stop("fast")
        before = read_acks(acks)[1]
        eventually(lambda: read_acks(acks)[1] >= before + 500, 30, "acknowledgements while down")
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL, log.read_text()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    acked, count = read_acks(acks)
    assert any(journal.glob("segment-*.log")), "no journal left by the killed process"
    cluster.start()

    with statekeep.open(url) as store:  # recovery runs here
        assert store.flush(timeout=RECOVERY)
        found = {r.id: r for r in store.find(Reading)}
    lost = {
        id: (counter, found[id].counter if id in found else None)
        for id, counter in acked.items()
        if id not in found or found[id].counter < counter
    }
    assert not lost, f"durable writes not stored (acknowledged, stored): {lost}"
    assert all(r.payload == payload_of(id, r.counter) for id, r in found.items())
    assert not any(journal.glob("segment-*.log")), "journal left after a clean close"
    print(
        f"\n[SIGKILL while down] {count} acknowledgements ({count - before} while down), "
        f"{len(acked)} entities, all stored: {not lost}"
    )


LONG_OUTAGE = 17.0  # seconds: psycopg_pool's reconnection attempts are then 16 s apart
SOON = 5.0  # seconds after the server is back: connect_timeout + timeout, and more


@pytest.mark.slow
def test_the_store_works_soon_after_a_long_outage(cluster: Cluster, url: str) -> None:
    """BUG (reported, fails until fixed): once the pool's connections are lost,
    psycopg_pool reconnects in the background with exponential backoff (1, 2,
    4, 8, 16 s ... between attempts, up to reconnect_timeout, 5 min) and
    PostgresBackend waits for it: begin() and reads only wait `timeout` for a
    pooled connection (PoolTimeout), and pool.check() does not start a new
    attempt while one is scheduled. So after an outage of D seconds the store
    keeps failing for up to about D more seconds after the server is back
    (measured: 15 s after a 40 s outage), and a write-behind queue stays stuck
    that long. Expected: working within about connect_timeout + timeout,
    e.g. by connecting directly when the pool has no connection to give."""
    store = statekeep.open(url)
    try:
        store.save(Doc(id="before", title="before"))
        cluster.stop("fast")
        stopped = time.monotonic()
        failures = 0
        while time.monotonic() - stopped < LONG_OUTAGE:  # the retries of a write-behind flusher
            fails_transiently(lambda: store.save(Doc(title="down")))
            failures += 1
            time.sleep(0.5)
        cluster.start()
        up = time.monotonic()

        def works() -> bool:
            try:
                store.save(Doc(title="after"))
                return store.get(Doc, "before").title == "before"
            except TransientBackendError:
                return False

        eventually(works, 60, "the store works again")
        recovered = time.monotonic() - up
        print(
            f"\n[long outage] down {up - stopped:.1f}s, {failures} failures while down, "
            f"working again {recovered:.1f}s after the server was back"
        )
        assert recovered < SOON, f"the store failed for {recovered:.1f}s after the server was back"
    finally:
        store.close()
