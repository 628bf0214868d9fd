"""What a state says of itself: `stats()` (counters, the coordinator's
decisions) and `memory()` (its kept versions measured by walking them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ._history import History
from ._memory import MemoryReport, measure
from ._options import StateOptions
from ._stats import Counters, StateStats


class Reported:
    """AppState's reports (a mixin: the attributes are AppState's)."""

    options: StateOptions
    counters: Counters
    reports: dict[str, Callable[[], Any]]
    _lock: Any
    _coordinator: Any
    _history: History
    _version: int
    _first_version: int
    _direct: int
    _watches: dict[Any, None]

    if TYPE_CHECKING:

        def _warm(self) -> Any: ...

    def stats(self) -> StateStats:
        with self._lock:
            coordinator = self._coordinator
            coordinator.roll()
            return StateStats(
                name=self.options.name,
                version=self._version,
                versions_kept=len(self._history.entries),
                history_bytes=self._history.bytes,
                counters=self._counters(),
                decisions=replace(
                    coordinator.decisions, immediate=coordinator.decisions.immediate + self._direct
                ),
                frame=coordinator.current_frame(),
                pending=coordinator.pending(),
                update_seconds=coordinator.cost,
                subscriptions=len(self._watches),
                extra={name: report() for name, report in self.reports.items()},
            )

    def _counters(self) -> Counters:
        counters = Counters(**vars(self.counters))
        counters.writes += self._direct
        counters.updates_applied += self._direct
        counters.versions = self._version - self._first_version
        return counters

    def memory(self) -> MemoryReport:
        """Measures the kept versions' memory by walking their trees: what
        each version shares with those kept before it, and the total."""
        with self._lock:
            self._warm()
            roots = [entry[1] for entry in self._history.entries]
        report = measure(roots)
        self.reports["memory"] = lambda: (
            f"{report.versions} versions in {report.total_bytes:,} bytes, "
            f"{report.sharing:.2%} shared with the versions kept before "
            f"(as copies: {report.copies_bytes:,} bytes; measured by memory())"
        )
        return report
