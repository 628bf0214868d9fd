"""The files backend's own failure modes: processes killed in the middle of a
commit, crash leftovers recovered by hand-made example, odd ids as file
names, several processes on one folder, documents other tools read.

A child (_files_child.py) commits transactions back to back and is killed
with SIGKILL at a random moment; after each kill a fresh open must find every
document whole, every transaction all or nothing, every acknowledged
transaction there with its events in the outbox, and nothing left in the
staging folder.

STATEKEEP_STRESS=1 runs 200 kill points instead of 24;
STATEKEEP_CRASH_SEED=n replays one run's kill points;
STATEKEEP_CRASH_KILLS=n sets the number of kill points.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import statekeep
from _files_child import (
    ACCOUNTS,
    TOTAL,
    Account,
    Counter,
    Ledger,
    Slot,
    Token,
    payload_of,
    seed_store,
)
from statekeep.backends._files_layout import Names
from statekeep.errors import BackendError, ConfigurationError, TransientBackendError

CHILD = str(Path(__file__).with_name("_files_child.py"))
STRESS = os.environ.get("STATEKEEP_STRESS", "") not in ("", "0")
KILLS = int(os.environ.get("STATEKEEP_CRASH_KILLS", 200 if STRESS else 24))
LATEST_KILL = 0.25  # seconds after the child's first acknowledged commit


def url_of(root: Path, **options: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in options.items())
    return f"files:///{root}" + (f"?{query}" if query else "")


def start_child(mode: str, url: str, signal_file: Path, *args: str) -> subprocess.Popen[bytes]:
    """Starts _files_child.py and waits until it has written to signal_file."""
    log = signal_file.with_suffix(".log")
    with log.open("wb") as output:
        child = subprocess.Popen(
            [sys.executable, CHILD, mode, url, str(signal_file), *args],
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    end = time.monotonic() + 60
    while not (signal_file.exists() and signal_file.stat().st_size > 0):
        if child.poll() is not None:
            raise AssertionError(f"the child exited ({child.returncode}): {log.read_text()}")
        if time.monotonic() > end:
            child.kill()
            raise AssertionError(f"the child wrote nothing to {signal_file} in 60 s")
        time.sleep(0.002)
    return child


def documents(root: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Every document under root, by (folder, file name), read with json.load."""
    found = {}
    for folder in root.iterdir():
        if folder.name == ".statekeep":
            continue
        for path in folder.iterdir():
            with path.open() as file:
                document = json.load(file)
            assert set(document) == {"id", "version", "body"}, path
            body = document["body"]
            assert (body["id"], body["version"]) == (document["id"], document["version"]), path
            found[(folder.name, path.name)] = document
    return found


def staging(root: Path) -> list[str]:
    return sorted(os.listdir(root / ".statekeep" / "staging"))


# -- SIGKILL at random moments ------------------------------------------------


def check_after_kill(url: str, acked: list[int], before: int) -> tuple[int, list[str]]:
    """Opens the store (recovery runs here) and returns the last committed
    transaction and what is wrong with the store."""
    problems: list[str] = []
    with statekeep.open(url) as store:
        ledger = store.get(Ledger, "ledger")
        last = ledger.txn
        accounts = list(store.find(Account))
        slots = list(store.find(Slot))
        tokens = [token.id for token in store.find(Token)]
        events = store.backend.read_events(0, 10**9)
    if [position for position, _ in events] != list(range(1, len(events) + 1)):
        problems.append("the outbox's positions are not 1, 2, 3, ...")
    ledger_events = [json.loads(body)["event"] for _, body in events if '"fx_ledger"' in body]
    if [event["version"] for event in ledger_events] != list(range(2, last + 2)):
        problems.append(f"the ledger's events do not match its {last} transactions")
    if acked and last < acked[-1]:
        problems.append(f"acknowledged transaction {acked[-1]} lost (last is {last})")
    if last < before:
        problems.append(f"went back from transaction {before} to {last}")
    if last > (acked[-1] if acked else before) + 1:
        problems.append(f"transaction {last} is beyond the last one that could have run")
    if tokens != [f"k{last}"]:
        problems.append(f"tokens {tokens} after transaction {last} (deletes not atomic)")
    if len(accounts) != ACCOUNTS or sum(a.balance for a in accounts) != TOTAL:
        problems.append(f"accounts hold {sum(a.balance for a in accounts)}, not {TOTAL}")
    entities = {f"Account:{a.id}": a.txn for a in accounts} | {f"Slot:{s.id}": s.txn for s in slots}
    ahead = {key: txn for key, txn in entities.items() if txn > last}
    if ahead:
        problems.append(f"part of transaction {last + 1} without its ledger: {ahead}")
    behind = {key: entities.get(key) for key in ledger.wrote if entities.get(key) != last}
    if behind:
        problems.append(f"part of transaction {last} is missing: {behind}")
    torn = [s.id for s in slots if s.payload != payload_of(s.id, s.txn)]
    if torn:
        problems.append(f"slots whose content is not their transaction's: {torn}")
    return last, problems


