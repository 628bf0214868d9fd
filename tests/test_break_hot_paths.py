"""Hostile tests of the hot-path changes (e607076, 442eea5, 98ca19e, 5bd59ee):
SQLite save() through put_alone, batch insert shapes, @counted wrappers
written with exec, Store.get's inlined checks and pydantic-core loads, the
PostgreSQL hot connection, and lazy lifecycle events."""

from __future__ import annotations

import asyncio
import inspect
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, cast

import pytest
from pydantic import ConfigDict, Field, computed_field

import _postgres
import statekeep
import statekeep.aio
from statekeep.backends import open_backend
from statekeep.backends.sqlite import SQLiteBackend
from statekeep.errors import (
    ConflictError,
    NotFoundError,
    QueryError,
    StoreClosedError,
)

SRC = str(Path(__file__).resolve().parents[1] / "src")


class Note(statekeep.Entity, collection="brk_notes"):
    title: str = ""


class Tagged(statekeep.Entity, collection="brk_tagged"):
    field: Annotated[str, statekeep.Indexed()] = "f"
    cls: Annotated[str, statekeep.Indexed()] = "c"


class Aliased(statekeep.Entity, collection="brk_aliased"):
    name: str = Field("", alias="n")


class Forbidding(statekeep.Entity, collection="brk_forbidding"):
    model_config = ConfigDict(extra="forbid")
    n: int = 1

    @computed_field  # type: ignore[prop-decorator]
    @property
    def double(self) -> int:
        return self.n * 2


class Big(statekeep.Entity, collection="brk_big"):
    n: Annotated[int, statekeep.Indexed()] = 0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[statekeep.Store]:
    opened = statekeep.open(f"sqlite:///{tmp_path / 'brk.db'}?timeout=5")
    yield opened
    opened.close()


def _run(code: str, tmp_path: Path, timeout: float = 40) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# -- 3. @counted wrappers written with exec -----------------------------------


def test_count_by_equality_keyword_named_like_a_positional_only_parameter(
    store: statekeep.Store,
) -> None:
    """count_by(cls, field, /, *conditions, **equals): `field`/`cls` are
    positional-only, so an indexed field called `field` or `cls` is an
    equality keyword (as it was before e607076). The exec'd wrapper makes them
    positional-or-keyword: TypeError 'got multiple values for argument'."""
    store.save(Tagged())
    assert store.count_by(Tagged, "cls", field="f") == {"c": 1}
    assert store.count_by(Tagged, "field", cls="c") == {"f": 1}


@pytest.mark.parametrize("name", ["count_by", "send", "transition_many", "get", "save", "find"])
def test_wrapper_keeps_the_methods_parameter_kinds(name: str) -> None:
    """The wrapper accepts exactly what the method accepts (positional-only
    stays positional-only), and introspection sees the method's signature."""
    wrapper = getattr(statekeep.Store, name)
    method = wrapper.__wrapped__
    assert inspect.signature(wrapper) == inspect.signature(method)
    kinds = [p.kind for p in inspect.signature(method).parameters.values()][1:]
    # what the wrapper's own code accepts (not what __wrapped__ advertises)
    code = wrapper.__code__
    posonly = code.co_posonlyargcount - 1  # self is positional-only in the wrapper: harmless
    assert posonly == kinds.count(inspect.Parameter.POSITIONAL_ONLY)


