"""The live panel of the demo's step 2: the write-behind queue's statistics
(`store.writebehind.stats()`), the enricher's progress through the outbox,
and the sessions' state machine transitions as they commit."""

from __future__ import annotations

import time
from collections import deque

from rich.panel import Panel as RichPanel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

import statekeep
from statekeep import Priority

from .events import Enricher, SessionChanges

BAR_WIDTH = 24


class Panel:
    """The live view of `store.writebehind.stats()` and of the enricher: rich
    renders it (calls __rich__) at each refresh on a terminal, and once at the
    end elsewhere."""

    def __init__(
        self,
        store: statekeep.Store,
        enricher: Enricher,
        expected: int,
        segments: int,
        transitions: SessionChanges,
    ) -> None:
        self._engine = store.writebehind
        self._transitions = transitions
        self._enricher = enricher
        self._segments = segments
        first = self._engine.stats()
        self._base = first.stored  # the sessions were stored before the stream
        self._expected = expected
        self._enqueued = 0
        self._began = time.monotonic()
        self._samples: deque[tuple[float, int]] = deque([(self._began, 0)])
        self._finished: float | None = None
        self.peak: dict[str, int] = dict.fromkeys(first.pending, 0)

    def sample(self, enqueued: int) -> None:
        """From the enqueuing thread: how far it is, and the pending peaks."""
        self._enqueued = enqueued
        for name, count in self._engine.stats().pending.items():
            self.peak[name] = max(self.peak.get(name, 0), count)

    def finish(self) -> None:
        self._finished = time.monotonic()

    def __rich__(self) -> RichPanel:
        stats = self._engine.stats()
        now = time.monotonic()
        stored = stats.stored - self._base
        if self._finished is None:  # stored/s over the last second
            self._samples.append((now, stored))
            while len(self._samples) > 2 and now - self._samples[1][0] >= 1.0:
                self._samples.popleft()
            since, before = self._samples[0]
            rate = f"{(stored - before) / max(now - since, 1e-9):,.0f}"
        else:
            rate = f"{stored / max(self._finished - self._began, 1e-9):,.0f} on average"
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold")
        grid.add_column()
        grid.add_column(justify="right")
        total = max(self._expected, 1)
        grid.add_row(
            "enqueued",
            ProgressBar(total, self._enqueued, width=BAR_WIDTH),
            f"{self._enqueued:,} / {self._expected:,}",
        )
        grid.add_row("stored", ProgressBar(total, stored, width=BAR_WIDTH), f"{stored:,}")
        pending = Text()
        for priority in reversed(Priority):
            pending.append(f"{priority.name} ", style="dim")
            pending.append(f"{stats.pending.get(priority.name, 0):,}  ")
        grid.add_row("pending", pending, "")
        grid.add_row("in flight", f"{stats.in_flight:,}", "")
        grid.add_row("stored/s", rate, "")
        grid.add_row("oldest pending", f"{stats.oldest_pending_age:.2f} s", "")
        enriched, handled, written = self._enricher.progress()
        grid.add_row(
            "enriched",
            ProgressBar(max(self._segments, 1), enriched, width=BAR_WIDTH),
            f"{enriched:,} segments",
        )
        lag = Text()
        for what, count in (("written", written), ("handled", handled), ("lag", written - handled)):
            lag.append(f"{what} ", style="dim")
            lag.append(f"{count:,}  ")
        grid.add_row("outbox", lag, "")
        reached, recent = self._transitions.snapshot()
        moves = Text()
        for state, count in reached.items():
            moves.append(f"{state} ", style="dim")
            moves.append(f"{count:,}  ")
        grid.add_row("transitions", moves, "")
        if recent:
            grid.add_row("latest", Text(recent[-1]), "")
        failures = self._enricher.latest.get("failures", 0)
        if failures:
            grid.add_row("enricher", Text(f"{failures:,} handler failures", style="red"), "")
        if stats.retried or stats.dead_lettered or stats.last_error:
            problem = f"retried {stats.retried:,}, dead-lettered {stats.dead_lettered:,}"
            if stats.last_error:
                problem += f"\nlast error: {stats.last_error}"
            grid.add_row("problems", Text(problem, style="red"), "")
        return RichPanel(
            grid,
            title="write-behind: store.writebehind.stats()",
            subtitle=f"events: durable subscriber 'enricher' in process {self._enricher.pid}",
            expand=False,
        )
