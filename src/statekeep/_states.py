"""The app states a Store holds: `store.state(name, Model)` opens one per
name (restored from the store, persisted through its write-behind; see
statekeep.state), and the store's close() closes them first, so that their
last snapshots are enqueued while the store still takes writes.

statekeep.state is imported on the first store.state(): `import statekeep`
does not need its extras (immutables, zstandard).
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from . import _fork
from .errors import ConfigurationError

if TYPE_CHECKING:
    from .state import AppState


class States:
    def __init__(self, store: Any) -> None:
        self._store = store
        self._open: dict[str, AppState[Any]] = {}
        self._lock = threading.Lock()
        _fork.track(self)

    def _after_fork(self) -> None:
        """In a forked child: a fresh lock. The persisted states it inherits
        are closed there (they are the parent's to write; see AppState)."""
        self._lock = threading.Lock()

    def open(self, name: str, model: Any, options: dict[str, Any]) -> AppState[Any]:
        from .state import check_open_options, open_state

        with self._lock:
            found = self._open.get(name)
            if found is not None and not found.closed:
                check_open_options(options)  # bad ones are refused though they are not used
                wanted = model if isinstance(model, type) else type(model)
                if found.model_class is not wanted:
                    raise ConfigurationError(
                        f"the state {name!r} is open as {found.model_class.__name__}, "
                        f"not {getattr(wanted, '__name__', wanted)}"
                    )
                return found
            state = self._open[name] = open_state(self._store, name, model, **options)
            return state

    def all(self) -> list[AppState[Any]]:
        """The states open now."""
        with self._lock:
            return list(self._open.values())

    def close_all(self) -> None:
        with self._lock:
            states = list(self._open.values())
        for state in states:
            state.close()
