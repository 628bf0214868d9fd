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

A later format adds keys (a record without a `v` key is format 1); the
journals of earlier versions are read as they are.
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


class DoneMarker(TypedDict):
    """Records that need no storing any more: their [run, seq] ids."""

    done: list[list[int]]


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

    @staticmethod
    def _number(path: Path) -> int:
        return int(path.stem.split("-")[1])

    def _path(self, segment: int) -> Path:
        return self.directory / f"segment-{segment:08d}.log"

    def recover(self) -> list[tuple[int, JournalRecord]]:
        """(segment, record) of every pending record left by earlier runs, in order."""
        found: list[tuple[int, JournalRecord]] = []
        done: set[RecordId] = set()
        for segment in sorted(self._live):
            data = self._path(segment).read_bytes()
            position = 0
            while position + _HEADER.size <= len(data):
                length, checksum = _HEADER.unpack_from(data, position)
                payload = data[position + _HEADER.size : position + _HEADER.size + length]
                if len(payload) < length or zlib.crc32(payload) != checksum:
                    break  # a torn tail: the crash happened while writing it
                for record in marshal.loads(payload):
                    if "done" in record:
                        done.update((run, seq) for run, seq in record["done"])
                    else:
                        found.append((segment, record))
                position += _HEADER.size + length
        pending = [(segment, r) for segment, r in found if (r["u"], r["s"]) not in done]
        with self._lock:
            for segment, _ in pending:
                self._live[segment] += 1
            self._sweep()
        return pending

    def append(self, records: list[JournalRecord]) -> int:
        """Writes records in one go; returns the segment that holds them."""
        return self._write(records, pending=len(records))

    def resolve(self, ids: list[JournalId]) -> None:
        """These records are stored, superseded or given up: a marker says so
        first, then their segments may go."""
        if not ids:
            return
        marker: DoneMarker = {"done": [list(record_id) for _, record_id in ids]}
        self._write([marker], pending=0)
        with self._lock:
            for segment, _ in ids:
                self._live[segment] -= 1
            self._sweep()

    def _write(self, frame: list[JournalRecord] | list[DoneMarker], *, pending: int) -> int:
        """Appends a frame; pending of its records count as pending from the
        moment they are written (in the same hold of the lock, so a sweep can
        never delete the segment between the two)."""
        payload = marshal.dumps(frame)
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
