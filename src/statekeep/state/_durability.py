"""What a state kept in a store adds: its durable version, and restarting
from a restored root (the persister itself is in _persist)."""

from __future__ import annotations

from typing import Any, Protocol

from ..errors import StateError
from ._history import History
from ._options import StateOptions
from ._watch import Index, Watch


class Persister(Protocol):
    """What a state kept in a store has (statekeep.state._persist)."""

    @property
    def durable_version(self) -> int: ...
    def wait_durable(self, timeout: float | None = None) -> int: ...
    def hardest(self) -> None: ...
    def close(self) -> None: ...
    def after_fork(self) -> None: ...


class Persistable:
    """AppState's persistence (a mixin: the attributes are AppState's)."""

    options: StateOptions
    _lock: Any
    _root: Any
    _version: int
    _first_version: int
    _history: History
    _index: Index
    _watches: dict[Watch, None]
    _persister: Persister | None

    @property
    def persisted(self) -> bool:
        return self._persister is not None

    @property
    def durable_version(self) -> int:
        """The newest version a crash now would restore at least (-1: none yet)."""
        return self._persisted().durable_version

    def wait_durable(self, timeout: float | None = None) -> int:
        """Snapshots the newest version and waits until it is durable."""
        return self._persisted().wait_durable(timeout)

    def _persisted(self) -> Persister:
        if self._persister is None:
            raise StateError(
                f"the state {self.options.name!r} is not kept in a store: "
                "open it with store.state()"
            )
        return self._persister

    def _restart(self, root: Any, version: int) -> None:
        """Starts again from a restored root at its version (no history before it)."""
        with self._lock:
            self._root, self._version, self._first_version = root, version, version
            self._history.restart((version, root, (), 0, root))
            for watch in self._watches:
                watch.stop(self._index)
                watch.start(root, self._index)
