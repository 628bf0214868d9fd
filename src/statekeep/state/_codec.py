"""Snapshots as bytes: a state's value as JSON, compressed with zstd.

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

import pydantic_core
import zstandard

from ._node import plain

LEVELS = (1, 3, 6, 9)


def encode(value: Any, level: int) -> bytes:
    return zstandard.ZstdCompressor(level=level).compress(pydantic_core.to_json(plain(value)))


def decode(data: bytes) -> Any:
    return pydantic_core.from_json(zstandard.ZstdDecompressor().decompress(data))


@dataclass
class Codec:
    """Encodes snapshots and keeps the figures: bytes in and out, seconds."""

    level: int = 3
    budget: float = 0.02  # at most this share of one core on compressing
    raw_bytes: int = 0
    stored_bytes: int = 0
    seconds: float = 0.0
    fixed: bool = False  # a level given by the application: never changed

    def encode(self, value: Any, interval: float) -> bytes:
        """value compressed; interval: seconds between snapshots lately."""
        started = time.perf_counter()
        raw = pydantic_core.to_json(plain(value))
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
        if not self.fixed:
            self.level = LEVELS[-1]

    @property
    def ratio(self) -> float:
        """Stored bytes / JSON bytes (smaller is better)."""
        return self.stored_bytes / self.raw_bytes if self.raw_bytes else 1.0

    @property
    def mb_per_second(self) -> float:
        return self.raw_bytes / self.seconds / 1e6 if self.seconds else 0.0
