"""What an AppState reports: `state.stats()`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ._coordinator import Decisions


@dataclass
class Counters:
    reads: int = 0  # value and get() reads
    writes: int = 0  # set(), delete(), update() and batch() calls
    updates_applied: int = 0
    updates_failed: int = 0  # an update function that raised, or a path gone by then
    versions: int = 0  # versions made
    callbacks: int = 0  # subscription callbacks called
    callbacks_failed: int = 0


@dataclass(frozen=True)
class StateStats:
    name: str
    version: int
    versions_kept: int
    history_bytes: (
        int  # estimated bytes the kept versions do not share (0 unless history_bytes= is set)
    )
    counters: Counters
    decisions: Decisions
    frame: float  # the frame NORMAL updates coalesce in now, seconds
    pending: int  # updates waiting for their frame or for idle time
    update_seconds: float  # what making and announcing a version costs lately
    subscriptions: int
    extra: dict[str, Any] = field(default_factory=dict)  # persistence, memory pressure

    @property
    def coalesced(self) -> int:
        """Updates that did not need a version of their own (copies avoided)."""
        return max(0, self.counters.updates_applied - self.counters.versions)

    @property
    def batch_size(self) -> float:
        """Updates per version, on average."""
        versions = self.counters.versions
        return self.counters.updates_applied / versions if versions else 0.0

    @property
    def callbacks_per_version(self) -> float:
        versions = self.counters.versions
        return self.counters.callbacks / versions if versions else 0.0

    def rows(self) -> list[tuple[str, str]]:
        c, d = self.counters, self.decisions
        rows = [
            ("version", f"{self.version:,} ({self.versions_kept} kept)"),
            (
                "updates",
                f"{c.updates_applied:,} in {c.versions:,} versions ({self.coalesced:,} coalesced, "
                f"{self.batch_size:.1f} per version)",
            ),
            (
                "decisions",
                f"{d.immediate:,} immediate, {d.batched:,} batched, {d.deferred:,} deferred "
                f"(now {d.mode}, {d.rate:,.0f}/s, frame {self.frame * 1000:.0f} ms)",
            ),
            ("version cost", f"{self.update_seconds * 1e6:,.1f} us"),
            (
                "subscriptions",
                f"{self.subscriptions} ({c.callbacks:,} calls, "
                f"{self.callbacks_per_version:.2f} per version, {c.callbacks_failed} failed)",
            ),
            ("reads / writes", f"{c.reads:,} / {c.writes:,} ({c.updates_failed} updates failed)"),
        ]
        rows.extend((name, str(value)) for name, value in self.extra.items())
        return rows

    def table(self) -> Any:
        """A rich Table of rows() (rich is needed here only)."""
        from rich.table import Table

        table = Table(title=f"state {self.name}", show_header=False)
        for name, value in self.rows():
            table.add_row(name, value)
        return table
