"""A state kept as zstd bytes while nobody uses it: `compress()`.

`compress()` packs the current snapshot exactly (see _pack), compresses it
and drops the live tree and the history; the next read or change
decompresses it (`_warm`). The memory guard (see _pressure) calls it for
cold states, and `_relieve()` under memory pressure. Neither ever waits for
another thread's batch: they try the state's lock and give up.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import ConfigurationError, ValidationError
from ._codec import decode, encode
from ._history import History
from ._node import Node
from ._options import StateOptions
from ._pack import Schema, loose
from ._shape import ModelShape

log = logging.getLogger("statekeep.state")

COLD = Node()  # the root of a compressed state


class Compressible:
    """AppState's compression (a mixin: the attributes are AppState's)."""

    options: StateOptions
    _lock: Any
    _root: Any
    _version: int
    _cold: tuple[bytes, int] | None
    _closed: bool
    _batch: Any
    _dispatching: bool
    _coordinator: Any
    _history: History
    _schema: Schema | None
    _shape: ModelShape
    _model: type[Any]
    _persister: Any

    @property
    def compressed(self) -> bool:
        """True while the state is kept compressed (see compress())."""
        return self._cold is not None

    def compress(self, hardest: bool = False) -> bool:
        """Keeps the state as zstd bytes until it is next read or changed,
        and drops its history; False if it cannot now (updates waiting, a
        batch open, closed, or already compressed). The memory guard calls
        it for cold states (see _pressure). It never waits for another
        thread's batch or update: it returns False then."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if self._cold is not None or self._closed or self._batch is not None:
                return False
            if self._coordinator.pending() or self._dispatching:
                return False
            level = 19 if hardest else 3
            try:
                self._cold = (encode(self._root, level, self.schema), level)
            except ValidationError as exc:  # a value of a type it cannot keep
                log.warning(
                    "state %s: not compressed: %s",
                    self.options.name,
                    exc,
                    extra={
                        "statekeep": {
                            "event": "state.not_compressed",
                            "state": self.options.name,
                            "level": level,
                            "error_type": type(exc).__name__,
                            "error": str(exc),
                        }
                    },
                )
                return False
            self._root = COLD
            self._history.restart((self._version, COLD, (), 0, COLD))
            return True
        finally:
            self._lock.release()

    def _warm(self) -> Any:
        """The root, decompressed first if the state is compressed."""
        with self._lock:
            cold = self._cold
            if cold is None:
                return self._root
            root = self.unpacked(cold[0])
            self._root, self._cold = root, None
            self._history.restart((self._version, root, (), 0, root))
            return root

    def unpacked(self, data: bytes) -> Any:
        """A root encoded by _codec, as a frozen tree of this state's shape."""
        value, exact = self.decoded(data)
        if not exact:
            return self._shape.restore(loose(value), "")
        if type(value) is not self._shape.cls:
            raise ValidationError(f"a stored state is not a {self._model.__name__}: {value!r:.100}")
        return value

    def decoded(self, data: bytes) -> tuple[Any, bool]:
        """What _codec encoded, and whether it is exact (see _pack)."""
        return decode(data, self.schema)

    @property
    def schema(self) -> Schema:
        if self._schema is None:
            self._schema = Schema(self._shape)
        return self._schema

    def _relieve(self) -> int:
        """Under memory pressure: drops the history; 1 if there was one (0
        also when another thread holds the state: the guard's next look
        tries again, never waiting for a batch)."""
        if not self._lock.acquire(blocking=False):
            return 0
        try:
            dropped = len(self._history.entries) > 1 or bool(self._history.undo)
            self._history.trim(1)
            if self._persister is not None:
                self._persister.hardest()
            return int(dropped)
        finally:
            self._lock.release()

    def trim(self, keep: int = 1) -> None:
        """Keeps only the newest `keep` versions (undo and redo shrink too)."""
        if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
            raise ConfigurationError(f"trim() keeps a whole number >= 1 of versions, not {keep!r}")
        with self._lock:
            self._history.trim(keep)
