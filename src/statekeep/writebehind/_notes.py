"""Notes in the database that make a batch's commit and its journal marker
one: the batch's own transaction writes a note naming its journal records
and the versions they were stored as, so that a crash between the commit and
the marker does not store them again (recovery skips what a note names).

A note is deleted in a later batch's transaction, once the marker is in the
journal; recovery deletes the notes of the runs it took over."""

from __future__ import annotations

import json
from collections.abc import Iterable

from ..backends.base import Backend, CollectionSpec, Query
from ..errors import NotFoundError
from ._journal import RecordId

NOTES = CollectionSpec("statekeep_writebehind_notes")
Key = tuple[str, str]
Noted = dict[RecordId, tuple[Key, int]]  # record id -> (key, version stored)


def write_note(
    backend: Backend, id: str, run: int, stored: Iterable[tuple[RecordId, Key, int]]
) -> str:
    """Adds the note of a batch (in the caller's transaction); returns its id."""
    backend.ensure_collection(NOTES)
    # each record's own run: a batch also stores records it recovered or adopted
    entries = [(run_of, seq, *key, version) for (run_of, seq), key, version in stored]
    body = json.dumps({"id": id, "version": 1, "run": run, "stored": entries})
    backend.put(NOTES, [(id, 1, body)])
    return id


def read_notes(backend: Backend, runs: set[int]) -> tuple[Noted, list[str]]:
    """What the notes say was stored of these runs' records (whichever run
    stored them), and the ids of the notes these runs wrote."""
    noted: Noted = {}
    ids = []
    backend.ensure_collection(NOTES)
    for body in backend.select(NOTES, Query()):
        note = json.loads(body)
        if note["run"] in runs:
            ids.append(note["id"])
        for entry in note["stored"]:
            if len(entry) == 4:  # an engine that named only its own records
                entry = [note["run"], *entry]
            run, seq, collection, id, version = entry
            if run in runs:
                noted[(run, seq)] = ((collection, id), version)
    return noted, ids


def delete_notes(backend: Backend, ids: Iterable[str]) -> None:
    """Deletes notes (in the caller's transaction); a missing one is no matter."""
    for id in ids:
        try:
            backend.delete(NOTES.name, id, None)
        except NotFoundError:
            continue
