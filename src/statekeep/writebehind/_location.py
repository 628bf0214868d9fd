"""Where a store's write-behind journal lives, and whether a crash left writes in it.

`journal="auto"` (the default) puts the journal beside a database file
(`<db>.writebehind/`); a database that does not outlive its process (memory,
`sqlite://:memory:`, PostgreSQL) gets none unless a folder is named. A store
opening a database whose journal holds a crashed run's writes starts its
engine at once, so those writes are stored before anything else happens.
"""

from __future__ import annotations

from pathlib import Path

from ._claim import claimable_leftovers
from ._options import WriteBehindOptions


def journal_dir(options: WriteBehindOptions, location: str | None) -> Path | None:
    """The journal folder for a database at location (a file path, or None)."""
    journal = options.journal
    if journal == "auto":
        return None if location is None else Path(location + ".writebehind")
    return None if journal is None else Path(journal)


def has_leftovers(options: WriteBehindOptions, location: str | None) -> bool:
    """Did a crashed run leave writes in a journal nobody holds?"""
    journal = journal_dir(options, location)
    return journal is not None and claimable_leftovers(journal)
