"""pytest fixtures for an application's own tests: a fresh store for every test.

pytest loads this module in every run of every project that installs
statekeep (the `pytest11` entry point), so importing it defines things and
does nothing else: statekeep's modules are imported by the fixtures that
use them, psycopg only to drop a test's PostgreSQL schema.

Which database the stores are on comes from, first found:

    --statekeep-url URL          the command line
    STATEKEEP_TEST_URL           the environment
    statekeep_url = URL          the ini file ([pytest] / [tool.pytest.ini_options])
    memory://                    otherwise

That URL names the kind of store, not a store: each test gets its own.

    memory://, sqlite://:memory:    as given: every open is a new, empty store
    sqlite:///<dir>/<name>          <tmp_path>/statekeep/<name> (name: store.db if none)
    files:///<dir>/<name>           <tmp_path>/statekeep/<name> (name: store if none)
    postgresql://... (postgres://)  the same server and database, in a new schema
                                    <prefix>_<12 hex digits> (prefix: the URL's schema=,
                                    else statekeep_test), dropped (CASCADE) after the test

A query string is kept (`sqlite:///x.db?synchronous=full`, a server's
`?sslmode=require`). Anything else is a usage error naming where it came from.

statekeep_store flushes the write-behind queue before it closes the store, so
a write a test left enqueued is stored (and its events delivered to the
store's plain-function handlers) before the test's teardown ends. Handlers
that are coroutine functions run on an event loop, and no public call waits
for them: a test that needs their effects waits for those itself.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload
from urllib.parse import parse_qsl, quote, unquote, urlencode

import pytest

if TYPE_CHECKING:
    from .events import Event
    from .store import Store

__all__ = ["FLUSH_TIMEOUT", "RecordedEvents"]

OPTION = "--statekeep-url"
INI = "statekeep_url"
ENVIRONMENT = "STATEKEEP_TEST_URL"
DEFAULT = "memory://"
# How long statekeep_store's teardown waits for enqueued writes to be stored.
FLUSH_TIMEOUT = 30.0

_SERVERS = ("postgresql", "postgres")
_SCHEMES = ("memory", "sqlite", "files", *_SERVERS)
_PREFIX = "statekeep_test"
# a schema name is at most 63 characters: the prefix, "_" and 12 hex digits
_SCHEMA_PREFIX = re.compile(r"^[a-z_][a-z0-9_]{0,49}$")
# the PostgreSQL backend's own options in a URL; the rest go to libpq as they are
_STATEKEEP_OPTIONS = frozenset(
    {"schema", "timeout", "connect_timeout", "statement_timeout", "pool_min", "pool_max"}
)

EventT = TypeVar("EventT", bound="Event")


@dataclass(frozen=True)
class _Kind:
    """The kind of store the configured URL names, and where it was configured."""

    url: str
    source: str  # "--statekeep-url", "STATEKEEP_TEST_URL", "ini statekeep_url" or "default"
    scheme: str
    rest: str  # between :// and ?
    query: str  # after ?, as written

    @property
    def server(self) -> bool:
        return self.scheme in _SERVERS

    def fresh(self, request: pytest.FixtureRequest) -> tuple[str, str | None]:
        """A new store's URL for this test, and the schema to drop after it (or None)."""
        if self.scheme == "memory" or (
            self.scheme == "sqlite" and self.rest in (":memory:", "/:memory:")
        ):
            return self.url, None
        if self.server:
            kept = [p for p in self.query.split("&") if p and _key(p) != "schema"]
            schema = f"{self._schema_prefix()}_{uuid.uuid4().hex[:12]}"
            query = "&".join([*kept, f"schema={schema}"])
            return f"{self.scheme}://{self.rest}?{query}", schema
        tmp_path: Path = request.getfixturevalue("tmp_path")
        directory = tmp_path / "statekeep"
        directory.mkdir(exist_ok=True)
        name = unquote(self.rest.rstrip("/").rpartition("/")[2])
        path = directory / (name or ("store.db" if self.scheme == "sqlite" else "store"))
        url = f"{self.scheme}:///{quote(str(path.resolve()), safe='/')}"
        return (f"{url}?{self.query}" if self.query else url), None

    def _schema_prefix(self) -> str:
        for key, value in parse_qsl(self.query, keep_blank_values=True):
            if key == "schema":
                return value
        return _PREFIX


