"""The write-behind journal: append-only segment files beside the database.

A batch of records is framed as <u32 length><u32 crc32><payload>, the payload
being the batch in marshal format (plain dicts, lists, text and numbers: fast
to write, and loading it runs no code), with one write() per batch. A record written to the file
survives kill -9 of the process (the OS has it); with fsync=True it also
survives a power loss. A segment is deleted once every record in it has been
stored (or superseded by a later write of the same entity), so a write that is
already stored keeps no second copy for long. On open, the records of the
remaining segments are read back in order; a torn tail (a crash mid-write)
ends its segment, and appends always go to a new segment.
"""

from __future__ import annotations

import marshal
import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Any

from ..errors import BackendError

_HEADER = struct.Struct("<II")
_SEGMENT_BYTES = 16 * 1024 * 1024


class Journal:
    def __init__(self, directory: Path, *, fsync: bool = False) -> None:
        self.directory = directory
        self._fsync = fsync
        self._lock = threading.Lock()
        self._live: dict[int, int] = {}  # segment -> records not yet resolved
        try:
            directory.mkdir(parents=True, exist_ok=True)
            existing = sorted(self._number(p) for p in directory.glob("segment-*.log"))
        except OSError as exc:
            raise BackendError(f"cannot use journal directory {directory}: {exc}") from exc
        self._recovered = existing
        self._current = (existing[-1] + 1) if existing else 1
        self._fd: int | None = None
        self._size = 0

    @staticmethod
    def _number(path: Path) -> int:
        return int(path.stem.split("-")[1])

    def _path(self, segment: int) -> Path:
        return self.directory / f"segment-{segment:08d}.log"

    def recover(self) -> list[tuple[int, dict[str, Any]]]:
        """(segment, record) of every intact record left by earlier runs, in order."""
        found: list[tuple[int, dict[str, Any]]] = []
        for segment in self._recovered:
            data = self._path(segment).read_bytes()
            position, count = 0, 0
            while position + _HEADER.size <= len(data):
                length, checksum = _HEADER.unpack_from(data, position)
                payload = data[position + _HEADER.size : position + _HEADER.size + length]
                if len(payload) < length or zlib.crc32(payload) != checksum:
                    break  # a torn tail: the crash happened while writing it
                records = marshal.loads(payload)
                found.extend((segment, record) for record in records)
                position += _HEADER.size + length
                count += len(records)
            with self._lock:
                self._live[segment] = count
            if count == 0:
                self._unlink(segment)
        return found

    def append(self, records: list[Any]) -> int:
        """Writes records in one go; returns the segment that holds them."""
        payload = marshal.dumps(records)
        data = _HEADER.pack(len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            if self._fd is None or self._size >= _SEGMENT_BYTES:
                self._open_next()
            assert self._fd is not None
            segment = self._current
            self._live[segment] = self._live.get(segment, 0) + len(records)
            fd = self._fd
            self._size += len(data)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self._fsync:
                os.fsync(fd)
        except OSError as exc:
            raise BackendError(f"cannot write the journal in {self.directory}: {exc}") from exc
        return segment

    def _open_next(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            previous = self._current
            self._current += 1
            if self._live.get(previous, 0) == 0:
                self._unlink(previous)
        self._fd = os.open(self._path(self._current), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self._size = 0
        if self._fsync:
            directory = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def release(self, segments: list[int]) -> None:
        """One record in each of these segments is resolved."""
        with self._lock:
            for segment in segments:
                left = self._live[segment] = self._live.get(segment, 1) - 1
                if left <= 0 and segment != self._current:
                    del self._live[segment]
                    self._unlink(segment)

    def _unlink(self, segment: int) -> None:
        self._path(segment).unlink(missing_ok=True)

    def segments(self) -> list[int]:
        with self._lock:
            return sorted(self._live)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._live.get(self._current, 0) == 0:
                self._live.pop(self._current, None)
                self._unlink(self._current)
