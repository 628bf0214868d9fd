"""Breaking import and copy with a second writer at the wrong moment.

Each test reproduces one break found by a hostile new user; each fails
today. The moment is made deterministic by a hook (a progress callback, or
the one backend read an import makes before it writes a chunk)."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest

import statekeep
from statekeep import ops

from .conftest import MakeUrl
from .models import Note


def test_copy_does_not_verify_a_target_that_differs_from_the_source(
    make_url: MakeUrl,
) -> None:
    """A writer saves n00000 again after copy read it (and before copy ends).
    copy's "verify" compares the target with the rows copy itself read, so
    it passes (the CLI prints `verified yes`, exit 0) while the target holds
    n00000 at version 1 and the source at version 2: the target is no state
    the source ever was in. The docs say the target's counts and checksums
    "must equal the source's": the verify must read the source again (or
    otherwise notice the change) and fail loudly."""
    source, target = make_url("sqlite-file"), make_url("sqlite-file")
    with statekeep.open(source) as store:
        store.save_many([Note(id=f"n{n:05}", text="v1") for n in range(5000)])
    changed: list[int] = []

    def progress(name: str, done: int, total: int) -> None:
        if done >= 2000 and not changed:  # n00000 is copied already
            with statekeep.open(source) as writer:
                note = writer.get(Note, "n00000")
                note.text = "v2"
                changed.append(writer.save(note).version)

    with (
        ops.open_existing(source) as origin,
        ops.open_quietly(target) as into,
        pytest.raises(statekeep.StatekeepError),
    ):
        ops.copy(origin, into, progress=progress)
    assert changed == [2]


def _notes_dump(text: str, count: int) -> str:
    out = io.StringIO()
    with statekeep.open("memory://") as store:
        store.save_many([Note(id=f"n{n:05}", text=text) for n in range(count)])
        ops.export(store, out)
    return out.getvalue()


def test_two_new_imports_into_one_postgresql_schema_do_not_both_succeed(
    make_url: MakeUrl, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `statekeep import` (mode new: "the target's collections must be
    empty") of two different dumps of the same ids, at once, into one
    PostgreSQL schema. Seen with two real processes: one failed half-way
    (ConflictError) and the other said `imported 20,000 rows`, exit 0, yet
    6,000 of its rows held the other dump's bodies. The cause: the chunk's
    look-up of stored ids runs at READ COMMITTED and Catalog.load is an
    upsert (ON CONFLICT DO UPDATE), so rows a concurrent import committed
    between the two are overwritten silently.

    Made deterministic here: import B runs whole in the moment between A's
    look-up and A's write. Both then report complete, and B's rows are
    gone. One of them must fail."""
    url = make_url("postgresql")
    dump_a, dump_b = _notes_dump("from A", 50), _notes_dump("from B", 50)
    results: dict[str, Any] = {}
    with statekeep.open(url):  # the schema exists
        pass
    with ops.open_quietly(url) as store_a, ops.open_quietly(url) as store_b:
        backend = store_a.backend
        looked_up = backend.versions

        def import_b() -> None:
            try:
                results["b"] = ops.import_dump(store_b, io.StringIO(dump_b)).complete
            except statekeep.StatekeepError as exc:
                results["b"] = exc

        other = threading.Thread(target=import_b)
        started: list[bool] = []

        def versions(collection: str, ids: list[str]) -> dict[str, int]:
            found = looked_up(collection, ids)
            if not started:
                started.append(True)
                other.start()  # B, whole, before A writes (unless A's lock holds it up)
                other.join(10)
            return found

        monkeypatch.setattr(backend, "versions", versions)
        try:
            results["a"] = ops.import_dump(store_a, io.StringIO(dump_a)).complete
        except statekeep.StatekeepError as exc:
            results["a"] = exc
        other.join(60)
    with statekeep.open(url) as store:
        texts = {note.text for note in store.find(Note)}
    succeeded = [name for name, result in results.items() if result is True]
    assert len(succeeded) <= 1, (
        f"both imports said complete; the collection holds only {texts}: "
        "one import's rows were overwritten by the other's"
    )
