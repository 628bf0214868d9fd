"""statekeep's pytest plugin (statekeep.pytest_plugin) as a user's suite meets it.

A sample project (tests/pytest_plugin/: a Todo entity with an indexed title,
tests that save, find, assert events and leave a write pending) is copied
into a pytester directory and run by pytest in a subprocess (no state of
this process leaks into it, nor of it into this one) on memory, SQLite,
files and PostgreSQL. Its tests write their store's URL to urls.txt, so that
the tests here can check where each one ran and what is left afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

import pytest

import _postgres
import statekeep
from statekeep import Entity, Indexed
from statekeep.pytest_plugin import ENVIRONMENT, RecordedEvents

pytest_plugins = ["pytester"]

SAMPLE = Path(__file__).with_name("pytest_plugin")
SAMPLE_TESTS = 7  # in sample_todos.py and sample_pending.py
NOTED = 6  # those of sample_todos.py note their URL


@pytest.fixture(autouse=True)
def no_configured_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sample runs on what each test here says, whatever this run's environment has."""
    monkeypatch.delenv(ENVIRONMENT, raising=False)


def sample_project(pytester: pytest.Pytester, ini: str = "") -> None:
    pytester.makepyfile(
        todo_app=(SAMPLE / "todo_app.py").read_text(),
        test_todos=(SAMPLE / "sample_todos.py").read_text(),
        test_pending=(SAMPLE / "sample_pending.py").read_text(),
    )
    pytester.makeini(f"[pytest]\nfilterwarnings = error\n{ini}")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider", *args)


def run_here(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """A run in this process (seconds faster), for runs that open no store."""
    return pytester.runpytest_inprocess("-p", "no:randomly", "-p", "no:cacheprovider", *args)


NOTE_URL = """
from pathlib import Path

def test_note_the_url(statekeep_url):
    Path("urls.txt").write_text(statekeep_url)
"""


def urls(pytester: pytest.Pytester) -> list[str]:
    return (pytester.path / "urls.txt").read_text().split()


def passes(result: pytest.RunResult, count: int = SAMPLE_TESTS) -> None:
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=count)


# -- the sample suite, on each kind of store -----------------------------------


def test_the_sample_suite_passes_on_memory_by_default(pytester: pytest.Pytester) -> None:
    sample_project(pytester)
    result = run(pytester)
    passes(result)
    assert urls(pytester) == ["memory://"] * NOTED
    assert "statekeep_url" not in result.stdout.str()  # the default is not worth a header line


def test_the_sample_suite_passes_on_sqlite_a_file_per_test(pytester: pytest.Pytester) -> None:
    sample_project(pytester)
    result = run(pytester, "--statekeep-url", "sqlite:///anywhere/app.db?synchronous=normal")
    passes(result)
    found = urls(pytester)
    assert len(set(found)) == len(found) == NOTED
    for url in found:
        path, _, query = url.removeprefix("sqlite:///").partition("?")
        assert Path(path).name == "app.db" and Path(path).parent.name == "statekeep"
        assert Path(path).is_relative_to(pytester.path)  # under the test's tmp_path
        assert Path(path).is_file()
        assert query == "synchronous=normal"
    result.stdout.fnmatch_lines(
        ["statekeep_url: sqlite:///anywhere/app.db* (from --statekeep-url)"]
    )


def test_the_sample_suite_passes_on_files_a_folder_per_test(pytester: pytest.Pytester) -> None:
    sample_project(pytester)
    passes(run(pytester, "--statekeep-url", "files:///data"))
    found = urls(pytester)
    assert len(set(found)) == len(found) == NOTED
    for url in found:
        path = Path(url.removeprefix("files:///"))
        assert path.name == "data" and path.is_dir() and path.is_relative_to(pytester.path)


