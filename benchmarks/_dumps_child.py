"""The child process of the dumps benchmark's memory check:

    python -m benchmarks._dumps_child export SOURCE.db DUMP
    python -m benchmarks._dumps_child import DUMP TARGET.db

exports the SQLite file SOURCE.db into the dump file DUMP, or imports DUMP
into the (new) SQLite file TARGET.db, and prints one JSON line: baseline and
peak RSS in bytes (VmRSS before the work, VmHWM after it: see _rss_child),
seconds, rows.
"""

from __future__ import annotations

import json
import sys
import time

from statekeep import ops

from ._rss_child import _status


def _export(source: str, dump: str) -> int:
    store = ops.open_existing(f"sqlite:///{source}")
    try:
        with open(dump, "w", encoding="utf-8") as out:
            return ops.export(store, out).rows
    finally:
        store.close()


def _import(dump: str, target: str) -> int:
    store = ops.open_quietly(f"sqlite:///{target}")
    try:
        with open(dump, encoding="utf-8") as lines:
            imported = ops.import_dump(store, lines)
        if not imported.complete:
            raise RuntimeError(f"{dump} has no end line, or its checksums disagree")
        return imported.rows
    finally:
        store.close()


def main(argv: list[str]) -> None:
    what, source, target = argv
    work = {"export": _export, "import": _import}[what]
    baseline = _status("VmRSS")
    start = time.perf_counter()
    rows = work(source, target)
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {"baseline": baseline, "peak": _status("VmHWM"), "seconds": seconds, "rows": rows}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