def _key(part: str) -> str:
    return unquote(part.partition("=")[0])


def _usage(kind: _Kind, problem: str) -> pytest.UsageError:
    where = f"{kind.source} (statekeep's test store URL)"
    return pytest.UsageError(f"{where}: {problem} (statekeep's docs: testing.md)")


def _configured(config: pytest.Config) -> tuple[str, str]:
    given = config.getoption("statekeep_url")
    if given is not None:
        return given, OPTION
    environment = os.environ.get(ENVIRONMENT)
    if environment:
        return environment, ENVIRONMENT
    ini = config.getini(INI)
    if ini:
        return str(ini), f"ini {INI}"
    return DEFAULT, "default"


def _parse(url: str, source: str) -> _Kind:
    scheme, separator, after = url.strip().partition("://")
    rest, _, query = after.partition("?")
    kind = _Kind(url.strip(), source, scheme, rest, query)
    if not separator or scheme not in _SCHEMES:
        raise _usage(
            kind,
            f"{url!r} is not a statekeep URL; it starts with one of "
            + ", ".join(f"{s}://" for s in _SCHEMES),
        )
    if scheme == "memory" and rest:
        raise _usage(kind, f"memory:// takes no path, not {url!r}")
    if kind.server:
        prefix = kind._schema_prefix()
        if not _SCHEMA_PREFIX.match(prefix) or prefix.startswith("pg_"):
            raise _usage(
                kind,
                f"schema={prefix!r} is the prefix of each test's schema: lower-case letters, "
                "digits and _, at most 50, not starting with pg_",
            )
        if importlib.util.find_spec("psycopg") is None:
            raise _usage(kind, f"{scheme}:// needs psycopg: pip install 'statekeep[postgresql]'")
    return kind


_KIND = pytest.StashKey[_Kind]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("statekeep", "statekeep: the store of the statekeep_* fixtures")
    group.addoption(
        OPTION,
        dest="statekeep_url",
        default=None,
        metavar="URL",
        help=(
            "the kind of store statekeep_url / statekeep_store give each test: memory:// "
            "(default), sqlite:///store.db or files:///store (a new one under each test's "
            "tmp_path), postgresql://user@host/db (a new schema each test, dropped after "
            f"it). Overrides ${ENVIRONMENT} and the ini key {INI}."
        ),
    )
    parser.addini(
        INI,
        help=f"the store URL of the statekeep_* fixtures ({OPTION} and {ENVIRONMENT} override it)",
        default="",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_KIND] = _parse(*_configured(config))


def pytest_report_header(config: pytest.Config) -> str | None:
    kind = config.stash.get(_KIND, None)
    if kind is None or kind.source == "default":
        return None
    from .backends import redacted

    return f"statekeep_url: {redacted(kind.url)} (from {kind.source})"


