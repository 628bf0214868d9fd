"""Write-behind settings, priorities, back-pressure policies and statistics."""

from __future__ import annotations

import enum
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .._numbers import is_seconds, is_whole
from ._journal import JournalRecord


class Priority(enum.IntEnum):
    """CRITICAL is written at once; NORMAL within the batch window; LOW when
    nothing else waits (or once it is low_max_age old)."""

    LOW = 0
    NORMAL = 1
    CRITICAL = 2


class Policy(enum.Enum):
    """What enqueue does when max_pending writes are waiting."""

    BLOCK = "block"  # wait for room (up to block_timeout), then QueueFullError
    RAISE = "raise"  # QueueFullError at once
    SHED_LOW = "shed_low"  # drop the oldest LOW write (its receipt fails), else raise


Event = Callable[[str, dict[str, Any]], None]
DURABILITY = ("auto", "journal", "commit")
JOURNAL_WINDOW = 0.1  # the default window where every write is journaled


@dataclass(frozen=True)
class WriteBehindOptions:
    max_pending: int = 10_000
    policy: Policy = Policy.BLOCK
    block_timeout: float | None = 30.0
    # "journal": durable once in the journal on this host's disk (within about
    # a millisecond), stored in batches; "commit": durable once committed (group
    # commits every commit_interval), journaled only if not committed within
    # spill_after; "auto": commit for an embedded database file (SQLite), journal
    # for the others. Without a journal, durable means stored.
    durability: str = "auto"
    commit_interval: float = 0.002
    spill_after: float = 0.05
    drain_on_sigterm: bool = True  # install a SIGTERM handler that drains (main thread)
    # NORMAL writes wait at most this long for company; None: commit_interval
    # when durable means committed, else 0.1 s
    window: float | None = None
    max_batch: int = 1000
    low_max_age: float = 5.0
    retry_base: float = 0.1
    retry_cap: float = 30.0
    drain_timeout: float = 10.0  # how long close() waits for pending writes
    journal: str | os.PathLike[str] | None = "auto"  # a folder, "auto" (beside a file) or None
    fsync: bool = False  # fsync the journal: durable across power loss too
    on_event: Event | None = None  # ("health.high" | "health.ok" | "shed" | "retry" | ...)

    def __post_init__(self) -> None:
        from ..errors import ConfigurationError

        if not isinstance(self.policy, Policy):
            try:
                object.__setattr__(self, "policy", Policy(self.policy))
            except ValueError as exc:
                raise ConfigurationError(
                    f"policy must be one of {[p.value for p in Policy]}, not {self.policy!r}"
                ) from exc
        if self.durability not in DURABILITY:
            raise ConfigurationError(
                f"durability must be one of {list(DURABILITY)}, not {self.durability!r}"
            )
        positive = {  # seconds (max_pending and max_batch: whole numbers, below)
            "window": JOURNAL_WINDOW if self.window is None else self.window,
            "commit_interval": self.commit_interval,
            "spill_after": self.spill_after,
            "low_max_age": self.low_max_age,
            "retry_base": self.retry_base,
            "retry_cap": self.retry_cap,
        }
        for name, value in positive.items():
            if not is_seconds(value, positive=True):
                raise ConfigurationError(f"{name} must be a positive number, not {value!r}")
        for name in ("block_timeout", "drain_timeout"):
            value = getattr(self, name)
            if value is not None and not is_seconds(value):  # None waits for ever
                raise ConfigurationError(f"{name} must be seconds >= 0 or None, not {value!r}")
        for name in ("fsync", "drain_on_sigterm"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(
                    f"{name} must be True or False, not {getattr(self, name)!r}"
                )
        if self.on_event is not None and not callable(self.on_event):
            raise ConfigurationError(f"on_event must be callable, not {self.on_event!r}")
        journal = self.journal
        if journal is not None and (
            not isinstance(journal, (str, os.PathLike)) or not str(os.fspath(journal)).strip()
        ):
            raise ConfigurationError(
                f"journal must be a folder's path, 'auto' or None, not {self.journal!r}"
            )
        for name in ("max_pending", "max_batch"):  # any size: a bound, never stored
            if not is_whole(getattr(self, name), least=1, most=math.inf):
                raise ConfigurationError(
                    f"{name} must be a whole number, not {getattr(self, name)!r}"
                )


@dataclass(frozen=True)
class Stats:
    pending: dict[str, int] = field(default_factory=dict)  # by priority name
    in_flight: int = 0
    stored: int = 0
    retried: int = 0
    dead_lettered: int = 0
    shed: int = 0
    last_error: str | None = None
    oldest_pending_age: float = 0.0  # seconds
    # the flusher's circuit breaker on the database: "closed"; "open" after a
    # batch failed for a reason that may pass (backing off, journal kept);
    # "half_open" while a probe runs
    database: str = "closed"

    @property
    def total_pending(self) -> int:
        return sum(self.pending.values())


@dataclass(frozen=True)
class DeadLetter:
    """A write that failed for good, with its error; requeue() tries it again
    from its journal record (the write as the journal keeps it)."""

    collection: str
    id: str
    delete: bool
    error: str
    journal_record: JournalRecord = field(repr=False)

    @property
    def record(self) -> JournalRecord:
        """Deprecated: journal_record."""
        warnings.warn(
            "DeadLetter.record is deprecated: use DeadLetter.journal_record",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.journal_record
