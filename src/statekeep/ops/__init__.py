"""Operating a store: what the `statekeep` command does, as functions.

inspect (what a database holds and what waits on it), export / import_dump /
copy (dumps and moves with versions kept, verified by checksums), the dead
letters of write-behind, and the benchmark of the installed version. Each
takes a Store (see open_existing: opened without taking anything over).
"""

from ._bench import BenchProgress, BenchReport, BenchRow, bench_table, run_bench
from ._copy import Copied, copy
from ._dump import Checksum, Digest, read_header
from ._export import Exported, Progress, export, select_collections
from ._import import MODES, Imported, Mode, import_dump
from ._inspect import COUNT_CAP, Inspection, Lagging, inspect
from ._letters import Letter, dead_letters, drop, pick, requeue
from ._stores import local_path, open_existing, open_quietly, outlives

__all__ = [
    "BenchProgress",
    "BenchReport",
    "BenchRow",
    "COUNT_CAP",
    "MODES",
    "Checksum",
    "Copied",
    "Digest",
    "Exported",
    "Imported",
    "Inspection",
    "Lagging",
    "Letter",
    "Mode",
    "Progress",
    "bench_table",
    "copy",
    "dead_letters",
    "drop",
    "export",
    "import_dump",
    "inspect",
    "local_path",
    "open_existing",
    "open_quietly",
    "outlives",
    "pick",
    "read_header",
    "requeue",
    "run_bench",
    "select_collections",
]