@pytest.fixture
def statekeep_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The URL of a new, empty store for this test (see the module's docstring)."""
    kind = request.config.stash[_KIND]
    url, schema = kind.fresh(request)
    yield url
    if schema is not None:
        _drop_schema(kind, schema)


def _drop_schema(kind: _Kind, schema: str) -> None:
    from statekeep.backends import drop_postgres_schema

    libpq = {
        key: value
        for key, value in parse_qsl(kind.query, keep_blank_values=True)
        if key not in _STATEKEEP_OPTIONS
    }
    server = f"{kind.scheme}://{kind.rest}" + (
        f"?{urlencode(libpq, quote_via=quote)}" if libpq else ""
    )
    drop_postgres_schema(server, schema)


@pytest.fixture
def statekeep_store_options() -> dict[str, Any]:
    """Keyword arguments of statekeep.open() for statekeep_store: override this
    fixture to open it with outbox=True, writebehind={...}, metrics=False..."""
    return {}


@pytest.fixture
def statekeep_store(
    request: pytest.FixtureRequest, statekeep_url: str, statekeep_store_options: dict[str, Any]
) -> Iterator[Store]:
    """A store opened on statekeep_url; after the test, what it enqueued is
    stored (the teardown fails if that takes over FLUSH_TIMEOUT seconds), then
    it is closed (unless the test closed it)."""
    from .store import open

    options = dict(statekeep_store_options)
    if statekeep_url.partition("://")[0] in _SERVERS:
        # the write-behind journal of a server database lives in the user's state
        # folder, one per schema: each test's goes to its tmp_path instead
        tmp_path: Path = request.getfixturevalue("tmp_path")
        options["writebehind"] = _journal_in(options.get("writebehind"), tmp_path / "journal")
    store = open(statekeep_url, **options)
    yield store
    if store.closed:
        return
    try:
        stored = store.flush(FLUSH_TIMEOUT)
    finally:
        store.close()
    if not stored:
        pytest.fail(
            f"statekeep_store: what the test enqueued was not all stored within "
            f"{FLUSH_TIMEOUT} s (statekeep.pytest_plugin.FLUSH_TIMEOUT)",
            pytrace=False,
        )


def _journal_in(writebehind: Any, folder: Path) -> Any:
    """The write-behind options with the journal in folder, unless they name one."""
    from .writebehind import WriteBehindOptions

    if writebehind is None:
        return {"journal": str(folder)}
    if isinstance(writebehind, dict) and "journal" not in writebehind:
        return {**writebehind, "journal": str(folder)}
    if isinstance(writebehind, WriteBehindOptions) and writebehind.journal == "auto":
        return dataclasses.replace(writebehind, journal=str(folder))
    return writebehind


@pytest.fixture
def statekeep_events(statekeep_store: Store) -> RecordedEvents:
    """Every event statekeep_store delivers from now on, in the order delivered."""
    from .events import Event

    events = RecordedEvents()
    statekeep_store.on(Event, events._record)
    return events


class RecordedEvents(Sequence["Event"]):
    """The events a store delivered, for assertions: a sequence (`len`, `[i]`,
    `in`, iteration), `.of(target)` for those a `store.on(target, ...)` would
    get, `.names`, `.clear()`, and `.wait(n)` for events delivered on another
    thread (the write-behind queue's)."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._changed = threading.Condition()

    def _record(self, event: Event) -> None:
        with self._changed:
            self._events.append(event)
            self._changed.notify_all()

    def _snapshot(self) -> list[Event]:
        with self._changed:
            return list(self._events)

    @overload
    def __getitem__(self, index: int) -> Event: ...
    @overload
    def __getitem__(self, index: slice) -> list[Event]: ...

    def __getitem__(self, index: int | slice) -> Event | list[Event]:
        return self._snapshot()[index]

    def __len__(self) -> int:
        with self._changed:
            return len(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self._snapshot())

    def __repr__(self) -> str:
        return f"<RecordedEvents {self.names}>"

    @property
    def names(self) -> list[str]:
        """`["todo.created", "todo.updated", ...]`."""
        return [event.name for event in self._snapshot()]

    @overload
    def of(self, target: type[EventT]) -> list[EventT]: ...
    @overload
    def of(self, target: Any) -> list[Any]: ...

    def of(self, target: Any) -> list[Any]:
        """The events a `store.on(target, ...)` handler would have got: target
        is an event class (`Todo.Created`, `statekeep.Updated`, a domain event
        class), an entity class, or a pattern (`"todo.*"`)."""
        from .events import matcher_for

        matches, _ = matcher_for(target)
        return [event for event in self._snapshot() if matches(event.collection, event.kind)]

    def clear(self) -> None:
        with self._changed:
            self._events.clear()

    def wait(self, count: int = 1, *, of: Any = None, timeout: float = 5.0) -> bool:
        """Waits until at least count events (of those `of` matches, if given)
        are recorded; False if timeout seconds pass first."""
        if of is None:

            def enough() -> bool:
                return len(self._events) >= count
        else:
            from .events import matcher_for

            matches, _ = matcher_for(of)

            def enough() -> bool:
                found = sum(1 for e in self._events if matches(e.collection, e.kind))
                return found >= count

        with self._changed:
            return self._changed.wait_for(enough, timeout)
