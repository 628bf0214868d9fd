"""What a process exports (its series as plain rows), and how the processes
of one server pool them (gunicorn workers, any pre-fork server) through a
directory they share, with no set-up beyond naming it.

Each process writes its rows to `<dir>/<pid>-<start>.json` (a temporary
file, then os.replace: a reader never sees half a file) when it answers a
scrape, once a second on the metrics ticker, and at exit. A scrape, in any
process, merges its own rows with every file of its run:

- A run is the process group (a gunicorn master and its workers share one),
  told apart from an earlier group of the same id by the group leader's
  start time where /proc has it. Files of another run are ignored, and
  deleted once their process is dead: nothing to wipe between runs.
- Counters and histograms are summed over every process of the run, live or
  dead, so totals never go backwards when a worker is replaced (histograms
  merge exactly: the same buckets in every process).
- Gauges are those of the live processes, one series each, labelled `pid`.
- The last minute's buckets (the `_p50`, `_p90`, `_p99` gauges) are merged
  over the live processes.

A process killed with SIGKILL loses what it recorded since its last write
(at most a second). Liveness is `os.kill(pid, 0)`; on Windows, where that
would end the process, every process of the run counts as live.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
import weakref
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ._histogram import Histogram
from ._registry import Registry
from ._series import COUNTER, GAUGE, HISTOGRAM, Labels
from ._ticker import TICKER
from ._window import Windowed

log = logging.getLogger("statekeep.metrics")

ENV = "STATEKEEP_METRICS_DIR"
RECENT = 60  # seconds: the window of the quantile gauges
EVERY = 1.0  # seconds between a process's writes (on the metrics ticker)
_FORMAT = 1
_POOLS_LOCK = threading.RLock()


@dataclass(slots=True)
class Row:
    """One series to export: a counter's or gauge's value, or a histogram's
    all-time and last-minute buckets (in recorded units: `scale` converts)."""

    name: str
    kind: str
    help: str
    unit: str
    labels: Labels
    value: float = 0.0
    total: Histogram | None = None
    recent: Histogram | None = None
    scale: float = 1.0


def registry_of(source: object) -> Registry:
    """A Registry, or what a Store or AsyncStore keeps (`.registry`; an
    AsyncStore's through the Store it wraps)."""
    if isinstance(source, Registry):
        return source
    for holder in (source, getattr(source, "sync", None)):
        found = getattr(holder, "registry", None)
        if isinstance(found, Registry):
            return found
    raise ConfigurationError(
        "metrics are exported from a statekeep.metrics.Registry, a Store or an AsyncStore, "
        f"not {source!r}"
    )


def rows_of(registry: Registry, *, recent: bool = True) -> list[Row]:
    """The registry's series now, in its order (families as made, series by labels)."""
    rows = []
    for s in registry.snapshot(windows=()):
        labels = tuple(sorted(s.labels.items()))
        if s.kind != HISTOGRAM:
            rows.append(Row(s.name, s.kind, s.help, s.unit, labels, s.value))
            continue
        last = _windowed(registry, s.name, labels) if recent else None
        window = last.window(min(RECENT, last.span)) if last is not None else None
        rows.append(
            Row(s.name, s.kind, s.help, s.unit, labels, s.value, s.histogram, window, s.scale)
        )
    return rows


def _windowed(registry: Registry, name: str, labels: Labels) -> Windowed | None:
    # the series itself: registry.timer(name, **labels) would do, but not for
    # a label that is also one of its keywords (unit=, read=)
    found = registry._series.get(name, {}).get(labels)
    return found if isinstance(found, Windowed) else None


# -- the shared directory ---------------------------------------------------------------


def directory_of(source: object, multiprocess_dir: object) -> Path | None:
    """Where the processes meet: None (this process only) unless asked.

    multiprocess_dir: None -> $STATEKEEP_METRICS_DIR if set, else this process
    only; False -> this process only; a path -> that directory; True ->
    $STATEKEEP_METRICS_DIR, else one in the temporary directory named for the
    user and the store's URL (every worker opens the same URL)."""
    env = os.environ.get(ENV) or None
    if multiprocess_dir is None:
        return _checked(env) if env else None
    if multiprocess_dir is False:
        return None
    if multiprocess_dir is True:
        if env:
            return _checked(env)
        url = getattr(source, "url", None)
        if not isinstance(url, str):
            raise ConfigurationError(
                "multiprocess_dir=True names the directory after a store's URL, and "
                f"{source!r} has none: pass multiprocess_dir=<a directory every process "
                f"shares>, or set {ENV}"
            )
        user = str(os.getuid()) if hasattr(os, "getuid") else os.environ.get("USERNAME", "")
        digest = hashlib.sha256(url.encode()).hexdigest()[:16]
        return _checked(Path(tempfile.gettempdir()) / f"statekeep-metrics-{user}-{digest}")
    if isinstance(multiprocess_dir, (str, os.PathLike)):
        return _checked(multiprocess_dir)
    raise ConfigurationError(
        "multiprocess_dir= takes a directory (str or Path), True (one named after the "
        f"store's URL), False or None, not {multiprocess_dir!r}"
    )


def _checked(directory: str | os.PathLike[str]) -> Path:
    path = Path(directory)
    if not str(directory):
        raise ConfigurationError("multiprocess_dir= is a directory, not ''")
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigurationError(
            f"multiprocess_dir {str(path)!r} is a file, not a directory"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"multiprocess_dir {str(path)!r} cannot be made: {exc.strerror}"
        ) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigurationError(f"multiprocess_dir {str(path)!r} is not writable")
    return path


def _group() -> str:
    """This process's run: its process group and the group leader's start."""
    pgid = os.getpgrp() if hasattr(os, "getpgrp") else os.getpid()
    try:
        with open(f"/proc/{pgid}/stat", "rb") as stat:
            # the fields after the command's closing parenthesis: state is
            # field 3, starttime field 22
            started = stat.read().rpartition(b")")[2].split()[19].decode()
    except (OSError, IndexError):
        started = ""
    return f"{pgid}:{started}"


def _alive(pid: int) -> bool:
    if sys.platform == "win32":  # pragma: no cover - os.kill would end it
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's: alive
        return True
    return True


@dataclass(slots=True)
class _File:
    path: Path
    pid: int
    started: int
    group: str
    rows: list[Row]


_TOKENS: weakref.WeakKeyDictionary[Registry, tuple[int, int]] = weakref.WeakKeyDictionary()


def _token(registry: Registry) -> tuple[int, int]:
    """(pid, start): names the registry's file in this process, the same for
    every Pool of it (a second one must not count it twice)."""
    with _POOLS_LOCK:
        found = _TOKENS.get(registry)
        if found is None or found[0] != os.getpid():
            found = _TOKENS[registry] = (os.getpid(), time.time_ns())
        return found


_POOLS: weakref.WeakValueDictionary[tuple[int, str], Pool] = weakref.WeakValueDictionary()


def pool_of(registry: Registry, directory: Path) -> Pool:
    """The one Pool of this registry and directory in this process (another
    would write the same file again: the file's name is the registry's token)."""
    key = (id(registry), str(directory.resolve()))
    with _POOLS_LOCK:
        found = _POOLS.get(key)
        if found is None:
            found = _POOLS[key] = Pool(registry, directory)
        return found


class Reader:
    """What an exporter reads at each scrape: this process's rows, or with a
    directory, every process's merged."""

    def __init__(self, source: object, multiprocess_dir: object, *, recent: bool = True) -> None:
        self.registry = registry_of(source)
        directory = directory_of(source, multiprocess_dir)
        self.pool = pool_of(self.registry, directory) if directory is not None else None
        self.recent = recent

    def rows(self) -> list[Row]:
        if self.pool is not None:
            return self.pool.rows()
        return rows_of(self.registry, recent=self.recent)


class Pool:
    """One registry's share of a directory: writes this process's rows,
    merges everyone's. Ticked by the metrics ticker (which holds it weakly:
    whoever uses it keeps it)."""

    def __init__(self, registry: Registry, directory: Path) -> None:
        self.registry = registry
        self.directory = directory
        self._lock = threading.Lock()
        self._start()
        me = weakref.ref(self)
        atexit.register(_at_exit, me)
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=functools.partial(_after_fork, me))

    def _start(self) -> None:
        self._pid, self._started = _token(self.registry)
        self._group = _group()
        self._written = 0.0
        self.path = self.directory / f"{self._pid}-{self._started}.json"
        TICKER.add(self)

    def _check_pid(self) -> None:
        if os.getpid() != self._pid:  # forked: a process of its own
            self._start()

    def tick(self, now: float) -> None:
        if now - self._written >= EVERY:
            self.write()

    def write(self, rows: list[Row] | None = None) -> list[Row]:
        """Writes this process's rows (read now unless given); returns them."""
        self._check_pid()
        rows = rows_of(self.registry) if rows is None else rows
        data = {
            "format": _FORMAT,
            "pid": self._pid,
            "started": self._started,
            "group": self._group,
            "rows": [_dumped(row) for row in rows],
        }
        text = json.dumps(data, separators=(",", ":")).encode()
        with self._lock:
            temporary = self.directory / f".{self.path.name}.{threading.get_ident()}"
            try:
                temporary.write_bytes(text)
            except FileNotFoundError:  # the directory was removed under the run: made again
                self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
                temporary.write_bytes(text)
            os.replace(temporary, self.path)
            self._written = time.monotonic()
        return rows

    def rows(self) -> list[Row]:
        """Every process's rows of this run, merged by the module's rules."""
        mine = self.write()
        others = [f for f in self._read() if f.path != self.path]
        newest: dict[int, int] = {}
        for f in others:
            newest[f.pid] = max(newest.get(f.pid, 0), f.started)
        kept: list[tuple[list[Row], int | None]] = [(mine, self._pid)]
        for f in others:
            live = f.pid != self._pid and newest[f.pid] == f.started and _alive(f.pid)
            if f.group != self._group:
                if not live:
                    f.path.unlink(missing_ok=True)
                continue
            kept.append((f.rows, f.pid if live else None))
        return merge(kept)

    def _read(self) -> list[_File]:
        found = []
        for path in sorted(self.directory.glob("*.json")):
            try:
                data = json.loads(path.read_bytes())
                if not isinstance(data, dict):
                    raise ValueError(f"a {type(data).__name__}, not an object")
                if data.get("format") != _FORMAT:
                    raise ValueError(f"format {data.get('format')!r}")
                found.append(
                    _File(
                        path,
                        int(data["pid"]),
                        int(data["started"]),
                        str(data["group"]),
                        [_loaded(row) for row in data["rows"]],
                    )
                )
            except FileNotFoundError:  # deleted since the glob: a run that ended
                continue
            except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
                log.warning(
                    "statekeep.metrics: %s is left out: %r",
                    path,
                    exc,
                    extra={
                        "statekeep": {
                            "event": "metrics.file_left_out",
                            "path": str(path),
                            "error_type": type(exc).__name__,
                            "error": str(exc),
                        }
                    },
                )
        return found