def test_transactions_survive_kill_9_whole(tmp_path: Path) -> None:
    seed = int(os.environ.get("STATEKEEP_CRASH_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    root = tmp_path / "store"
    with statekeep.open(url_of(root)) as store:
        seed_store(store)
    last, mid_commit, rolled_forward = 0, 0, 0
    problems: list[str] = []
    for round in range(KILLS):
        url = url_of(root, fsync="true" if round % 2 == 0 else "false")
        acks = tmp_path / f"acks-{round}.txt"
        child = start_child("transfer", url, acks, str(rng.randrange(2**32)))
        time.sleep(rng.uniform(0.0, LATEST_KILL))
        child.send_signal(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL, acks.with_suffix(".log").read_text()

        where = f"crash seed {seed}, round {round}"
        left = staging(root)
        mid_commit += bool(left)
        rolled_forward += "manifest" in left
        documents(root)  # whole before recovery too: a reader never sees a torn file
        acked = [int(line) for line in acks.read_text().splitlines()]
        last, found = check_after_kill(url, acked, last)
        problems += [f"{where}: {problem}" for problem in found]
        assert staging(root) == [], f"{where}: the staging folder was not cleared"
        documents(root)
    assert not problems, "\n".join(problems)
    # the kills must land inside commits, or the test proves little
    assert mid_commit >= KILLS // 3, f"only {mid_commit} of {KILLS} kills landed in a transaction"
    assert rolled_forward >= 1, f"no kill of {KILLS} landed between commit point and cleanup"


# -- leftovers made by hand ------------------------------------------------------


def document_text(id: str, version: int, body: dict[str, Any]) -> str:
    return json.dumps({"id": id, "version": version, "body": body}) + "\n"


def note_body(id: str, version: int, text: str) -> dict[str, Any]:
    return {"id": id, "version": version, "total": len(text)}


def make_leftovers(root: Path, manifest_name: str) -> None:
    """What a writer killed after its commit point leaves: a committed manifest
    whose first put was already moved into place (b), one not yet (a), a new
    entity (d), a delete (c), and a staged file superseded in the same
    transaction. With manifest.tmp: killed before its commit point (then b
    was not moved either)."""
    folder = root / "fx_counter"
    area = root / ".statekeep" / "staging"
    if manifest_name == "manifest":
        (folder / "b.json").write_text(document_text("b", 2, note_body("b", 2, "bb")))
    else:
        (area / "t-2.json").write_text(document_text("b", 2, note_body("b", 2, "bb")))
    (area / "t-1.json").write_text(document_text("a", 2, note_body("a", 2, "aa")))
    (area / "t-3.json").write_text(document_text("d", 1, note_body("d", 1, "ddd")))
    (area / "t-9.json").write_text(document_text("a", 2, note_body("a", 2, "stale")))
    (area / manifest_name).write_text(
        "statekeep-files manifest 1\n"
        "put fx_counter/b.json t-2.json\n"
        "put fx_counter/a.json t-1.json\n"
        "put fx_counter/d.json t-3.json\n"
        "delete fx_counter/c.json\n"
        "end 4\n"
    )


def seeded(root: Path) -> None:
    with statekeep.open(url_of(root)) as store:
        store.save_many([Counter(id="a"), Counter(id="b"), Counter(id="c")])


def totals(root: Path) -> dict[str, tuple[int, int]]:
    with statekeep.open(url_of(root)) as store:
        return {c.id: (c.version, c.total) for c in store.find(Counter)}


def test_a_committed_manifest_is_rolled_forward_at_open(tmp_path: Path) -> None:
    seeded(tmp_path)
    make_leftovers(tmp_path, "manifest")
    assert totals(tmp_path) == {"a": (2, 2), "b": (2, 2), "d": (1, 3)}
    assert staging(tmp_path) == []


def test_an_uncommitted_staging_folder_is_discarded_at_open(tmp_path: Path) -> None:
    seeded(tmp_path)
    before = totals(tmp_path)
    (tmp_path / ".statekeep" / "staging" / "t-7.json").write_text("{half a docu")
    make_leftovers(tmp_path, "manifest.tmp")  # killed while writing the manifest
    assert totals(tmp_path) == before
    assert staging(tmp_path) == []


def test_a_manifest_cut_short_is_not_rolled_forward(tmp_path: Path) -> None:
    """Only with fsync off and a power loss can a manifest lose its end."""
    seeded(tmp_path)
    area = tmp_path / ".statekeep" / "staging"
    (area / "t-1.json").write_text(document_text("a", 2, note_body("a", 2, "aa")))
    (area / "manifest").write_text("statekeep-files manifest 1\nput fx_counter/a.json t-1.json\n")
    assert totals(tmp_path)["a"] == (1, 0)
    assert staging(tmp_path) == []


def test_the_next_writer_completes_a_commit_left_while_the_store_was_open(
    tmp_path: Path,
) -> None:
    seeded(tmp_path)
    with statekeep.open(url_of(tmp_path)) as store:
        make_leftovers(tmp_path, "manifest")  # as another process killed mid-commit
        store.save(Counter(id="e", total=5))  # its begin recovers first, under the lock
        assert staging(tmp_path) == []
        assert store.get(Counter, "a").total == 2
        assert sorted(c.id for c in store.find(Counter)) == ["a", "b", "d", "e"]


# -- names -------------------------------------------------------------------------

ODD_IDS = [
    "plain",
    "Plain",
    "a/b",
    "../escape",
    ".",
    "..",
    ".hidden",
    "with space",
    "tab\tnew\nline",
    "per%cent",
    "%2F",
    "tilde~",
    'quote"back\\slash',
    "colon:star*question?pipe|<>",
    "héllo wörld",
    "e\u0301",  # e and a combining accent: the NFD twin of the next one
    "\u00e9",
    "日本語",
    "emoji 🎉",
    "\u2028line separator",
    "x" * 200,
    "x" * 201,
    "y" * 5000,
    "ü" * 150,
    "/" * 300,
]


def test_odd_ids_round_trip_through_file_names(tmp_path: Path) -> None:
    with statekeep.open(url_of(tmp_path)) as store:
        store.save_many(Counter(id=id, total=n) for n, id in enumerate(ODD_IDS))
        for n, id in enumerate(ODD_IDS):
            assert store.get(Counter, id).total == n, id
        assert sorted(c.id for c in store.find(Counter)) == sorted(ODD_IDS)
        assert store.count(Counter) == len(ODD_IDS)
        store.delete(Counter, "../escape")
        assert store.count(Counter) == len(ODD_IDS) - 1
    names = Names(folded=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".statekeep", "fx_counter"]
    files = list((tmp_path / "fx_counter").iterdir())
    assert len(files) == len(ODD_IDS) - 1
    for path in files:
        assert len(path.name.encode()) <= 255 and not path.name.startswith(".")
        id = json.loads(path.read_text())["id"]
        assert path.name == names.file(id)
        decoded = names.decode(path.name.removesuffix(".json"))
        assert decoded == id or (decoded is None and len(id.encode()) > 200), id
    readable = {
        "Plain": "Plain",
        "a/b": "a%2Fb",
        "..": "%2E.",
        "with space": "with%20space",
        "per%cent": "per%25cent",
        "héllo wörld": "héllo%20wörld",
        "tilde~": "tilde%7E",
    }
    assert {id: names.encode(id) for id in readable} == readable
    assert names.encode("y" * 5000) == "y" * 120 + "~" + hashlib.sha256(b"y" * 5000).hexdigest()


def test_names_on_a_file_system_that_folds_case_and_accents() -> None:
    folded, plain = Names(folded=True), Names(folded=False)
    for names in (folded, plain):
        encoded = [names.encode(id) for id in ODD_IDS]
        assert len(set(encoded)) == len(ODD_IDS)
        assert all("/" not in name and len(name.encode()) <= 200 for name in encoded)
        for id, name in zip(ODD_IDS, encoded, strict=True):
            assert names.decode(name) in (id, None)
    casefolded = {folded.encode(id).casefold() for id in ("Todo", "todo", "TODO", "é", "e\u0301")}
    assert len(casefolded) == 5
    assert folded.encode("Todo") == "%54odo" and plain.encode("Todo") == "Todo"


def test_a_store_made_with_folded_names_stays_folded(tmp_path: Path) -> None:
    meta = tmp_path / ".statekeep"
    meta.mkdir()
    (meta / "format.json").write_text(
        '{"format": "statekeep-files", "version": 1, "names": "folded"}'
    )
    with statekeep.open(url_of(tmp_path)) as store:
        store.save_many([Counter(id="Ab", total=1), Counter(id="ab", total=2)])
        assert {c.id: c.total for c in store.find(Counter)} == {"Ab": 1, "ab": 2}
    assert sorted(os.listdir(tmp_path / "fx_counter")) == ["%41b.json", "ab.json"]


# -- documents as other tools see them -----------------------------------------


def test_documents_are_json_that_other_tools_read_and_may_rewrite(tmp_path: Path) -> None:
    with statekeep.open(url_of(tmp_path)) as store:
        saved = store.save(Counter(id="c1", total=3))
        store.save(saved)
    path = tmp_path / "fx_counter" / "c1.json"
    with path.open() as file:
        document = json.load(file)
    assert document == {"id": "c1", "version": 2, "body": saved.model_dump(mode="json")}
    document["body"]["total"] = 4  # edited by another tool, pretty-printed
    path.write_text(json.dumps(document, indent=2))
    with statekeep.open(url_of(tmp_path)) as store:
        assert (store.get(Counter, "c1").total, store.get(Counter, "c1").version) == (4, 2)
        assert [c.total for c in store.find(Counter)] == [4]


@pytest.mark.parametrize(
    "content",
    ['{"id": "other", "version": 1, "body": {"id": "other", "version": 1}}', "{not json", "[]"],
    ids=["another id", "not JSON", "not a document"],
)
def test_a_document_that_is_not_what_its_name_says_is_an_error(
    tmp_path: Path, content: str
) -> None:
    with statekeep.open(url_of(tmp_path)) as store:
        store.save(Counter(id="c1"))
        (tmp_path / "fx_counter" / "c1.json").write_text(content)
        with pytest.raises(BackendError, match=r"c1\.json"):
            store.get(Counter, "c1")
        with pytest.raises(BackendError, match=r"c1\.json"):
            list(store.find(Counter))


def test_a_folder_that_cannot_be_made_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigurationError, match="file"):
        statekeep.open(url_of(tmp_path / "file" / "store"))


# -- processes ---------------------------------------------------------------------


def test_processes_writing_one_folder_lose_no_update(tmp_path: Path) -> None:
    url = url_of(tmp_path / "store")
    with statekeep.open(url) as store:
        store.save(Counter(id="shared"))
    done = [tmp_path / f"done-{n}" for n in range(3)]
    children = [
        subprocess.Popen([sys.executable, CHILD, "increment", url, str(path), "40"])
        for path in done
    ]
    assert [child.wait(timeout=120) for child in children] == [0, 0, 0]
    conflicts = sum(int(path.read_text()) for path in done)
    with statekeep.open(url) as store:
        shared = store.get(Counter, "shared")
    assert (shared.total, shared.version) == (120, 121), f"{conflicts} conflicts"


def test_two_stores_on_one_folder_raise_conflicts(tmp_path: Path) -> None:
    with statekeep.open(url_of(tmp_path)) as first, statekeep.open(url_of(tmp_path)) as second:
        first.save(Counter(id="x"))
        mine, theirs = first.get(Counter, "x"), second.get(Counter, "x")
        theirs.total = 1
        second.save(theirs)
        mine.total = 2
        with pytest.raises(statekeep.ConflictError):
            first.save(mine)
        with pytest.raises(statekeep.ConflictError):
            first.delete(mine)
        assert first.get(Counter, "x").total == 1


def test_a_writer_waits_for_another_process_then_gives_up_and_readers_never_wait(
    tmp_path: Path,
) -> None:
    url = url_of(tmp_path / "store", timeout="0.3")
    with statekeep.open(url) as store:
        store.save(Counter(id="before"))
        child = start_child("hold", url, tmp_path / "ready")
        try:
            started = time.monotonic()
            assert store.count(Counter) == 1  # the child's staged write is not seen
            assert [c.id for c in store.find(Counter)] == ["before"]
            assert time.monotonic() - started < 0.25
            with pytest.raises(TransientBackendError, match="another process"):
                store.save(Counter(id="blocked"))
            assert 0.3 <= time.monotonic() - started < 3
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        assert staging(tmp_path / "store")  # the killed child's staged document
        store.save(Counter(id="after"))  # the lock died with the child
        assert sorted(c.id for c in store.find(Counter)) == ["after", "before"]
        assert staging(tmp_path / "store") == []


# -- durability ------------------------------------------------------------------


@pytest.mark.parametrize("fsync", [True, False], ids=["fsync", "no-fsync"])
def test_the_syncs_of_a_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    """n documents into an existing collection: n files, the manifest, the
    staging folder (twice) and the collection's folder; a transaction of one
    change needs no manifest (docs/files.md)."""
    calls: list[int] = []
    real = os.fsync

    def counted(fd: int) -> None:
        calls.append(fd)
        real(fd)

    with statekeep.open(url_of(tmp_path), fsync=fsync) as store:
        store.save(Counter(id="first"))
        monkeypatch.setattr(os, "fsync", counted)
        store.save_many(Counter(id=f"c{n}") for n in range(100))
        assert len(calls) == (104 if fsync else 0)
        calls.clear()
        store.save(Counter(id="one more"))
        assert len(calls) == (2 if fsync else 0)
        calls.clear()
        store.delete(Counter, "first")
        assert len(calls) == (1 if fsync else 0)
        calls.clear()
        with store.transaction():
            store.delete(Counter, "one more")
            store.save(Counter(id="another"))
        assert len(calls) == (5 if fsync else 0)


# -- the outbox ------------------------------------------------------------------


def test_the_outbox_keeps_positions_through_pruning_and_reopening(tmp_path: Path) -> None:
    with statekeep.open(url_of(tmp_path)) as store:
        backend: Any = store.backend
        for n in range(3):
            backend.begin()
            backend.append_events([f'{{"n":{n},"k":{k}}}' for k in range(4)])
            backend.commit()
        assert [p for p, _ in backend.read_events(0, 100)] == list(range(1, 13))
        assert backend.read_events(5, 3) == [
            (6, '{"n":1,"k":1}'),
            (7, '{"n":1,"k":2}'),
            (8, '{"n":1,"k":3}'),
        ]
        assert backend.prune_events(6) == 6  # one file gone, one cut in two
        assert [p for p, _ in backend.read_events(0, 100)] == list(range(7, 13))
        assert backend.prune_events(12) == 6
        assert backend.read_events(0, 100) == []
    with statekeep.open(url_of(tmp_path)) as store:
        backend = store.backend
        backend.begin()
        backend.append_events(['{"after":"reopening"}'])
        backend.commit()
        assert backend.read_events(0, 100) == [(13, '{"after":"reopening"}')]
    outbox = tmp_path / ".statekeep" / "outbox"
    assert sorted(os.listdir(outbox)) == ["00000000000000000013.jsonl", "last"]
    assert (outbox / "last").read_text() == "13\n"
