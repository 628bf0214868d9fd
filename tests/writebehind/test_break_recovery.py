"""Breaking the write-behind engine v2: recovery of a killed process's journal
by a live sibling (real processes killed with SIGKILL, a real SQLite file,
real PostgreSQL behind a TCP proxy that is cut)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from urllib.parse import urlsplit, urlunsplit

import pytest

import statekeep
from statekeep import Entity, WriteBehindOptions

from ._proxy import Proxy


class BrkLapped(statekeep.Event):
    n: int


class BrkLap(Entity, collection="brk_lap"):
    seconds: int = 0


# A child process: enqueues, waits until the journal has it, dies of SIGKILL.
# Its classes are the test module's (same collection and event names).
CHILD_PRELUDE = textwrap.dedent(
    """
    import os, signal, sys
    import statekeep
    from statekeep import Entity

    class BrkLapped(statekeep.Event):
        n: int

    class BrkLap(Entity, collection="brk_lap"):
        seconds: int = 0

    store = statekeep.open(
        sys.argv[1], writebehind={"durability": "journal", "window": 60, "drain_on_sigterm": False}
    )
    """
)

TWO_RECORDS_WITH_EVENTS = CHILD_PRELUDE + textwrap.dedent(
    """
    lap = BrkLap(id="l1", seconds=1)
    lap.record(BrkLapped(n=1))
    assert store.enqueue(lap).wait_durable(5)     # journaled: events (1,)
    lap.seconds = 2
    lap.record(BrkLapped(n=2))
    assert store.enqueue(lap).wait_durable(5)     # coalesced, journaled again: events (1, 2)
    print("durable", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)

ONE_WRITE = CHILD_PRELUDE + textwrap.dedent(
    """
    assert store.enqueue(BrkLap(id="orphan", seconds=7)).wait_durable(5)
    print("durable", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def run_child(code: str, url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", code, url],
        capture_output=True,
        text=True,
        timeout=30,
        env=os.environ.copy(),
    )
    assert done.stdout.strip() == "durable", done.stderr[-2000:]
    assert done.returncode == -9


def through(url: str, port: int) -> str:
    """url with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    netloc = f"{user}@127.0.0.1:{port}" if user else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.mark.requires("persistent", "sqlite")
def test_domain_events_of_a_coalesced_write_are_delivered_once_after_a_crash(
    store_url: str,
) -> None:
    """Promise: domain events recorded on an entity travel with its enqueued
    write (docs/events.md), and acknowledged-durable writes are stored
    exactly once after a crash - their events, too, go out once.

    Observed: a child enqueues an entity with event n=1, then (coalesced
    into the same pending write) again with event n=2; each enqueue is
    journaled, and the child is killed. The live sibling that adopts the
    journal stores the write once but delivers [1, 1, 2]: event 1 twice.
    Every journal record of a coalesced write carries all its events so
    far, and recovery concatenates the events of every record."""
    store = statekeep.open(store_url, writebehind=WriteBehindOptions(window=0.01))
    try:
        seen: list[int] = []
        store.on(BrkLapped, lambda event: seen.append(event.n))
        assert store.enqueue(BrkLap(id="warm")).wait_stored(timeout=5)  # the engine runs
        run_child(TWO_RECORDS_WITH_EVENTS, store_url)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(seen) < 2:
            time.sleep(0.02)
        time.sleep(0.3)  # any further (duplicate) delivery
        assert store.flush(timeout=5)
        assert store.get(BrkLap, "l1").seconds == 2
        assert seen == [1, 2], f"events of the recovered write delivered as {seen}"
    finally:
        store.close()


@pytest.mark.requires("postgresql")
def test_a_journal_adopted_during_an_outage_is_stored_once_the_database_is_back(
    store_url: str,
) -> None:
    """Promise: a dead process's journal is adopted by a live sibling within
    about 1-2 s, and after a database outage writes flow within 1 s of its
    return.

    Observed: a child's durable write is left in its journal by SIGKILL
    while the database is unreachable. The live sibling's journal thread
    moves the dead journal's segments into its own journal, then fails to
    read the notes (the database is down) and gives up on them: after the
    database is back, the write is not stored (4 s later, nor ever while
    the sibling runs; only a restart of the sibling recovers it from its
    own journal). Cause: JournalThread._adopt_dead/_take_over - the segments
    are adopted (renamed) before read_notes, whose failure drops the records."""
    parts = urlsplit(store_url)
    with Proxy(parts.hostname or "127.0.0.1", parts.port or 5432) as proxy:
        url = through(store_url, proxy.port)  # the same journal location for both
        store = statekeep.open(url, writebehind=WriteBehindOptions(window=0.01, retry_base=0.05))
        try:
            assert store.enqueue(BrkLap(id="warm")).wait_stored(timeout=5)  # the engine runs
            run_child(ONE_WRITE, url)
            proxy.cut()
            time.sleep(2.5)  # the sibling looks for dead journals about once a second
            proxy.restore()
            back = time.monotonic()
            found = False
            with statekeep.open(store_url, writebehind=WriteBehindOptions(journal=None)) as reader:
                while time.monotonic() - back < 4 and not found:
                    found = bool(reader.get_many(BrkLap, ["orphan"]))
                    time.sleep(0.1)
            assert found, (
                "the killed process's durable write was not stored within 4 s of the "
                f"database's return (last error: {store.writebehind.stats().last_error})"
            )
        finally:
            store.close()


class BrkDoc(Entity, collection="brk_doc", last_write_wins=True):
    title: str = ""


LATER_WRITE = textwrap.dedent(
    """
    import os, signal, sys
    import statekeep
    from statekeep import Entity

    class BrkDoc(Entity, collection="brk_doc", last_write_wins=True):
        title: str = ""

    store = statekeep.open(
        sys.argv[1], writebehind={"durability": "journal", "window": 60, "drain_on_sigterm": False}
    )
    assert store.enqueue(BrkDoc(id="x", title="from the killed process")).wait_durable(5)
    print("durable", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.requires("persistent", "sqlite")
def test_an_adopted_durable_write_is_not_dropped_for_an_older_pending_one(
    store_url: str,
) -> None:
    """Promise: acknowledged-durable writes are stored exactly once after
    crashes (a live sibling adopts a dead process's journal), and for one
    entity the stored content is never an older one than the last enqueued.

    Observed: the live store enqueues x = "from the live process" (pending:
    window 3 s); then a child enqueues x = "from the killed process", sees
    it durable, and is killed. The live store adopts the child's journal
    and silently drops the child's write because a write of x is pending:
    the older content is stored (version 1), the child's acknowledged write
    never is, and no dead letter or error says so. Cause:
    JournalThread._take_over - `newer = self._pending.get(key)` keeps the
    live write and only takes over the adopted record ids (marked done when
    the live write is stored)."""
    store = statekeep.open(store_url, writebehind=WriteBehindOptions(window=3))
    try:
        live = store.enqueue(BrkDoc(id="x", title="from the live process"))
        run_child(LATER_WRITE, store_url)
        time.sleep(2)  # adopted meanwhile (the live store looks about once a second)
        assert store.flush(timeout=5) and live.stored
        stored = store.get(BrkDoc, "x")
        assert not store.writebehind.dead_letters()
        assert stored.title == "from the killed process" or stored.version == 2, (
            f"the killed process's durable write was never stored: x is {stored!r}"
        )
    finally:
        store.close()