def _at_exit(pool: weakref.ref[Pool]) -> None:
    found = pool()
    if found is not None and found._pid == os.getpid():
        with contextlib.suppress(OSError):  # the directory gone: nothing to keep
            found.write()


def _after_fork(pool: weakref.ref[Pool]) -> None:
    global _POOLS_LOCK
    _POOLS_LOCK = threading.RLock()  # another thread may have held it at the fork
    found = pool()
    if found is not None:
        found._lock = threading.Lock()
        found._start()


def merge(contributions: list[tuple[list[Row], int | None]]) -> list[Row]:
    """Rows of many processes as one set: (rows, pid if live else None)."""
    merged: dict[str, dict[Labels, Row]] = {}
    for rows, pid in contributions:
        for row in rows:
            if row.kind == GAUGE:
                if pid is None:
                    continue
                labels = tuple(sorted({**dict(row.labels), "pid": str(pid)}.items()))
            else:
                labels = row.labels
            family = merged.setdefault(row.name, {})
            into = family.get(labels)
            if into is None:
                into = family[labels] = Row(
                    row.name, row.kind, row.help, row.unit, labels, scale=row.scale
                )
                if row.kind == HISTOGRAM:
                    into.total, into.recent = Histogram(), Histogram()
            if into.kind != row.kind:
                continue  # the same name as another kind elsewhere: the first seen wins
            into.value += row.value
            if row.kind == HISTOGRAM and into.total is not None and into.recent is not None:
                if row.total is not None:
                    into.total.merge(row.total)
                if row.recent is not None and pid is not None:
                    into.recent.merge(row.recent)
    return [row for family in merged.values() for _, row in sorted(family.items())]