def test_the_sample_suite_passes_on_postgresql_a_schema_per_test_dropped_after_it(
    pytester: pytest.Pytester,
) -> None:
    server = _postgres.server_url()  # skips, or fails under CI, without a server
    sample_project(pytester)
    given = server + ("&" if "?" in server else "?") + _postgres.FAST_COMMITS
    passes(run(pytester, "--statekeep-url", given))
    schemas = []
    for url in urls(pytester):
        base, _, query = url.partition("?")
        options = dict(parse_qsl(query))
        assert (
            base == server.partition("?")[0] and options["options"] == "-c synchronous_commit=off"
        )
        schemas.append(options["schema"])
    assert len(set(schemas)) == len(schemas) == NOTED
    assert all(schema.startswith("statekeep_test_") for schema in schemas)
    assert left_schemas(server, schemas) == []
    state = Path(os.environ.get("STATEKEEP_STATE_DIR", pytester.path))  # where journals go
    assert not [p for p in state.glob("postgresql-*") if any(s in p.name for s in schemas)]


def left_schemas(server: str, schemas: list[str]) -> list[str]:
    import psycopg

    with psycopg.connect(server, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (schemas,)
        ).fetchall()
    return [row[0] for row in rows]


def test_a_failing_test_still_gets_its_store_closed_and_its_schema_dropped(
    pytester: pytest.Pytester,
) -> None:
    """And a schema= in the URL is the prefix of each test's schema; other options stay."""
    pytester.makepyfile(
        test_fails="""
        from pathlib import Path

        def test_fails(statekeep_store, statekeep_url):
            Path("url.txt").write_text(statekeep_url)
            assert False, "on purpose"
        """
    )
    server = _postgres.server_url()
    given = server + ("&" if "?" in server else "?") + "schema=myapp&timeout=10"
    run(pytester, "--statekeep-url", given).assert_outcomes(failed=1)
    options = dict(parse_qsl(urlsplit((pytester.path / "url.txt").read_text()).query))
    assert options["timeout"] == "10" and options["schema"].startswith("myapp_")
    assert left_schemas(server, [options["schema"]]) == []


