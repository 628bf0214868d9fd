"""Several stores writing behind into one database each keep a journal of their own.

A store that opened another live store's journal would take its pending
writes for a crashed run's and store them again (found by the demo: a second
process on the same file stored a quarter of the first one's writes twice).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ._support import eventually, journal_dir
from .conftest import OpenFaulty, OpenStore
from .models import Doc

pytestmark = pytest.mark.requires("persistent")


def test_a_second_store_leaves_a_live_stores_pending_writes_alone(
    open_store: OpenStore, open_faulty: OpenFaulty
) -> None:
    first, faulty = open_faulty()
    faulty.gate.clear()  # the first store's writes stay pending (journaled, not stored)
    receipts = [first.enqueue(Doc(id=f"d{i}", title="first")) for i in range(50)]
    assert all(r.wait_durable(10) for r in receipts)
    eventually(faulty.waiting.is_set, what="the first store's flusher to hold its batch")

    second = open_store()  # recovers nothing: the first store is alive
    second.enqueue(Doc(id="own", title="second")).wait_stored(10)
    assert second.flush(10)
    assert second.count(Doc) == 1

    faulty.gate.set()
    assert first.flush(10)
    assert {d.id: d.version for d in second.find(Doc)} == {
        **{f"d{i}": 1 for i in range(50)},
        "own": 1,
    }


def test_each_live_store_holds_a_journal_directory_of_its_own(open_store: OpenStore) -> None:
    stores = [open_store() for _ in range(3)]
    for number, store in enumerate(stores):
        store.enqueue(Doc(id=f"s{number}", title="x")).wait_durable(10)
    holders = {store.writebehind._journal.directory for store in stores}  # type: ignore[union-attr]
    assert len(holders) == 3
    base = journal_dir(stores[0].url)
    assert all(path == base or path.parent == base for path in holders)
    for store in stores:
        assert store.flush(10)
    assert stores[0].count(Doc) == 3


CHILD = """
import sys, time, statekeep
sys.path.insert(0, {tests!r})
from writebehind.models import Doc

# NORMAL writes wait up to `window` for company: these stay journaled, not stored
store = statekeep.open({url!r}, writebehind=statekeep.WriteBehindOptions(window=60))
for i in range(20):
    store.enqueue(Doc(id=f"crashed{{i}}", title="from a crashed run")).wait_durable(10)
print("ready", flush=True)
time.sleep(60)
"""


def test_the_journal_of_a_crashed_second_store_is_recovered(
    open_store: OpenStore, store_url: str
) -> None:
    first = open_store()
    first.enqueue(Doc(id="live", title="x")).wait_durable(10)  # the first holds the base journal
    code = CHILD.format(tests=str(Path(__file__).parents[1]), url=store_url)
    with subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env=dict(os.environ)
    ) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(30)
    assert first.count(Doc, Doc.f.id.startswith("crashed")) == 0  # only journaled

    later = open_store()  # claims the crashed child's directory and stores its writes
    deadline = time.monotonic() + 10
    while later.count(Doc, Doc.f.id.startswith("crashed")) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert later.flush(10)
    assert later.count(Doc, Doc.f.id.startswith("crashed")) == 20
