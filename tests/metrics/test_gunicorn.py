"""/metrics under gunicorn with 2 workers (uvicorn's worker class): whichever
worker answers a scrape, it counts every worker's saves (tests/metrics/
_gunicorn_app.py is the app; multiprocess_dir=True, nothing else set up)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from statekeep.metrics import names as n
from statekeep.metrics._multiprocess import directory_of

HERE = Path(__file__).resolve().parent
SAVES = 3  # _gunicorn_app.SAVES
WORK = 24  # /work requests, at least (more until both workers served some)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fetch(base: str, path: str) -> str:
    """One request on a connection of its own (urllib closes it), so the
    requests spread over the workers."""
    with urllib.request.urlopen(base + path, timeout=10) as answer:
        text: str = answer.read().decode()
        return text


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    url = "sqlite:///" + str(tmp_path / "x.db")
    env = {**os.environ, "STATEKEEP_GUNICORN_URL": url}
    env.pop("STATEKEEP_METRICS_DIR", None)  # the directory is named after the URL
    port = free_port()
    log = (tmp_path / "gunicorn.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            "2",
            "-k",
            "uvicorn_worker.UvicornWorker",
            "-b",
            f"127.0.0.1:{port}",
            "--graceful-timeout",
            "5",
            "--chdir",
            str(HERE),
            "_gunicorn_app:app",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a process group of its own, ended as one
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                fetch(base, "/pid")
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, (tmp_path / "gunicorn.log").read_text()
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.1)
        yield base
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
        log.close()
        shared = directory_of(SimpleNamespace(url=url), True)
        assert shared is not None
        for path in shared.iterdir():
            path.unlink()
        shared.rmdir()


def saves_counted(text: str) -> tuple[float, set[str]]:
    """The pooled count of saves, and the pids the gauges are labelled with."""
    count, pids = -1.0, set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == n.OPERATION + "_count" and sample.labels == {"operation": "save"}:
                count = sample.value
            if sample.name == n.ERROR_RATIO:
                pids.add(sample.labels["pid"])
    return count, pids


@pytest.mark.slow
def test_two_gunicorn_workers_are_counted_together(server: str) -> None:
    served: dict[str, int] = {}
    requests = 0
    while requests < WORK or len(served) < 2:
        pid = fetch(server, "/work")
        served[pid] = served.get(pid, 0) + 1
        requests += 1
        assert requests < 400, f"one worker served every request: {served}"
    total = requests * SAVES

    # the worker that answers writes its own file; the other writes its
    # own once a second: within a few seconds every scrape sees all saves
    deadline = time.monotonic() + 15
    while saves_counted(fetch(server, "/metrics"))[0] != total:
        assert time.monotonic() < deadline, (saves_counted(fetch(server, "/metrics")), total)
        time.sleep(0.2)
    for _ in range(6):
        count, pids = saves_counted(fetch(server, "/metrics"))
        assert count == total
        assert pids == set(served)  # a gauge of each live worker, labelled by its pid
