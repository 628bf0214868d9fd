"""The machine's other load while a benchmark ran: ratios hold on a noisy
machine, but a reader should know how noisy it was.

Two figures, read at the start and at the end of a stretch of work:
- the load average (1, 5 and 15 minutes), which counts this process's own
  running threads too: a benchmark alone on the machine shows about 1-2;
- the CPU the other processes kept busy: all cores' busy time (user, nice,
  system, irq, softirq, from /proc/stat through psutil) less this process's
  own CPU time (every thread, and the children it has waited for), as a
  share of all cores over the stretch's wall time. 50% on 2 cores is one
  core taken by something else. A PostgreSQL server on the same machine is
  "other" too. Steal (the hypervisor giving the cores to other machines) is
  shown apart.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil  # type: ignore[import-untyped]

from .harness import ExtraTable


@dataclass(frozen=True)
class Snapshot:
    wall: float  # time.monotonic()
    loadavg: tuple[float, float, float]
    busy: float  # CPU seconds of all cores since boot, not idle, not steal
    steal: float
    own: float  # this process's CPU seconds


def snapshot() -> Snapshot:
    cpu = psutil.cpu_times()
    busy = cpu.user + cpu.nice + cpu.system + getattr(cpu, "irq", 0.0)
    busy += getattr(cpu, "softirq", 0.0)
    mine = psutil.Process().cpu_times()
    own = mine.user + mine.system + mine.children_user + mine.children_system
    return Snapshot(time.monotonic(), os.getloadavg(), busy, getattr(cpu, "steal", 0.0), own)


NOISY_OTHER = 0.25  # share of all cores other processes may keep busy before a warning
NOISY_STEAL = 0.10  # ... the hypervisor may steal


@dataclass(frozen=True)
class Load:
    """What ran beside the benchmark between two snapshots."""

    seconds: float
    loadavg_start: tuple[float, float, float]
    loadavg_end: tuple[float, float, float]
    other_busy: float  # share of all cores kept busy by other processes, 0..1
    own_busy: float  # share of all cores this process used
    steal: float  # share of all cores stolen by the hypervisor
    cores: int

    def warning(self) -> str | None:
        """A warning when the machine was too busy for the figures to be
        trusted (other processes over a quarter of the cores, or a tenth
        stolen by the hypervisor); None on a quiet enough machine."""
        if self.other_busy <= NOISY_OTHER and self.steal <= NOISY_STEAL:
            return None
        return (
            f"the machine was busy: other processes kept {self.other_busy:.0%} of its "
            f"{self.cores} cores busy and the hypervisor stole {self.steal:.0%}; these "
            "figures are not to be trusted: run it again on a quiet machine"
        )

    def describe(self) -> str:
        start, end = self.loadavg_start, self.loadavg_end
        return (
            f"other processes kept {self.other_busy:.0%} of {self.cores} cores busy "
            f"(steal {self.steal:.0%}; this process {self.own_busy:.0%}); "
            f"loadavg {start[0]:.2f} {start[1]:.2f} {start[2]:.2f} at the start, "
            f"{end[0]:.2f} {end[1]:.2f} {end[2]:.2f} at the end, over {self.seconds:.0f} s"
        )


def between(start: Snapshot, end: Snapshot) -> Load:
    cores = psutil.cpu_count() or 1
    capacity = max(end.wall - start.wall, 1e-9) * cores
    own = end.own - start.own
    other = (end.busy - start.busy) - own
    return Load(
        seconds=end.wall - start.wall,
        loadavg_start=start.loadavg,
        loadavg_end=end.loadavg,
        other_busy=min(max(other / capacity, 0.0), 1.0),
        own_busy=min(max(own / capacity, 0.0), 1.0),
        steal=min(max((end.steal - start.steal) / capacity, 0.0), 1.0),
        cores=cores,
    )


# the columns of a module's table of the machine's load during each of its parts
LOAD_HEADERS = (
    "Part",
    "Seconds",
    "loadavg (1 min) start -> end",
    "Other processes' CPU",
    "Steal",
    "This process's CPU",
)


def load_table(title: str, loads: list[tuple[str, Load]], note: str = "") -> ExtraTable:
    """A module's table of the machine's load during each of its parts (the
    last of loads: all of them)."""
    cores = loads[-1][1].cores
    return ExtraTable(
        title,
        LOAD_HEADERS,
        [
            (
                name,
                f"{part.seconds:.1f}",
                f"{part.loadavg_start[0]:.2f} -> {part.loadavg_end[0]:.2f}",
                f"{part.other_busy:.0%}",
                f"{part.steal:.0%}",
                f"{part.own_busy:.0%}",
            )
            for name, part in loads
        ],
        note=(
            f"CPU as a share of all {cores} cores over the part's wall time: 50% on 2 "
            "cores is one core. Other processes: all cores' busy time less this "
            "process's own; loadavg counts this process's running threads too."
            + (f" {note}" if note else "")
        ),
    )
