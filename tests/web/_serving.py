"""Servers started as processes, for tests/web: a free port, a server's process
with its output in files, its first SSE frame, and a stop by signal."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STARTUP_SECONDS = 30.0
STOP_SECONDS = 30.0
SERVING_VARIABLES = ("STATEKEEP_URL", "STATEKEEP_TOKEN", "STATEKEEP_TITLE", "STATEKEEP_HOST")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    base: str
    out: Path
    err: Path

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Sends sig and waits for the process: its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_SECONDS)
            raise AssertionError(f"{self.base} did not stop on {sig!r}:\n{self.stderr()}") from None


def start(
    command: list[str], port: int, directory: Path, env: dict[str, str], name: str = "server"
) -> Served:
    """Starts command (serving on 127.0.0.1:port) and waits until /healthz answers 200."""
    out, err = directory / f"{name}.out", directory / f"{name}.err"
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(SERVING_VARIABLES)}
    full_env = {**inherited, "PYTHONPATH": str(HERE), **env}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            command, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr
        )
    served = Served(process, f"http://127.0.0.1:{port}", out, err)
    deadline = time.monotonic() + STARTUP_SECONDS
    while True:
        if process.poll() is not None:
            raise AssertionError(f"{command} ended ({process.returncode}):\n{served.stderr()}")
        try:
            if httpx.get(f"{served.base}/healthz", timeout=2).status_code == 200:
                return served
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            served.stop(signal.SIGKILL)
            raise AssertionError(f"{command} did not serve within {STARTUP_SECONDS} s")
        time.sleep(0.1)


def first_signals(base: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The signals of the first frame /events sends (a datastar-merge-signals event)."""
    with httpx.stream("GET", f"{base}/events", headers=headers, timeout=10) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        lines: list[str] = []
        for line in response.iter_lines():
            if line == "" and lines:
                break
            lines.append(line)
    assert lines[0] == "event: datastar-merge-signals", lines
    data = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
    assert data and data[0].startswith("signals "), data
    found: dict[str, Any] = json.loads(data[0].removeprefix("signals "))
    return found


def counts(signals: dict[str, Any]) -> dict[str, int]:
    return {row["name"]: row["count"] for row in signals["counts"].values()}
