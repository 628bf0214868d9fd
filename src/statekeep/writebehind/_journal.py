"""The write-behind journal: append-only segment files beside the database.

A batch of records is framed as <u32 length><u32 crc32><payload>, the payload
being the batch in marshal format (plain dicts, lists, text and numbers: fast
to write, and loading it runs no code), with one write() per batch. A record
written to the file survives kill -9 of the process (the OS has it); with
fsync=True it also survives a power loss.

Every record has an id (the run that wrote it, a sequence number). Once a
write is stored, superseded or given up, a marker frame naming its records'
ids is appended, so that a restart does not store it again. Segments are
deleted oldest first, once none of their records is pending: a marker always
lives in a newer segment than the records it names, so it is never deleted
before them. On open, the records of the remaining segments that no marker
names are read back in order; a torn tail (a crash mid-write) ends its
segment, and appends always go to a new segment.

What a frame's list holds (format 1; the keys are single letters because
every record of every batch repeats them):

- a record, one enqueued write (JournalRecord):
  `u` the run that wrote it (a random 62-bit int per engine) and `s` its
  sequence number in that run: together its RecordId;
  `o` "put" or "delete"; `c` the collection; `x` the collection's indexes,
  `[[name, kind, default], ...]`; `r` the row, `[id, version as read, body,
  *indexed values]`; `e` the version the write expects (None: any); `p` the
  priority (0 LOW, 1 NORMAL, 2 CRITICAL); `d` its deadline as wall-clock
  seconds since the epoch (None: none).
- a marker (DoneMarker): `done`, the `[run, seq]` ids of records that need
  no storing any more.

Format 2 (written since issue 11) is a tuple `(2, records, done)`: records
are tuples (Record below: run, seq, collection, id, version, body or None
for a delete, expected version, priority, deadline, base version or None,
domain events as outbox JSON), and done the `(run, seq)` ids of records
that need no storing any more. Records and markers share a frame, so a
record written again with a new base and the marker of the batch that made
it so land together. Format 1 frames are read as they are.
"""

from __future__ import annotations

import marshal
import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Any, TypedDict

from ..errors import BackendError

_HEADER = struct.Struct("<II")
_SEGMENT_BYTES = 16 * 1024 * 1024
RecordId = tuple[int, int]  # (run, sequence number)
JournalId = tuple[int, RecordId]  # (segment, record id): where a record is, to mark it done


class JournalRecord(TypedDict):
    """One enqueued write as the journal keeps it (format 1: see above)."""

    u: int  # run
    s: int  # sequence number in the run
    o: str  # "put" or "delete"
    c: str  # collection
    x: list[list[Any]]  # indexes: [name, kind, default]
    r: Any  # row: [id, version as read, body, *indexed] (a tuple as written)
    e: int | None  # expected version
    p: int  # priority
    d: float | None  # deadline, wall-clock seconds


# (run, seq, collection, id, version, body or None, expect, priority,
#  deadline (wall clock) or None, base version or None, events)
Record = tuple[
    int, int, str, str, int, str | None, int | None, int, float | None, int | None, tuple[str, ...]
]


def from_format_1(record: JournalRecord) -> Record:
    """A format-1 record as a format-2 one: stored over whatever is there
    (the rule of the engine that wrote it)."""
    row = record["r"]
    body = None if record["o"] == "delete" else row[2]
    return (
        record["u"],
        record["s"],
        record["c"],
        row[0],
        row[1],
        body,
        record["e"],
        record["p"],
        record["d"],
        None,
        (),
    )


class DoneMarker(TypedDict):
    """Records that need no storing any more: their [run, seq] ids."""

    done: list[list[int]]


def pending_records(segments: list[tuple[int, Path]]) -> list[tuple[int, Record]]:
    """(segment, record) of the records in these segment files (in order) that
    no marker among them names: what is still to be stored. Reads only."""
    found: list[tuple[int, Record]] = []
    done: set[RecordId] = set()
    for segment, path in segments:
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # swept by the engine that holds it since it was listed
            continue
        position = 0
        while position + _HEADER.size <= len(data):
            length, checksum = _HEADER.unpack_from(data, position)
            payload = data[position + _HEADER.size : position + _HEADER.size + length]
            if len(payload) < length or zlib.crc32(payload) != checksum:
                break  # a torn tail: the crash happened while writing it
            frame = marshal.loads(payload)
            position += _HEADER.size + length
            if isinstance(frame, tuple):  # format 2
                _, records, markers = frame
                found.extend((segment, record) for record in records)
                done.update(markers)
                continue
            for record in frame:
                if "done" in record:
                    done.update((run, seq) for run, seq in record["done"])
                else:
                    found.append((segment, from_format_1(record)))
    return [(segment, r) for segment, r in found if (r[0], r[1]) not in done]


