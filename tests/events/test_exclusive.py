"""A durable subscription name has one consumer at a time, across processes:
a second consumer stands by and takes over, from the checkpoint, when the
holder stops or dies (SIGKILL included)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

import statekeep
from statekeep.backends._postgres_sessions import lock_key

from ._support import Recorder, outbox_events, start_child, wait_for
from .models import Item
from .test_cross_process import CHILD, count_lines, read_log, terminate, wait_until

if TYPE_CHECKING:
    from statekeep.backends.postgres import PostgresBackend

OpenStore = Callable[..., statekeep.Store]


def test_a_name_is_claimed_by_one_holder_at_a_time(outbox_store: statekeep.Store) -> None:
    backend = outbox_store.backend
    first = backend.claim("billing")
    assert first is not None and first.held()
    assert backend.claim("billing") is None
    other = backend.claim("shipping")  # names are claimed one by one
    assert other is not None
    first.release()
    assert not first.held()
    again = backend.claim("billing")
    assert again is not None
    again.release()
    other.release()


@pytest.mark.requires("persistent")
def test_a_second_store_stands_by_and_takes_over_when_the_first_stops(
    outbox_store: statekeep.Store, open_store: OpenStore
) -> None:
    writer = outbox_store
    other = open_store(outbox=True, outbox_retention=None)
    first, second = Recorder(), Recorder()
    holder = writer.subscribe("billing", first)
    wait_for(lambda: holder.active, what="the first subscription to claim its name")
    standby = other.subscribe("billing", second)
    for n in range(20):
        writer.save(Item(id=f"a{n}", n=n))
    assert holder.wait_idle(20)
    time.sleep(0.3)  # longer than a standby's try: it stays out
    assert not standby.active
    assert len(first) == 20 and len(second) == 0

    holder.stop()  # its checkpoint is saved: the standby goes on from there
    wait_for(lambda: standby.active, what="the standby to take over")
    for n in range(20, 30):
        writer.save(Item(id=f"a{n}", n=n))
    assert standby.wait_idle(20)
    committed = [event.event_id for event in outbox_events(writer)]
    assert [e.event_id for e in first.events + second.events] == committed  # each once


def consumer(url: str, directory: Path, label: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    ready, log, output = (directory / f"{kind}-{label}" for kind in ("ready", "log", "output"))
    child = start_child(
        [sys.executable, CHILD, "consume", url, "billing", str(log), str(ready), "none"], output
    )
    wait_until(ready.exists, child, output, 60, f"consumer {label} to subscribe")
    return child, log, output


@pytest.mark.requires("persistent")
def test_two_processes_never_both_handle_and_a_killed_holder_is_taken_over(
    outbox_store: statekeep.Store, store_url: str, tmp_path: Path
) -> None:
    store = outbox_store
    store.save(Item(id="first"))
    a, a_log, a_output = consumer(store_url, tmp_path, "a")
    wait_until(lambda: count_lines(a_log) == 1, a, a_output, 60, "consumer a to hold the name")
    b, b_log, b_output = consumer(store_url, tmp_path, "b")
    for n in range(200):
        store.save(Item(id=f"i{n % 20}-{n}", n=n))
    wait_until(lambda: count_lines(a_log) == 201, a, a_output, 60, "a to handle every event")
    time.sleep(0.5)  # two standby tries
    assert count_lines(b_log) == 0, "both processes handled events"

    a.send_signal(signal.SIGKILL)
    assert a.wait(20) == -signal.SIGKILL
    for n in range(200, 300):
        store.save(Item(id=f"i{n % 20}-{n}", n=n))
    committed = [event.event_id for event in outbox_events(store)]
    wait_until(
        lambda: bool(read_log(b_log)) and read_log(b_log)[-1].event_id == committed[-1],
        b,
        b_output,
        60,
        "b to take over and handle the rest",
    )
    terminate(b, b_output)
    handled_a = [line.event_id for line in read_log(a_log)]
    handled_b = [line.event_id for line in read_log(b_log)]
    assert handled_a == committed[:201]
    # b resumes from a's last checkpoint: a stretch a handled may come again, nothing is skipped
    start = committed.index(handled_b[0])
    assert start <= 201
    assert handled_b == committed[start:]


@pytest.mark.requires("postgresql")
def test_a_holder_that_loses_its_session_stands_by_and_the_other_takes_over(
    outbox_store: statekeep.Store, open_store: OpenStore
) -> None:
    """The advisory lock goes with the claim's session: a holder whose
    connection is cut stops delivering; the standby goes on from the checkpoint."""
    import psycopg

    writer = outbox_store
    first, second = Recorder(), Recorder()
    holder = writer.subscribe("billing", first)
    wait_for(lambda: holder.active, what="the first subscription to claim its name")
    other = open_store(outbox=True, outbox_retention=None)
    standby = other.subscribe("billing", second)
    writer.save(Item(id="a"))
    assert holder.wait_idle(20)
    server = writer.url.split("?", 1)[0]
    schema = cast("PostgresBackend", writer.backend).schema
    key = lock_key(schema, "billing") & 0xFFFFFFFFFFFFFFFF  # as pg_locks shows a bigint key
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks "
            "WHERE locktype = 'advisory' AND objsubid = 1 AND granted AND pid IN "
            "(SELECT pid FROM pg_stat_activity WHERE datname = current_database()) "
            "AND classid::bigint = %s AND objid::bigint = %s",
            (key >> 32, key & 0xFFFFFFFF),
        )
    wait_for(lambda: standby.active, what="the standby to take over")
    for n in range(5):
        writer.save(Item(id=f"b{n}"))
    assert standby.wait_idle(20)
    wait_for(lambda: not holder.active, what="the first to stand by")
    assert [e.entity_id for e in second.events][-5:] == [f"b{n}" for n in range(5)]
    assert all(e.entity_id == "a" for e in first.events)  # nothing after its claim went


@pytest.mark.requires("persistent")
def test_a_claim_is_not_kept_by_a_child_forked_while_it_was_held(
    outbox_store: statekeep.Store, open_store: OpenStore
) -> None:
    """A process that forks (multiprocessing's default on Linux) while one of
    its subscriptions holds a name: the child gets copies of its descriptors,
    and must not keep the claim once the holder stops."""
    import os

    writer = outbox_store
    other = open_store(outbox=True, outbox_retention=None)
    holder = writer.subscribe("billing", Recorder())
    wait_for(lambda: holder.active, what="the first subscription to claim its name")
    child = os.fork()
    if child == 0:  # the child lives on, doing something else
        time.sleep(20)
        os._exit(0)
    try:
        holder.stop()
        second = Recorder()
        standby = other.subscribe("billing", second)
        wait_for(lambda: standby.active, timeout=5, what="the other store to take over")
        writer.save(Item(id="after", n=1))
        assert standby.wait_idle(20)
        assert [e.entity_id for e in second.events] == ["after"]
        standby.stop()
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


@pytest.mark.requires("persistent")
def test_a_killed_holder_is_taken_over_though_a_child_it_forked_lives_on(
    open_store: OpenStore, store_url: str
) -> None:
    """The holder forked a worker, then was SIGKILLed: the worker's copies of
    the claim's lock file or PostgreSQL socket must not keep the name."""
    import os

    other = open_store(outbox=True, outbox_retention=None)
    ready_r, ready_w = os.pipe()
    holder = os.fork()
    if holder == 0:  # the holder: subscribes, forks a worker, then waits to be killed
        try:
            store = statekeep.open(store_url, outbox=True, outbox_retention=None)
            subscription = store.subscribe("billing", lambda event: None)
            while not subscription.active:
                time.sleep(0.01)
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
            os.write(ready_w, b"ready")
            time.sleep(30)
        finally:
            os._exit(0)
    worker_pid = 0
    try:
        assert os.read(ready_r, 5) == b"ready"
        standby = other.subscribe("billing", Recorder())
        time.sleep(0.3)
        assert not standby.active
        # the worker is the holder's child: find it before the holder goes
        children = Path(f"/proc/{holder}/task/{holder}/children").read_text().split()
        worker_pid = int(children[0])
        os.kill(holder, signal.SIGKILL)
        os.waitpid(holder, 0)
        wait_for(lambda: standby.active, timeout=5, what="the standby to take over")
        standby.stop()
    finally:
        if worker_pid:
            os.kill(worker_pid, signal.SIGKILL)
        os.close(ready_r)
        os.close(ready_w)


def test_a_sqlite_file_uri_claims_names_across_stores(tmp_path: Path) -> None:
    """sqlite:///file:<path>?... opens a file that other processes share, like
    sqlite:///<path>: its claims must be lock files too, not this store's own."""
    url = f"sqlite:///file:{tmp_path}/app.db"
    first = statekeep.open(url, outbox=True, outbox_retention=None)
    second = statekeep.open(url, outbox=True, outbox_retention=None)
    try:
        holder = first.subscribe("billing", Recorder())
        wait_for(lambda: holder.active, what="the first subscription to claim its name")
        standby = second.subscribe("billing", Recorder())
        time.sleep(0.5)
        assert not standby.active
        holder.stop()
        wait_for(lambda: standby.active, what="the standby to take over")
        standby.stop()
    finally:
        first.close()
        second.close()
    assert (tmp_path / "app.db.subscriptions").is_dir()
