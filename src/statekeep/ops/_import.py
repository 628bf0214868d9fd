"""`statekeep import` and the storing half of `statekeep copy`.

Rows are stored as they are, versions included (Catalog.load), a chunk per
transaction: an import cut short keeps every chunk it committed and nothing
of the one it was in. What happens to a row whose id the target already
holds is the mode's:

- "new" (the default): the target's collections must be empty (checked
  before anything is written); a row met stored anyway (a writer got there
  first, or the dump repeats an id) is a ConflictError.
- "resume": for a run that stopped half-way: a row stored at the same
  version is skipped; at another version, ConflictError.
- "merge": a row stored at a lower version is replaced; at the same or a
  higher one the target's is kept (and counted as kept).

Importing fires no events and touches no write-behind journal: it moves
stored state, it does not replay the writes that made it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from ..backends.base import Catalog, CollectionSpec, atomic
from ..errors import ConfigurationError, ConflictError, DumpError
from ..store import Store
from ._dump import Checksum, Counted, Digest, read_end, read_header, read_row
from ._export import Progress
from ._stores import catalog, plain

Mode = Literal["new", "resume", "merge"]
MODES: tuple[Mode, ...] = ("new", "resume", "merge")
CHUNK = 2000


@dataclass
class Imported:
    """What an import did, by collection: rows written, skipped (resume: stored
    already), kept (merge: the target's was as new or newer), and the
    checksums of the rows read. complete: the dump's end line was read and
    its counts and checksums agree with the rows."""

    written: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)
    sums: dict[str, Counted] = field(default_factory=dict)
    complete: bool = False

    @property
    def rows(self) -> int:
        return sum(self.written.values())


class Loader:
    """Stores rows collection by collection, a chunk per transaction."""

    def __init__(
        self,
        store: Store,
        specs: dict[str, CollectionSpec],
        mode: Mode,
        *,
        expected: dict[str, int] | None = None,
        progress: Progress | None = None,
        chunk: int = CHUNK,
        canonical: bool = False,
        options: str = "import into empty collections, or choose merge (--merge) or resume "
        "(--resume, for a run cut short)",
    ) -> None:
        """canonical: sum Checksums of the rows (copy compares them with the
        target's); otherwise a Digest of the dump lines given with the rows."""
        if mode not in MODES:
            raise ConfigurationError(f"mode is one of {', '.join(MODES)}, not {mode!r}")
        store = plain(store)
        self._cat: Catalog = catalog(store)
        self._backend = store.backend
        self._specs, self._mode, self._chunk = specs, mode, chunk
        self._expected = expected or {}
        self._progress: Callable[[str, int, int], None] | None = progress
        self._rows: list[tuple[str, int, str]] = []
        self._lines: list[str] = []
        self._canonical, self._options = canonical, options
        self._current: str | None = None
        self.result = Imported()
        if mode == "new":
            held = {info.spec.name: info.rows for info in self._cat.collections()}
            full = {name: held[name] for name in specs if held.get(name)}
            if full:
                listed = ", ".join(f"{name} ({rows} rows)" for name, rows in sorted(full.items()))
                raise ConfigurationError(f"the target is not empty: {listed}; {options}")
        for spec in specs.values():
            self._backend.ensure_collection(spec)

    def add(self, collection: str, id: str, version: int, body: str, line: str = "") -> None:
        """A row; line: the dump line it was read from (its Digest's input)."""
        if collection != self._current:
            self.flush()
            if collection in self.result.sums:
                raise DumpError(
                    f"the rows of {collection!r} come in two runs; a dump keeps them together"
                )
            self._start(collection)
        total = self.result.sums[collection]
        if isinstance(total, Checksum):
            total.add(id, version, body)
        else:
            self._lines.append(line)
        self._rows.append((id, version, body))
        if len(self._rows) >= self._chunk:
            self.flush()

    def add_empty(self, collection: str) -> None:
        """Counts a collection that has no rows (it was made at the start)."""
        self.flush()
        self._start(collection)

    def _start(self, collection: str) -> None:
        self._current = collection
        for counts in (self.result.written, self.result.skipped, self.result.kept):
            counts[collection] = 0
        self.result.sums[collection] = Checksum() if self._canonical else Digest()
        self._report()

    def flush(self) -> None:
        if not self._rows or self._current is None:
            return
        name, rows = self._current, self._rows
        self._rows = []
        total = self.result.sums[name]
        if isinstance(total, Digest):
            total.add_lines(self._lines)
            self._lines = []
        ids = [row[0] for row in rows]
        if len(set(ids)) != len(ids):
            raise DumpError(f"an id of {name!r} comes twice in the dump")
        with atomic(self._backend):
            stored = self._backend.versions(name, ids)
            chosen = self._choose(name, rows, stored) if stored else rows
            if chosen:  # new: a row some other writer stored meanwhile is a conflict
                self._cat.load(self._specs[name], chosen, replace=self._mode != "new")
        self.result.written[name] += len(chosen)
        self._report()

    def _choose(
        self, name: str, rows: list[tuple[str, int, str]], stored: dict[str, int]
    ) -> list[tuple[str, int, str]]:
        chosen = []
        for row in rows:
            have = stored.get(row[0])
            if have is None:
                chosen.append(row)
            elif self._mode == "new":
                raise ConflictError(
                    name,
                    row[0],
                    f"stored already (version {have}), by a writer since the import began or "
                    f"an id the dump repeats; nothing of this chunk was written: {self._options}",
                )
            elif self._mode == "resume":
                if have != row[1]:
                    raise ConflictError(
                        name,
                        row[0],
                        f"stored at version {have}, the dump has version {row[1]}: not a row "
                        "of an earlier run of this import (--merge keeps the newer of the two)",
                    )
                self.result.skipped[name] += 1
            elif have < row[1]:
                chosen.append(row)
            else:
                self.result.kept[name] += 1
        return chosen

    def _report(self) -> None:
        name = self._current
        if self._progress is not None and name is not None:
            done = self.result.sums[name].rows
            self._progress(name, done, max(done, self._expected.get(name, 0)))


def import_dump(
    store: Store,
    lines: Iterable[str],
    *,
    mode: Mode = "new",
    progress: Progress | None = None,
    chunk: int = CHUNK,
) -> Imported:
    """Stores the dump whose lines are given (a file, sys.stdin) into store.

    DumpError for a dump that is not one, or is corrupted (the chunks before
    the bad line are stored: fix the dump, then run again with resume)."""
    numbered = enumerate(lines, 1)
    first = next(numbered, None)
    if first is None:
        raise DumpError("the dump is empty: no header line")
    header = read_header(first[1])
    loader = Loader(
        store, header.collections, mode, expected=header.rows, progress=progress, chunk=chunk
    )
    end: dict[str, tuple[int, str]] | None = None
    for number, line in numbered:
        if end is not None:
            if line.strip():
                raise DumpError("a line after the end line", number)
            continue
        text = line.rstrip("\r\n")
        try:
            row = read_row(text, number)
        except DumpError:
            if line.endswith("\n"):
                raise
            break  # a torn last line: the writer was stopped mid-line (cut short)
        if isinstance(row, dict):
            loader.flush()
            end = read_end(row, number)
            continue
        if row[0] not in header.collections:
            raise DumpError(f"a row of {row[0]!r}, which the header does not list", number)
        try:
            loader.add(row[0], row[1], row[2], row[3], text)
        except DumpError as exc:
            raise DumpError(str(exc), number) from exc
    loader.flush()
    result = loader.result
    if end is not None:
        _check_end(result, end)
        result.complete = True
    return result


def _check_end(result: Imported, end: dict[str, tuple[int, str]]) -> None:
    for name in sorted(set(end) | set(result.sums)):
        rows, checksum = end.get(name, (0, Digest().hex))
        read = result.sums.get(name, Digest())
        if (read.rows, read.hex) != (rows, checksum):
            raise DumpError(
                f"{name}: the end line says {rows} rows (checksum {checksum}), the dump held "
                f"{read.rows} (checksum {read.hex}); the rows read were stored, but the dump "
                "is not the one that was written"
            )
