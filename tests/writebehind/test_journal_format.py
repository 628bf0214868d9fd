"""The journal's on-disk format stays readable: a journal written by an earlier
version (format 1, the keys writebehind/_journal.py documents) is recovered
and stored; a dead letter still reads and names its write's journal record."""

from __future__ import annotations

import json
import marshal
import struct
import time
import zlib
from pathlib import Path

import pytest

import statekeep
from statekeep.writebehind import DeadLetter

from ._support import journal_dir
from .conftest import OpenStore
from .models import Doc

pytestmark = pytest.mark.requires("persistent")

RUN = 12345


def frame(items: list[dict[str, object]]) -> bytes:
    """A frame as format 1 writes it: <u32 length><u32 crc32><marshal payload>."""
    payload = marshal.dumps(items)
    return struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def record(seq: int, id: str, title: str) -> dict[str, object]:
    body = json.dumps({"id": id, "version": 0, "title": title, "n": seq}, separators=(",", ":"))
    return {
        "u": RUN,  # the run that wrote it
        "s": seq,  # its sequence number in the run
        "o": "put",
        "c": "wb_doc",
        "x": [],
        "r": (id, 0, body),
        "e": None,
        "p": 1,  # NORMAL
        "d": time.time() + 60,
    }


def test_a_format_1_journal_is_recovered_and_stored(open_store: OpenStore, store_url: str) -> None:
    directory = journal_dir(store_url)
    directory.mkdir(parents=True, exist_ok=True)
    data = frame([record(1, "a", "first"), record(2, "b", "stored already")])
    data += frame([{"done": [[RUN, 2]]}])  # the marker: b needs no storing any more
    (directory / "segment-00000001.log").write_bytes(data)
    store = open_store(window=0.01)
    assert store.flush(timeout=30)
    assert [(d.id, d.title) for d in store.find(Doc)] == [("a", "first")]


def test_a_dead_letter_names_its_journal_record(open_store: OpenStore) -> None:
    store = open_store(window=0.01)
    store.save(Doc(id="x", title="stored"))
    receipt = store.enqueue(Doc(id="x", title="stale"), expect_version=5)
    with pytest.raises(statekeep.ConflictError):
        receipt.wait_stored(timeout=30)
    (letter,) = store.writebehind.dead_letters()
    assert letter.journal_record["c"] == "wb_doc" and letter.journal_record["e"] == 5
    with pytest.warns(DeprecationWarning, match="journal_record"):
        assert letter.record is letter.journal_record


def test_a_dead_letter_file_of_an_earlier_version_is_read(
    open_store: OpenStore, store_url: str
) -> None:
    directory = journal_dir(store_url)
    directory.mkdir(parents=True, exist_ok=True)
    written = record(7, "old", "from before")
    written["r"] = list(written["r"])  # type: ignore[call-overload]  # JSON has lists
    line = {
        "collection": "wb_doc",
        "id": "old",
        "delete": False,
        "error": "ConflictError: ...",
        "record": written,
    }
    Path(directory, "dead-letters.jsonl").write_text(json.dumps(line) + "\n")
    (letter,) = open_store(window=0.01).writebehind.dead_letters()
    assert isinstance(letter, DeadLetter)
    assert (letter.id, letter.journal_record["s"]) == ("old", 7)
