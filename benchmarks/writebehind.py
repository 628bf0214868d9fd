"""5. Write-behind (store.enqueue) into a SQLite file: issue 11's benchmarks.

Each part runs Sizes.wb_rounds rounds and judges the median (the best round
is shown beside it), and notes the machine's other load while it ran (an
extra table), since the figures of a busy machine mean less:

1-2. enqueue until stored vs save_many, new entities and updates, time-ordered
     and random ids, journal and commit durability (writebehind_stored);
3.   enqueue()'s own time at 50,000 writes/s offered, 1 and 4 threads, and
6.   acknowledged -> durable at that load (writebehind_latency);
4.   the caller's side against a save() loop, default and strict durability;
5.   against persist-queue's SQLiteAckQueue (writebehind_caller);
and the batch-size curve by offered rate (an extra table).

Figures of a durability mode this engine lacks read "n/a" (see _writebehind).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from . import load, writebehind_caller, writebehind_latency, writebehind_stored
from ._writebehind import has_durability_modes
from .harness import ExtraTable, Progress, Result, Sizes

Part = Callable[[Sizes, str, Progress], Sequence[Result] | ExtraTable]
PARTS: tuple[tuple[str, Part], ...] = (
    ("enqueue until stored vs save_many", writebehind_stored.run),
    ("enqueue() at an offered load", writebehind_latency.latency),
    ("acknowledged -> durable", writebehind_latency.durable),
    ("caller side vs save() loop", writebehind_caller.against_save),
    ("vs persist-queue", writebehind_caller.against_queue),
    ("batch size by offered rate", writebehind_latency.curve),
)


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result | ExtraTable]:
    results: list[Result | ExtraTable] = []
    loads: list[tuple[str, load.Load]] = []
    first = load.snapshot()
    for name, part in PARTS:
        before = load.snapshot()
        got = part(sizes, workdir, progress)
        loads.append((name, load.between(before, load.snapshot())))
        if isinstance(got, ExtraTable):
            results.append(got)
        else:
            results.extend(got)
    loads.append(("all of write-behind", load.between(first, load.snapshot())))
    modes = "with" if has_durability_modes() else "without"
    note = f"Engine {modes} durability modes (WriteBehindOptions.durability)."
    results.append(
        load.load_table("Write-behind: the machine's other load during each part", loads, note)
    )
    return results