def test_wrapper_argument_errors_are_sane(store: statekeep.Store) -> None:
    with pytest.raises(TypeError, match="missing 2 required positional arguments"):
        store.get()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="takes 3 positional arguments but 4 were given"):
        store.get(Note, "x", 3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        store.save(Note(), bogus=1)  # type: ignore[call-arg]
    assert store.save(entity=Note()).version == 1  # keywords still pass
    assert store.get(cls=Note, id=store.save(Note(title="k")).id).title == "k"
    assert statekeep.Store.get.__name__ == "get" and statekeep.Store.get.__doc__


# -- 4. Store.get inlined checks -------------------------------------------------


def test_get_hostile_arguments(store: statekeep.Store) -> None:
    stored = store.save(Note(title="x"))
    for bad in (5, b"x", "", "a\x00b", "\ud800", None):
        with pytest.raises(QueryError):
            store.get(Note, bad)  # type: ignore[arg-type]
    with pytest.raises(statekeep.errors.ConfigurationError):
        store.get(stored, stored.id)  # type: ignore[arg-type]  # an instance, not the class
    with pytest.raises(statekeep.errors.ConfigurationError):
        store.get(dict, stored.id)  # type: ignore[type-var]
    with pytest.raises(NotFoundError):
        store.get(Note, "x" * 1_000_000)
    assert store.get(Note, stored.id) == stored
    store.close()
    with pytest.raises(StoreClosedError):
        store.get(Note, stored.id)
    with pytest.raises(StoreClosedError):
        store.get(5, 5)  # type: ignore[arg-type]


def test_get_forbid_extra_with_computed_field_and_model_rebuild(store: statekeep.Store) -> None:
    saved = store.save(Forbidding(n=3))
    assert store.get(Forbidding, saved.id).double == 6
    Forbidding.model_rebuild(force=True)
    assert store.get(Forbidding, saved.id).n == 3


# -- 6. lazy lifecycle events -------------------------------------------------------


def test_event_entity_of_an_aliased_model(store: statekeep.Store) -> None:
    """store.get loads an aliased model (by_name); event.entity of its save
    must too. It parses the body with plain model_validate_json: the body
    holds field names, the model wants aliases -> ValidationError
    'Extra inputs are not permitted' from event.entity (before 442eea5 the
    save itself failed)."""
    got: list[statekeep.Created] = []
    store.on(Aliased.Created, got.append)
    saved = store.save(Aliased(n="x"))
    assert store.get(Aliased, saved.id).name == "x"
    assert got[0].entity.name == "x"


def test_event_entity_of_forbidding_model_with_computed_field(store: statekeep.Store) -> None:
    got: list[statekeep.Created] = []
    store.on(Forbidding.Created, got.append)
    store.save(Forbidding(n=4))
    assert got[0].entity.double == 8


def test_event_entity_is_the_stored_snapshot_across_threads_and_pickle(
    store: statekeep.Store,
) -> None:
    got: list[statekeep.Created | statekeep.Updated] = []

    def mutate(event: statekeep.Created | statekeep.Updated) -> None:
        got.append(event)

    store.on(Note.Created, mutate)
    store.on(Note.Updated, mutate)
    note = store.save(Note(title="one"))
    note.title = "changed after save"  # must not leak into the event
    seen: list[Note] = []
    threads = [threading.Thread(target=lambda: seen.append(got[0].entity)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {id(e) for e in seen} == {id(seen[0])}  # one entity, whichever thread made it
    assert seen[0].title == "one" and seen[0].version == 1
    again = pickle.loads(pickle.dumps(got[0]))
    assert again == got[0] and again.entity.title == "one"
    assert got[0].model_dump()["entity"]["title"] == "one"


def test_outbox_entries_and_events_of_put_alone_saves(tmp_path: Path) -> None:
    with statekeep.open(f"sqlite:///{tmp_path / 'o.db'}", outbox=True) as store:
        got: list[statekeep.Created] = []
        store.on(Note.Created, got.append)
        store.save(Note(title="a"))
        with store.transaction():
            store.save(Note(title="b"))
        assert [e.entity.title for e in got] == ["a", "b"]
        seen: list[str] = []
        done = threading.Event()

        def handler(event: statekeep.Event) -> None:
            carrying = cast(statekeep.Created, event)
            seen.append(
                carrying.entity["title"]
                if isinstance(carrying.entity, dict)
                else carrying.entity.title
            )
            if len(seen) == 2:
                done.set()

        sub = store.subscribe("brk", handler)
        assert done.wait(10), seen
        sub.stop()
        assert seen == ["a", "b"]


# -- 1. save() outside a block: put_alone ---------------------------------------


def test_conflicts_put_back_version_and_recorded_events(store: statekeep.Store) -> None:
    first = store.save(Note(title="a"))
    stale = store.get(Note, first.id)
    first.title = "b"
    store.save(first)
    with pytest.raises(ConflictError):
        store.save(stale)
    assert stale.version == 1
    twin = Note(id=first.id)
    with pytest.raises(ConflictError):
        store.save(twin)
    assert twin.version == 0
    assert store.get(Note, first.id).title == "b"


def test_indexed_int_beyond_64_bits_on_update_leaves_row_and_version(
    store: statekeep.Store,
) -> None:
    big = store.save(Big(n=1))
    big.n = 2**64
    with pytest.raises(statekeep.errors.ValidationError):
        store.save(big)
    assert big.version == 1
    assert store.get(Big, big.id).n == 1


def test_save_waits_for_another_process_holding_the_write_lock(
    store: statekeep.Store, tmp_path: Path
) -> None:
    store.save(Note())  # table ready, put_alone armed
    raw = sqlite3.connect(tmp_path / "brk.db", isolation_level=None, check_same_thread=False)
    raw.execute("BEGIN IMMEDIATE")
    threading.Timer(0.3, lambda: raw.execute("COMMIT")).start()
    start = time.monotonic()
    saved = store.save(Note(title="after lock"))
    assert time.monotonic() - start >= 0.25
    assert store.get(Note, saved.id).title == "after lock"
    raw.close()


def test_many_threads_same_and_new_entities_read_their_own_writes(store: statekeep.Store) -> None:
    shared = store.save(Note(title="shared"))
    errors: list[str] = []
    wins: list[int] = []

    def work(i: int) -> None:
        try:
            for j in range(20):
                mine = store.save(Note(title=f"{i}-{j}"))
                if store.get(Note, mine.id).title != mine.title:
                    errors.append("own write not read")
                copy = store.get(Note, shared.id)
                copy.title = f"{i}-{j}"
                try:
                    store.save(copy)
                    wins.append(copy.version)
                except ConflictError:
                    pass
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(wins)) == len(wins)  # no version stored twice
    assert store.get(Note, shared.id).version == 1 + len(wins)


def test_short_lived_threads_do_not_get_their_connections_closed(tmp_path: Path) -> None:
    """Rounds of short-lived threads each doing get+save: _connect prunes the
    connections of threads not in a snapshot of threading.enumerate() taken
    *before* the registry lock, so a thread that started and registered in
    between gets its live connection closed: BackendError 'Cannot operate on
    a closed database' / 'bad parameter or other API misuse', and often a
    segfault (put_alone's second per-thread connection makes it likelier).
    Runs in a child process because it can crash the interpreter."""
    result = _run(
        """
        import sys, threading, statekeep
        from statekeep.errors import ConflictError
        class Todo(statekeep.Entity, collection="todos"):
            title: str = ""
        s = statekeep.open(f"sqlite:///{sys.argv[1]}/threads.db")
        c = s.save(Todo(title="c"))
        errs = []
        def w(i):
            try:
                x = s.get(Todo, c.id); x.title = str(i); s.save(x)
            except ConflictError:
                pass
            except Exception as e:
                errs.append(repr(e)[:100])
        for r in range(60):
            ths = [threading.Thread(target=w, args=(i,)) for i in range(30)]
            [h.start() for h in ths]; [h.join() for h in ths]
        print("ERRORS", len(errs), errs[:3])
        s.close()
        """,
        tmp_path,
    )
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr[-2000:])
    assert "ERRORS 0 " in result.stdout, result.stdout


def test_close_racing_saves(tmp_path: Path) -> None:
    store = statekeep.open(f"sqlite:///{tmp_path / 'race.db'}")
    store.save(Note())
    errors: list[str] = []
    saved: list[str] = []
    go = threading.Event()

    def work() -> None:
        go.wait()
        for _ in range(200):
            try:
                saved.append(store.save(Note(title="r")).id)
            except StoreClosedError:
                return
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))
                return

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    go.set()
    time.sleep(0.02)
    store.close()
    for t in threads:
        t.join()
    assert errors == []
    with statekeep.open(f"sqlite:///{tmp_path / 'race.db'}") as again:
        assert again.count(Note) == len(saved) + 1


