"""`statekeep serve` and `statekeep demo --serve`, run as the commands they are:
they print the dashboard's URL, serve it, and end with 0 on Ctrl-C (SIGINT) or
SIGTERM after a clean shutdown; a configuration they refuse ends them with 2
and one line saying why, before anything is bound."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from web._serving import ROOT, Served, first_signals, free_port

CLI = [sys.executable, "-m", "statekeep.cli"]
TOKEN = "a-token-of-twenty-chars"
URL_LINE = re.compile(r"^dashboard: (http://127\.0\.0\.1:(\d+)/)$", re.MULTILINE)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATEKEEP_")}
    if "STATEKEEP_TEST_POSTGRES_URL" in os.environ:
        env["STATEKEEP_TEST_POSTGRES_URL"] = os.environ["STATEKEEP_TEST_POSTGRES_URL"]
    return {**env, **extra}


def launch(args: list[str], tmp_path: Path, env: dict[str, str], seconds: float = 60) -> Served:
    """Runs the command until it prints its dashboard's URL and /healthz answers there."""
    out, err = tmp_path / "cli.out", tmp_path / "cli.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            [*CLI, *args], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )
    deadline = time.monotonic() + seconds
    while True:
        found = URL_LINE.search(out.read_text(errors="replace"))
        if found is not None:
            served = Served(process, found.group(1).rstrip("/"), out, err)
            try:
                if httpx.get(f"{served.base}/healthz", timeout=2).status_code == 200:
                    return served
            except httpx.TransportError:
                pass
        if process.poll() is not None:
            raise AssertionError(f"ended with {process.returncode}:\n{err.read_text()}")
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError(f"no dashboard within {seconds} s:\n{err.read_text()}")
        time.sleep(0.1)


def refused(args: list[str], **env: str) -> str:
    done = subprocess.run(
        [*CLI, *args],
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("statekeep serve: "), done.stderr
    return lines[0]


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_its_url_serves_and_stops_with_0(stop: int, tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "served.db"
    served = launch(["serve", f"sqlite:///{db}", "--port", str(port)], tmp_path, clean_env())
    try:
        assert served.base == f"http://127.0.0.1:{port}"
        assert first_signals(served.base)["connected"] is True
        assert httpx.get(f"{served.base}/readyz", timeout=5).status_code == 200
    finally:
        code = served.stop(stop)
    assert code == 0, served.stderr()
    assert "Traceback" not in served.stderr()
    assert "Application shutdown complete" in served.stderr()


def test_serve_takes_its_url_and_token_from_the_environment(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(STATEKEEP_URL=f"sqlite:///{tmp_path / 'env.db'}", STATEKEEP_TOKEN=TOKEN)
    served = launch(["serve", "--port", str(port), "--title", "from env"], tmp_path, env)
    try:
        assert httpx.get(f"{served.base}/events", timeout=5).status_code == 401
        bearer = {"authorization": f"Bearer {TOKEN}"}
        assert first_signals(served.base, bearer)["connected"] is True
        assert "from env" in httpx.get(f"{served.base}/login", timeout=5).text
    finally:
        code = served.stop(signal.SIGTERM)
    assert code == 0, served.stderr()


def test_serve_with_two_workers(tmp_path: Path) -> None:
    port = free_port()
    args = ["serve", f"sqlite:///{tmp_path / 'two.db'}", "--port", str(port), "--workers", "2"]
    served = launch(args, tmp_path, clean_env())
    try:
        pids: set[int] = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:
            pids.add(first_signals(served.base)["pid"])
        assert len(pids) == 2 and served.process.pid not in pids
    finally:
        code = served.stop(signal.SIGTERM)
    assert code == 0, served.stderr()
    assert "Traceback" not in served.stderr()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "::"])
def test_serve_refuses_a_host_beyond_loopback_without_a_token(host: str, tmp_path: Path) -> None:
    line = refused(["serve", f"sqlite:///{tmp_path / 'x.db'}", "--host", host])
    assert "token" in line and host in line
    assert not (tmp_path / "x.db").exists()  # refused before the store was opened


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--token", "short"], "at least 16 characters"),
        (["--port", "70000"], "port must be 1 to 65535"),
        (["--port", "0"], "port must be 1 to 65535"),
        (["--workers", "0"], "workers must be 1 or more"),
    ],
)
def test_serve_refuses_bad_options(args: list[str], says: str, tmp_path: Path) -> None:
    assert says in refused(["serve", f"sqlite:///{tmp_path / 'x.db'}", *args])


def test_serve_without_a_url_says_how_to_give_one() -> None:
    assert "STATEKEEP_URL" in refused(["serve"])


def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    port = free_port()
    served = launch(
        ["serve", f"sqlite:///{tmp_path / 'a.db'}", "--port", str(port)], tmp_path, clean_env()
    )
    try:
        line = refused(["serve", f"sqlite:///{tmp_path / 'b.db'}", "--port", str(port)])
        assert f"127.0.0.1:{port}" in line
    finally:
        assert served.stop(signal.SIGTERM) == 0


def test_demo_serve_prints_the_url_serves_and_ends_on_ctrl_c(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    port = free_port()
    args = ["demo", "--serve", "--segments", "200", "--path", str(db), "--port", str(port)]
    served = launch(args, tmp_path, clean_env(), seconds=180)
    try:
        assert served.base == f"http://127.0.0.1:{port}"
        # the demo's last line is the URL; what follows is uvicorn's access log
        lines = served.stdout().splitlines()
        at = lines.index(f"dashboard: {served.base}/")
        assert lines[at - 1] == "The live dashboard of the database, until Ctrl-C:"
        assert all(line.startswith("INFO:") for line in lines[at + 1 :]), lines[at:]
        counted = {
            row["name"]: row["count"] for row in first_signals(served.base)["counts"].values()
        }
        assert counted["segment"] == 200 - 200 // 50  # one session of the 50 is deleted
    finally:
        code = served.stop(signal.SIGINT)
    assert code == 0, served.stderr()
    assert "Traceback" not in served.stderr()


def test_demo_serve_takes_a_free_port_when_its_own_is_taken(tmp_path: Path) -> None:
    port = free_port()
    first = launch(
        ["serve", f"sqlite:///{tmp_path / 'a.db'}", "--port", str(port)], tmp_path, clean_env()
    )
    try:
        other = tmp_path / "demo"
        other.mkdir()
        args = [
            "demo",
            "--serve",
            "--segments",
            "0",
            "--path",
            str(other / "d.db"),
            "--port",
            str(port),
        ]
        demo = launch(args, other, clean_env(), seconds=180)
        try:
            assert demo.base != first.base
        finally:
            assert demo.stop(signal.SIGINT) == 0, demo.stderr()
    finally:
        assert first.stop(signal.SIGINT) == 0


def test_demo_without_serve_ends_with_the_serve_command(tmp_path: Path) -> None:
    db = tmp_path / "plain.db"
    done = subprocess.run(
        [*CLI, "demo", "--segments", "0", "--path", str(db)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    *_, command, url = done.stdout.rstrip().splitlines()
    assert command == f"statekeep serve sqlite:///{db}"
    assert url == "dashboard: http://127.0.0.1:8000/"
