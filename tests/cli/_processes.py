"""Starting tests/cli/_child.py and waiting until it says it is ready."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CHILD = str(Path(__file__).with_name("_child.py"))


def start_child(mode: str, url: str, directory: Path) -> subprocess.Popen[bytes]:
    """_child.py in mode, once it has written its READY file."""
    ready, log = directory / f"{mode}.ready", directory / f"{mode}.log"
    with log.open("wb") as output:
        child = subprocess.Popen(
            [sys.executable, CHILD, mode, url, str(ready)], stdout=output, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while not ready.exists():
        if child.poll() is not None:
            raise AssertionError(f"the child exited ({child.returncode}): {log.read_text()}")
        if time.monotonic() > deadline:
            child.kill()
            child.wait()
            raise AssertionError(f"the child was not ready within 60 s: {log.read_text()}")
        time.sleep(0.01)
    return child


def kill(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert child.returncode == -signal.SIGKILL


@contextmanager
def running(mode: str, url: str, directory: Path) -> Iterator[subprocess.Popen[bytes]]:
    """_child.py in mode for the block, SIGKILLed after it."""
    child = start_child(mode, url, directory)
    try:
        yield child
    finally:
        kill(child)
