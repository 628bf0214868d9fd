"""App state: one live, typed, immutable state per concern of an application.

- `AppState(Editor())` or `store.state("editor", Editor)`: frozen snapshots
  (`state.value`) that share everything a change did not touch.
- `set(path, value)`, `update(fn)`, `with batch() as draft`: validated at the
  changed paths only; `priority=` CRITICAL (at once), NORMAL (coalesced per
  frame under load), LOW (when idle), `deadline=` seconds.
- `subscribe(path or selector, callback(old, new))`: called only when the
  selected value changed, once per version.
- `undo()`, `redo()`, `at(version)`, `stats()`, `memory()`.

Needs the `state` extra: `pip install statekeep[state]` (immutables, zstandard).
See docs/state.md.
"""

from ..writebehind import Priority
from ._appstate import AppState
from ._memory import MemoryReport
from ._node import Node
from ._persist import check_open_options, open_state
from ._pressure import GuardStats, MemoryGuard, MemoryPressure, MemoryRelieved, memory_guard
from ._snapshot import StateSnapshot
from ._stats import StateStats
from ._subscription import Subscription

__all__ = [
    "AppState",
    "GuardStats",
    "MemoryGuard",
    "MemoryPressure",
    "MemoryRelieved",
    "MemoryReport",
    "Node",
    "Priority",
    "StateSnapshot",
    "StateStats",
    "Subscription",
    "check_open_options",
    "memory_guard",
    "open_state",
]
