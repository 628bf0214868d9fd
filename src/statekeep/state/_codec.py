"""Snapshots as bytes: a state's value packed (see _pack), compressed with zstd.

A full snapshot is the whole value; a delta is the list of changes since the
snapshot before it (`[path, value]`, or `[path]` for a key removed). The
level is chosen from what compressing has cost lately against how often
snapshots are taken: a state snapshotted often is compressed fast (level 1),
a state written rarely is compressed hard (up to 9); memory pressure asks
for the hardest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import zstandard

from ..errors import ValidationError
from ._pack import Schema, pack, unpack

LEVELS = (1, 3, 6, 9)


def encode(value: Any, level: int, schema: Schema) -> bytes:
    return zstandard.ZstdCompressor(level=level).compress(pack(value, schema))


def decode(data: bytes, schema: Schema) -> tuple[Any, bool]:
    """What encode() made, and whether it is exact (see _pack.unpack)."""
    try:
        raw = zstandard.ZstdDecompressor().decompress(data)
    except Exception as exc:  # noqa: BLE001 - not zstd, or claims a size no memory holds
        raise ValidationError(f"a stored state cannot be read: {exc!r}") from None
    return unpack(raw, schema)


@dataclass
class Codec:
    """Encodes snapshots and keeps the figures: bytes in and out, seconds."""

    level: int = 3
    budget: float = 0.02  # at most this share of one core on compressing
    raw_bytes: int = 0
    stored_bytes: int = 0
    seconds: float = 0.0
    fixed: bool = False  # a level given by the application, or the hardest: never changed

    def encode(self, value: Any, interval: float, schema: Schema) -> bytes:
        """value compressed; interval: seconds between snapshots lately."""
        started = time.perf_counter()
        raw = pack(value, schema)
        data = zstandard.ZstdCompressor(level=self.level).compress(raw)
        spent = time.perf_counter() - started
        self.raw_bytes += len(raw)
        self.stored_bytes += len(data)
        self.seconds += spent
        if not self.fixed and interval > 0:
            self._choose(spent / interval)
        return data

    def _choose(self, share: float) -> None:
        at = LEVELS.index(self.level) if self.level in LEVELS else 1
        if share > self.budget and at > 0:
            self.level = LEVELS[at - 1]
        elif share < self.budget / 8 and at < len(LEVELS) - 1:
            self.level = LEVELS[at + 1]

    def hardest(self) -> None:
        """The hardest level from now on (memory pressure): no longer chosen by cost."""
        if not self.fixed:
            self.level = LEVELS[-1]
            self.fixed = True

    @property
    def ratio(self) -> float:
        """Stored bytes / packed bytes (smaller is better)."""
        return self.stored_bytes / self.raw_bytes if self.raw_bytes else 1.0

    @property
    def mb_per_second(self) -> float:
        return self.raw_bytes / self.seconds / 1e6 if self.seconds else 0.0