def test_fork_then_save_in_child(store: statekeep.Store, tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork")
    store.save(Note(title="parent"))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            child = store.save(Note(title="child"))
            code = 0 if store.get(Note, child.id).title == "child" else 2
        except BaseException:  # noqa: BLE001
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.save(Note(title="parent again")).version == 1
    assert store.count(Note) == 3


def test_sigkill_mid_saves_leaves_database_readable(tmp_path: Path) -> None:
    db = tmp_path / "kill.db"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import statekeep
                class Note(statekeep.Entity, collection="brk_notes"):
                    title: str = ""
                s = statekeep.open("sqlite:///{db}")
                print("ready", flush=True)
                while True:
                    n = s.save(Note(title="x")); n.title = "y"; s.save(n)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert child.stdout is not None and child.stdout.readline().strip() == b"ready"
    time.sleep(0.3)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    with statekeep.open(f"sqlite:///{db}") as store:
        notes = list(store.find(Note))
        assert notes and all(n.version in (1, 2) for n in notes)
        assert store.save(Note()).version == 1


def test_async_save_while_another_task_holds_a_block(tmp_path: Path) -> None:
    async def main() -> None:
        store = await statekeep.aio.open(f"sqlite:///{tmp_path / 'aio.db'}")
        try:
            await store.save(Note(title="warm"))
            entered = asyncio.Event()
            release = asyncio.Event()

            async def holder() -> None:
                async with store.transaction():
                    await store.save(Note(title="in block"))
                    entered.set()
                    await release.wait()
                    raise RuntimeError("roll back")

            task = asyncio.create_task(holder())
            await entered.wait()
            outside = asyncio.create_task(store.save(Note(title="outside")))
            await asyncio.sleep(0.1)
            release.set()
            with pytest.raises(RuntimeError):
                await task
            saved = await asyncio.wait_for(outside, 10)
            assert (await store.get(Note, saved.id)).title == "outside"
            titles = sorted(
                n.title for n in await asyncio.to_thread(lambda: list(store.sync.find(Note)))
            )
            assert titles == ["outside", "warm"]
        finally:
            await store.close()

    asyncio.run(main())


# -- 2. batch insert shapes ---------------------------------------------------------


@pytest.mark.parametrize("shape", ["ascending", "descending", "mixed"])
@pytest.mark.parametrize("where", [0, 2, 4])
def test_save_many_conflict_anywhere_in_a_caught_nested_batch(
    store: statekeep.Store, shape: str, where: int
) -> None:
    kept = store.save(Note(title="kept"))
    fresh = [Note(title=str(i)) for i in range(5)]
    if shape == "descending":
        fresh.reverse()
    elif shape == "mixed":
        fresh = fresh[1::2] + fresh[::2]
    fresh[where] = Note(id=kept.id, title="dup")
    with store.transaction():
        before = store.save(Note(title="before"))
        with pytest.raises(ConflictError):
            store.save_many(fresh)
        after = store.save(Note(title="after"))
    titles = sorted(n.title for n in store.find(Note))
    assert titles == ["after", "before", "kept"]
    assert before.version == after.version == 1
    assert all(n.version == 0 for n in fresh if n.title != "dup")


def test_save_many_duplicate_inside_batch_and_rowid_reuse(
    store: statekeep.Store, tmp_path: Path
) -> None:
    store.save_many([Note(title="a"), Note(title="b")])
    store.delete(
        next(n for n in store.find(Note) if n.title == "b")
    )  # greatest rowid gone: the next rows reuse it
    one = Note(title="1")
    with pytest.raises(ConflictError):
        store.save_many([one, Note(title="2"), Note(id=one.id, title="again")])
    assert [n.title for n in store.find(Note)] == ["a"]
    store.save_many([Note(title="3"), Note(title="4")])
    assert sorted(n.title for n in store.find(Note)) == ["3", "4", "a"]


def test_batch_all_or_nothing_near_the_last_rowid(tmp_path: Path) -> None:
    """A table whose greatest rowid is just below SQLite's last (another tool
    wrote it): the batch's first row takes the last rowid, the next ones get
    random rowids (usually below `before`), which delete_above does not
    delete: a conflict at the end of the batch leaves its other rows."""
    backend = open_backend(f"sqlite:///{tmp_path / 'edge.db'}", {})
    assert isinstance(backend, SQLiteBackend)
    spec = Note.__statekeep__.spec
    backend.ensure_collection(spec)
    raw = sqlite3.connect(tmp_path / "edge.db", isolation_level=None)
    raw.execute(
        f'INSERT INTO "{spec.name}" (rowid, id, version, body) VALUES (?, ?, 1, ?)',
        (2**63 - 2, "zz-existing", '{"id":"zz-existing","version":1,"title":"t"}'),
    )
    raw.close()
    ids = [f"zz-new-{i}" for i in range(5)] + ["zz-existing"]
    rows = [(i, 1, f'{{"id":"{i}","version":1,"title":""}}') for i in ids]
    backend.begin()
    try:
        with pytest.raises(ConflictError):
            backend.put(spec, rows)
        left = backend.get_many(spec.name, ids[:-1])
    finally:
        backend.rollback()
        backend.close()
    assert left == {}


def test_batch_conflict_in_table_made_by_another_tool(tmp_path: Path) -> None:
    """Rows written by raw SQL (explicit small and large rowids) before
    statekeep's batch; the batch's conflict must leave them untouched."""
    db = tmp_path / "tool.db"
    with statekeep.open(f"sqlite:///{db}") as store:
        store.save(Note(title="first"))
    raw = sqlite3.connect(db, isolation_level=None)
    raw.execute(
        'INSERT INTO "brk_notes" (rowid, id, version, body) VALUES (1000, ?, 1, ?)',
        ("~tool", '{"id":"~tool","version":1,"title":"tool"}'),
    )
    raw.close()
    with statekeep.open(f"sqlite:///{db}") as store:
        with pytest.raises(ConflictError):
            store.save_many([Note(title="n1"), Note(id="~tool", title="dup")])
        assert sorted(n.title for n in store.find(Note)) == ["first", "tool"]


def test_concurrent_processes_save_many(tmp_path: Path) -> None:
    code = """
        import sys, statekeep
        class Note(statekeep.Entity, collection="brk_notes"):
            title: str = ""
        s = statekeep.open(f"sqlite:///{sys.argv[1]}/multi.db?timeout=20")
        for i in range(20):
            s.save_many([Note(title="m") for _ in range(50)])
            s.save(Note(title="s"))
        s.close()
    """
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": SRC}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(tmp_path)], env=env, stderr=subprocess.PIPE
        )
        for _ in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=50)
        assert proc.returncode == 0, err.decode()[-2000:]
    with statekeep.open(f"sqlite:///{tmp_path / 'multi.db'}") as store:
        assert store.count(Note) == 3 * 20 * 51