def segment_number(path: Path) -> int:
    return int(path.stem.split("-")[1])


class Journal:
    def __init__(self, directory: Path, *, fsync: bool = False) -> None:
        self.directory = directory
        self._fsync = fsync
        self._lock = threading.Lock()
        try:
            directory.mkdir(parents=True, exist_ok=True)
            existing = sorted(self._number(p) for p in directory.glob("segment-*.log"))
        except OSError as exc:
            raise BackendError(f"cannot use journal directory {directory}: {exc}") from exc
        # every segment file there is -> how many of its records are pending
        self._live: dict[int, int] = dict.fromkeys(existing, 0)
        self._current = (existing[-1] + 1) if existing else 1
        self._fd: int | None = None
        self._size = 0

    def forget(self) -> None:
        """In a forked child: lets go of the descriptor without writing or
        removing anything (the files are the parent's)."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    _number = staticmethod(segment_number)

    def _path(self, segment: int) -> Path:
        return self.directory / f"segment-{segment:08d}.log"

    def recover(self) -> list[tuple[int, Record]]:
        """(segment, record) of every pending record left by earlier runs, in order."""
        return self._pending_of(sorted(self._live))

    def adopt(self, directory: Path) -> list[tuple[int, Record]]:
        """Takes over the segments of a dead engine's directory (renamed into
        this one, numbered above every segment here, in their order; appends
        go above them) and returns their pending records."""
        with self._lock:
            try:
                theirs = sorted(directory.glob("segment-*.log"), key=self._number)
                if not theirs:
                    return []
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
                numbers = []
                for path in theirs:
                    self._current += 1
                    path.rename(self._path(self._current))
                    self._live[self._current] = 0
                    numbers.append(self._current)
                self._current += 1  # markers of their records go above them
            except OSError as exc:
                raise BackendError(f"cannot adopt the journal in {directory}: {exc}") from exc
        return self._pending_of(numbers)

    def _pending_of(self, segments: list[int]) -> list[tuple[int, Record]]:
        pending = pending_records([(segment, self._path(segment)) for segment in segments])
        with self._lock:
            for segment, _ in pending:
                self._live[segment] += 1
            self._sweep()
        return pending

    def write(self, records: list[Record], done: list[JournalId]) -> int:
        """Writes records and the marker of done ones in one frame (format 2);
        returns the segment that holds the records. The done records'
        segments may go once the frame is written."""
        payload = marshal.dumps((2, records, [record_id for _, record_id in done]))
        segment = self._write(payload, pending=len(records))
        if done:
            with self._lock:
                for number, _ in done:
                    self._live[number] -= 1
                self._sweep()
        return segment

    def _write(self, payload: bytes, *, pending: int) -> int:
        """Appends a frame; pending of its records count as pending from the
        moment they are written (in the same hold of the lock, so a sweep can
        never delete the segment between the two)."""
        data = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        with self._lock:  # held while writing: _sweep() may close the segment
            try:
                if self._fd is None or self._size >= _SEGMENT_BYTES:
                    self._open_next()
                assert self._fd is not None
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
                if self._fsync:
                    os.fsync(self._fd)
            except OSError as exc:
                raise BackendError(f"cannot write the journal in {self.directory}: {exc}") from exc
            self._size += len(data)
            self._live[self._current] += pending
            return self._current

    def _open_next(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._current += 1
        self._fd = os.open(self._path(self._current), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self._live.setdefault(self._current, 0)
        self._size = 0
        if self._fsync:
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def _sweep(self) -> None:
        """Deletes segments, oldest first, while none of their records is pending."""
        for segment in sorted(self._live):
            if self._live[segment] > 0:
                return
            if segment == self._current and self._fd is not None:
                os.close(self._fd)  # the next append starts a new segment
                self._fd = None
                self._current += 1
            del self._live[segment]
            self._path(segment).unlink(missing_ok=True)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
                self._current += 1
            self._sweep()