def test_a_write_not_stored_in_time_fails_the_teardown(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_slow="""
        import pytest
        import statekeep, statekeep.pytest_plugin
        from statekeep import Entity

        class Note(Entity):
            text: str

        @pytest.fixture
        def statekeep_store_options():
            return {"writebehind": {"window": 60.0}}

        def test_enqueues(monkeypatch, statekeep_store):  # undone after the store's teardown
            monkeypatch.setattr(statekeep.pytest_plugin, "FLUSH_TIMEOUT", 0.0)
            statekeep_store.enqueue(Note(text="waits a minute for company"))
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*statekeep_store: what the test enqueued was not all stored within 0.0 s*"]
    )


# -- docs/testing.md: its code blocks are a test module of a user's suite ----------

DOCS = Path(__file__).resolve().parents[1] / "docs" / "testing.md"
DOCS_TESTS = 7


@pytest.mark.parametrize("url", ["memory://", "sqlite:///test.db"])
def test_the_examples_of_the_docs_pass_as_a_test_module(
    pytester: pytest.Pytester, url: str
) -> None:
    code = "\n".join(re.findall(r"^```python\n(.*?)^```", DOCS.read_text(), re.M | re.S))
    pytester.makepyfile(test_docs_example=code)
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    result = run(pytester, "--statekeep-url", url, "-rs")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    shared = url.startswith("sqlite:///")  # the second store's test skips on memory
    result.assert_outcomes(passed=DOCS_TESTS - (not shared), skipped=int(not shared))


# -- where the URL comes from ------------------------------------------------------


@pytest.mark.parametrize(
    ("ini", "environment", "option", "expected", "source"),
    [
        (None, None, None, "memory", None),
        ("sqlite:///a.db", None, None, "sqlite", "ini statekeep_url"),
        ("sqlite:///a.db", "files:///f", None, "files", "STATEKEEP_TEST_URL"),
        ("sqlite:///a.db", "files:///f", "sqlite://:memory:", "sqlite", "--statekeep-url"),
        (None, "sqlite:///b.db", "memory://", "memory", "--statekeep-url"),
    ],
)
def test_the_command_line_comes_before_the_environment_before_the_ini_file(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    ini: str | None,
    environment: str | None,
    option: str | None,
    expected: str,
    source: str | None,
) -> None:
    pytester.makepyfile(test_url=NOTE_URL)
    pytester.makeini(f"[pytest]\nstatekeep_url = {ini}\n" if ini else "[pytest]\n")
    if environment is not None:
        monkeypatch.setenv(ENVIRONMENT, environment)
    result = run_here(pytester, *(["--statekeep-url", option] if option else []))
    passes(result, 1)
    [url] = urls(pytester)
    assert url.partition("://")[0] == expected
    header = [line for line in result.stdout.lines if line.startswith("statekeep_url:")]
    assert [line.rpartition("(from ")[2] for line in header] == ([f"{source})"] if source else [])


@pytest.mark.parametrize(
    ("where", "url", "named"),
    [
        ("option", "mysql://localhost/test", "--statekeep-url"),
        ("option", "app.db", "--statekeep-url"),
        ("option", "memory://somewhere", "--statekeep-url"),
        ("option", "postgresql://localhost/test?schema=Bad-Name", "--statekeep-url"),
        ("environment", "redis://localhost", "STATEKEEP_TEST_URL"),
        ("ini", "sqlite3:///app.db", "ini statekeep_url"),
    ],
)
def test_a_bad_url_is_a_usage_error_naming_where_it_came_from(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, where: str, url: str, named: str
) -> None:
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    pytester.makeini(f"[pytest]\nstatekeep_url = {url}\n" if where == "ini" else "[pytest]\n")
    if where == "environment":
        monkeypatch.setenv(ENVIRONMENT, url)
    result = run_here(pytester, *(["--statekeep-url", url] if where == "option" else []))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = result.stderr.str()
    assert f"ERROR: {named} (statekeep's test store URL)" in errors
    assert url.partition("?")[0] in errors or "schema=" in errors
    assert "Traceback" not in errors


def test_the_option_and_the_ini_key_are_documented_in_help(pytester: pytest.Pytester) -> None:
    result = run_here(pytester, "--help")
    result.stdout.fnmatch_lines(["*--statekeep-url=URL*", "*statekeep_url (string)*"])


# -- importing the plugin --------------------------------------------------------

IMPORT_PLUGIN = """
import sys, threading
import pytest, statekeep
before = set(sys.modules)
import statekeep.pytest_plugin
assert sorted(set(sys.modules) - before) == ["statekeep.pytest_plugin"], set(sys.modules) - before
for extra in ("psycopg", "psycopg_pool", "rich", "click", "starlette", "immutables"):
    assert extra not in sys.modules, extra
assert threading.active_count() == 1, threading.enumerate()
print("ok")
"""


def test_importing_the_plugin_loads_nothing_beyond_statekeep_itself(tmp_path: Path) -> None:
    """pytest imports it in every run of every project that installs statekeep."""
    run = subprocess.run(
        [sys.executable, "-W", "error", "-c", IMPORT_PLUGIN],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"
    assert list(tmp_path.iterdir()) == []


# -- the fixtures in this suite itself (the plugin is installed here too) ------------


class PluginNote(Entity):
    text: Annotated[str, Indexed()]


def test_recorded_events_wait_for_events_of_another_thread(
    statekeep_store: statekeep.Store, statekeep_events: RecordedEvents
) -> None:
    assert not statekeep_events.wait(1, timeout=0.01)
    saver = threading.Timer(0.05, lambda: statekeep_store.save(PluginNote(text="late")))
    saver.start()
    try:
        assert statekeep_events.wait(1, of=PluginNote.Created, timeout=10)
    finally:
        saver.join()
    assert statekeep_events.of(PluginNote) == statekeep_events.of(statekeep.Created)
    assert [e.entity.text for e in statekeep_events.of(PluginNote.Created)] == ["late"]
    assert statekeep_events.of(statekeep.Deleted) == []
    assert repr(statekeep_events) == "<RecordedEvents ['plugin_note.created']>"
    with pytest.raises(statekeep.ConfigurationError):
        statekeep_events.of(42)


def test_the_store_is_open_on_the_url_and_a_closed_store_is_left_alone(
    statekeep_url: str, statekeep_store: statekeep.Store
) -> None:
    assert statekeep_store.url == statekeep_url
    statekeep_store.save(PluginNote(text="x"))
    statekeep_store.close()  # the teardown has nothing to flush or close