# -- 5. PostgreSQL hot connection ---------------------------------------------------


@pytest.fixture
def pg_store() -> Iterator[tuple[statekeep.Store, str]]:
    server = _postgres.server_url()
    schema = _postgres.fresh_schema()
    store = statekeep.open(_postgres.with_query(server, schema=schema, pool_max="1"))
    yield store, server
    store.close()
    _postgres.drop_schema(server, schema)


def _terminate_others(server: str) -> None:
    import psycopg

    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def test_postgres_get_after_backends_are_killed(pg_store: tuple[statekeep.Store, str]) -> None:
    store, server = pg_store
    saved = store.save(Note(title="pg"))
    assert store.get(Note, saved.id).title == "pg"
    _terminate_others(server)
    assert store.get(Note, saved.id).title == "pg"
    _terminate_others(server)
    assert store.save(Note(title="again")).version == 1
    errors: list[str] = []

    def work() -> None:
        for _ in range(30):
            try:
                store.get(Note, saved.id)
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    _terminate_others(server)
    for t in threads:
        t.join()
    assert errors == []
    with store.transaction():
        inside = store.get(Note, saved.id)
        inside.title = "tx"
        store.save(inside)
        assert store.get(Note, saved.id).title == "tx"
    assert store.get(Note, saved.id).title == "tx"


class Pinged(statekeep.Event):
    what: str = ""


@pytest.mark.parametrize("url", ["sqlite-file", "memory://"])
def test_recorded_events_stay_on_an_entity_whose_save_failed_with_nobody_listening(
    tmp_path: Path, url: str
) -> None:
    """With no handler and no outbox, a failed save keeps the events its entity
    recorded: they go with the save that succeeds, once something listens."""
    if url == "sqlite-file":
        url = f"sqlite:///{tmp_path / 'recorded.db'}"
    with statekeep.open(url) as store:
        store.save(Note(id="n", title="stored"))
        stale = Note(id="n", title="stale")  # version 0: conflicts
        stale.record(Pinged(what="once"))
        with pytest.raises(ConflictError):
            store.save(stale)
        seen: list[Pinged] = []
        store.on(Pinged, seen.append)
        stale.version = 1
        store.save(stale)
        assert [event.what for event in seen] == ["once"]
