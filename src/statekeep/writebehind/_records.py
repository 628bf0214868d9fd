"""Journal records and dead letters: plain JSON-able dicts, no entity classes.

A journal record (its keys: see _journal) carries everything needed to store
the write after a restart, before the application has imported its entity
classes: the collection spec, the row, and how it was enqueued. A dead letter
keeps the journal record of its write, to requeue it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..backends.base import CollectionSpec, Index, Row
from ._journal import JournalRecord
from ._options import DeadLetter, Priority


def journal_record(
    spec: CollectionSpec,
    row: Row,
    delete: bool,
    expect: int | None,
    priority: Priority,
    deadline: float | None,
    seq: int,
    *,
    run: int,
) -> JournalRecord:
    wall = None if deadline is None else time.time() + (deadline - time.monotonic())
    return {
        "u": run,
        "s": seq,
        "o": "delete" if delete else "put",
        "c": spec.name,
        "x": _indexes(spec),
        "r": row,
        "e": expect,
        "p": int(priority),
        "d": wall,
    }


_index_lists: dict[int, tuple[CollectionSpec, list[list[Any]]]] = {}


def _indexes(spec: CollectionSpec) -> list[list[Any]]:
    """spec's indexes as plain lists, made once per spec."""
    known = _index_lists.get(id(spec))
    if known is None or known[0] is not spec:
        known = _index_lists[id(spec)] = (spec, [[i.name, i.kind, i.default] for i in spec.indexes])
    return known[1]


def spec_of(record: JournalRecord) -> CollectionSpec:
    return CollectionSpec(record["c"], tuple(Index(n, k, d) for n, k, d in record["x"]))


def restamp(body: str, old: int, new: int) -> str:
    """The entity's JSON body with its version field changed from old to new.

    An entity's body starts {"id":"...","version":N,...}: the first
    ',"version":' is that field (a JSON string cannot hold an unescaped quote)."""
    marker = f',"version":{old}'
    at = body.find(',"version":')
    end = at + len(marker)
    if at < 0 or not body.startswith(marker, at) or body[end : end + 1] not in (",", "}"):
        raise ValueError(f"not an entity body with version {old}: {body[:80]!r}")
    return f'{body[:at]},"version":{new}{body[end:]}'


class DeadLetterFile:
    """Dead letters kept as JSON lines beside the journal, across restarts:
    {"collection", "id", "delete", "error", "record": the journal record}."""

    def __init__(self, directory: Path) -> None:
        self._path = directory / "dead-letters.jsonl"

    def load(self) -> list[DeadLetter]:
        if not self._path.exists():
            return []
        letters = []
        for line in self._path.read_text().splitlines():
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line
            letters.append(_letter(data))
        return letters

    def append(self, letter: DeadLetter) -> None:
        with self._path.open("a") as file:
            file.write(json.dumps(_plain(letter)) + "\n")

    def rewrite(self, letters: list[DeadLetter]) -> None:
        temporary = self._path.with_suffix(".tmp")
        temporary.write_text("".join(json.dumps(_plain(d)) + "\n" for d in letters))
        temporary.replace(self._path)


def _plain(letter: DeadLetter) -> dict[str, Any]:
    return {
        "collection": letter.collection,
        "id": letter.id,
        "delete": letter.delete,
        "error": letter.error,
        "record": letter.journal_record,
    }


def _letter(data: dict[str, Any]) -> DeadLetter:
    """A dead letter from its line (whose "record" is the field journal_record)."""
    return DeadLetter(**{"journal_record" if k == "record" else k: v for k, v in data.items()})
