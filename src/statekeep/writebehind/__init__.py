"""Write-behind: enqueue writes that are stored in the background, in batches,
by priority, surviving a crash once acknowledged durable."""

from ._engine import WriteBehind
from ._location import has_leftovers, journal_dir
from ._options import DeadLetter, Policy, Priority, Stats, WriteBehindOptions
from ._receipt import Receipt

__all__ = [
    "DeadLetter",
    "Policy",
    "Priority",
    "Receipt",
    "Stats",
    "WriteBehind",
    "WriteBehindOptions",
    "has_leftovers",
    "journal_dir",
]
