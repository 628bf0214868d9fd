"""statekeep.web served for real: uvicorn (`--factory`) and gunicorn with two
uvicorn-worker processes, as subprocesses on a free port, on a SQLite file and
on PostgreSQL. Health, readiness and the event stream answer; SIGTERM stops the
server cleanly, and writes enqueued through a served process are stored by then
(the app's shutdown closes its store, which drains write-behind). With two
workers, each reads the same counts from the database, and each is a process
of its own.

The servers serve tests/web/_served.py's factory: from_env()'s dashboard and
POST /enqueue. Their warnings are not errors; a traceback in their stderr is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import _postgres
import statekeep
from statekeep import Entity
from web._serving import Served, counts, first_signals, free_port, start

NOTES = 300
BIN = Path(sys.executable).parent


class Note(Entity, collection="web_served_note"):  # the same collection as _served.Note
    tag: str = ""
    n: int = 0
    pid: int = 0


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'served.db'}"
        return
    base = _postgres.server_url()
    schema = _postgres.fresh_schema()
    try:
        yield _postgres.with_query(base, schema=schema)
    finally:
        _postgres.drop_schema(base, schema)


def uvicorn_command(port: int, factory: str = "_served:factory") -> list[str]:
    return [sys.executable, "-m", "uvicorn", factory, "--factory", "--port", str(port)]


def gunicorn_command(port: int, workers: int = 2) -> list[str]:
    return [
        str(BIN / "gunicorn"),
        "-k",
        "uvicorn_worker.UvicornWorker",
        "-w",
        str(workers),
        "--graceful-timeout",
        "20",
        "_served:factory()",
        "-b",
        f"127.0.0.1:{port}",
    ]


def no_traceback(served: Served) -> None:
    err = served.stderr()
    assert "Traceback" not in err, err


def enqueue(base: str, tag: str, n: int = NOTES) -> int:
    response = httpx.post(f"{base}/enqueue", params={"n": n, "tag": tag}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json()["enqueued"] == n
    pid: int = response.json()["pid"]
    return pid


def assert_stored(url: str, tags: list[str]) -> None:
    with statekeep.open(url) as store:
        for tag in tags:
            assert store.count(Note, tag=tag) == NOTES, tag
            assert sorted(note.n for note in store.find(Note, tag=tag)) == list(range(NOTES))


def assert_health(base: str) -> None:
    assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok"}
    ready = httpx.get(f"{base}/readyz", timeout=5)
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}, ready.text


# uvicorn shuts down on SIGTERM (the app's lifespan closes its store), then raises
# SIGTERM again with the handler it found (the default), so its process ends by the
# signal; gunicorn's master exits 0.
CLEAN_EXIT = {"uvicorn": -signal.SIGTERM, "gunicorn": 0}


@pytest.mark.parametrize("server", ["uvicorn", "gunicorn"])
def test_served_answers_and_stops_with_every_enqueued_write_stored(
    server: str, url: str, tmp_path: Path
) -> None:
    port = free_port()
    command = uvicorn_command(port) if server == "uvicorn" else gunicorn_command(port)
    served = start(command, port, tmp_path, {"STATEKEEP_URL": url}, name=server)
    try:
        assert_health(served.base)
        signals = first_signals(served.base)
        assert signals["connected"] is True and signals["pid"] != 0
        assert counts(signals).get("web_served_note") == 0
        tags = [f"t{n}" for n in range(4)]
        for tag in tags:
            enqueue(served.base, tag)
    finally:
        code = served.stop(signal.SIGTERM)  # at once: the writes are still being written
    assert code == CLEAN_EXIT[server], served.stderr()
    no_traceback(served)
    assert_stored(url, tags)


def test_from_env_itself_under_uvicorn(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'plain.db'}"
    port = free_port()
    served = start(
        uvicorn_command(port, "statekeep.web:from_env"), port, tmp_path, {"STATEKEEP_URL": url}
    )
    try:
        assert_health(served.base)
        assert first_signals(served.base)["connected"] is True
        assert httpx.get(f"{served.base}/", timeout=5).status_code == 200
    finally:
        code = served.stop(signal.SIGTERM)
    assert code == -signal.SIGTERM
    no_traceback(served)
    assert "Application shutdown complete" in served.stderr()


def test_from_env_without_a_url_refuses_to_start(tmp_path: Path) -> None:
    port = free_port()
    done = subprocess.run(
        uvicorn_command(port, "statekeep.web:from_env"),
        env={k: v for k, v in os.environ.items() if k != "STATEKEEP_URL"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "ConfigurationError" in done.stderr and "STATEKEEP_URL" in done.stderr


def test_two_gunicorn_workers_read_the_same_counts(url: str, tmp_path: Path) -> None:
    port = free_port()
    served = start(gunicorn_command(port), port, tmp_path, {"STATEKEEP_URL": url}, "gunicorn")
    try:
        with statekeep.open(url) as store:  # written through the database, not a worker
            store.save_many([Note(id=f"db-{n}", tag="db", n=n) for n in range(25)])
        seen: dict[int, dict[str, int]] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            signals = first_signals(served.base)
            found = counts(signals)
            if found.get("web_served_note") == 25:
                seen[signals["pid"]] = found
            if len(seen) >= 2:
                break
            time.sleep(0.05)
        assert len(seen) == 2, f"saw the workers {sorted(seen)} only"
        first, second = seen.values()
        assert first == second
        assert served.process.pid not in seen  # the master serves nothing
    finally:
        code = served.stop(signal.SIGTERM)
    assert code == 0, served.stderr()
    no_traceback(served)