def _dumped(row: Row) -> list[Any]:
    return [
        row.name,
        row.kind,
        row.help,
        row.unit,
        [list(pair) for pair in row.labels],
        row.value,
        row.scale,
        _histogram_dumped(row.total),
        _histogram_dumped(row.recent),
    ]


def _loaded(item: list[Any]) -> Row:
    name, kind, help, unit, labels, value, scale, total, recent = item
    if kind not in (COUNTER, GAUGE, HISTOGRAM):
        raise ValueError(f"kind {kind!r}")
    return Row(
        str(name),
        kind,
        str(help),
        str(unit),
        tuple((str(k), str(v)) for k, v in labels),
        float(value),
        _histogram_loaded(total),
        _histogram_loaded(recent),
        float(scale),
    )


def _histogram_dumped(histogram: Histogram | None) -> list[Any] | None:
    if histogram is None:
        return None
    flat = [n for pair in sorted(histogram.buckets.items()) for n in pair]
    return [histogram.count, histogram.sum, histogram.min, histogram.max, flat]


def _histogram_loaded(item: list[Any] | None) -> Histogram | None:
    if item is None:
        return None
    count, total, low, high, flat = item
    histogram = Histogram()
    buckets: defaultdict[int, int] = defaultdict(int)
    for key, n in zip(flat[::2], flat[1::2], strict=True):
        buckets[int(key)] += int(n)
    histogram.buckets = buckets
    histogram.count, histogram.sum = int(count), int(total)
    histogram.min, histogram.max = int(low), int(high)
    return histogram
