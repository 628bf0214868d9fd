"""Child processes of the exactness tests (tests/writebehind/_exact_child.py):
their standard output read line by line as they write, killed with SIGKILL
(os.kill) or signalled, and always reaped.

A child writes each line with one os.write() of at most PIPE_BUF bytes, so a
line is either all there or not at all; a torn last line (none should be)
counts as not written.

Two ways to start one:
- Children.start(): a fresh interpreter (subprocess), its output on a pipe.
- Children.spawn(spawner, ...): forked by a Spawner, a process that has
  imported statekeep once (`_exact_child.py spawner`), its output on a FIFO.
  It starts in milliseconds instead of most of a second: the stress test
  makes a thousand of them. A spawner is started with the environment its
  children need (STATEKEEP_TEST_PAUSE_AFTER_COMMIT is set before statekeep
  is imported, so a hook read at import works too). Its children are not
  the test's: the spawner reaps them, and the test learns of their death
  through a pidfd.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from _backends import BACKENDS, Backend

CHILD = str(Path(__file__).with_name("_exact_child.py"))


class Process:
    """A child's output lines, as they come; what it wrote to stderr is in log."""

    pid: int

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log
        self._changed = threading.Condition()
        self._lines: list[str] = []
        self._ended = False

    def _read(self, stream: BinaryIO) -> None:
        try:
            for raw in stream:
                if not raw.endswith(b"\n"):
                    break  # torn: not written
                with self._changed:
                    self._lines.append(raw.decode().rstrip("\n"))
                    self._changed.notify_all()
        finally:
            with self._changed:
                self._ended = True
                self._changed.notify_all()

    def lines(self) -> list[str]:
        with self._changed:
            return list(self._lines)

    def _found(self, prefix: str) -> str | None:
        return next((line for line in self._lines if line.startswith(prefix)), None)

    def wait_line(self, prefix: str, timeout: float = 60.0) -> str:
        """The first line that starts with prefix; fails if the child ends
        (or timeout passes) without writing one."""
        with self._changed:
            self._changed.wait_for(lambda: self._found(prefix) is not None or self._ended, timeout)
            line = self._found(prefix)
        if line is None:
            raise AssertionError(
                f"child {self.name} wrote no {prefix!r} line "
                f"(alive: {self.alive()}); its stderr:\n{self.stderr()}"
            )
        return line

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")[-6000:] if self.log.exists() else ""

    def alive(self) -> bool:
        raise NotImplementedError

    def kill(self) -> bool:
        """SIGKILL now (os.kill) and wait until it is gone; True if it was
        still running then."""
        running = self.alive()
        if running:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                running = False
        self.reap()
        return running

    def reap(self, timeout: float = 60.0) -> int | None:
        raise NotImplementedError


class Child(Process):
    """A fresh interpreter running _exact_child.py, its output on a pipe."""

    def __init__(
        self,
        name: str,
        args: list[str],
        log: Path,
        env: dict[str, str] | None = None,
        stdin: bool = False,
    ) -> None:
        super().__init__(name, log)
        with log.open("wb") as errors:
            self.process = subprocess.Popen(
                [sys.executable, CHILD, *args],
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                env={**os.environ, **(env or {})},
            )
        self.pid = self.process.pid
        assert self.process.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(self.process.stdout,), name=f"read-{name}", daemon=True
        )
        self._reader.start()

    def send(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def alive(self) -> bool:
        return self.process.poll() is None

    def reap(self, timeout: float = 60.0) -> int:
        """Waits for the end; its exit code (-N: killed by signal N)."""
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        return code


class Forked(Process):
    """A child a Spawner forked, its output on a FIFO."""

    def __init__(self, name: str, directory: Path) -> None:
        super().__init__(name, directory / f"{name}.log")
        self.output = directory / f"{name}.out"
        os.mkfifo(self.output)
        self.pid = 0
        self._pidfd: int | None = None
        self._reader = threading.Thread(target=self._read_fifo, name=f"read-{name}", daemon=True)
        self._reader.start()

    def _read_fifo(self) -> None:
        with self.output.open("rb") as stream:  # waits for the child to open it
            self._read(stream)

    def attach(self, pid: int) -> None:
        self.pid = pid
        try:
            self._pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            self._pidfd = None  # gone already

    def alive(self) -> bool:
        return self._pidfd is not None and not select.select([self._pidfd], [], [], 0)[0]

    def reap(self, timeout: float = 60.0) -> None:
        """Waits for the end (the spawner collects its exit status)."""
        if self._pidfd is not None:
            ended = select.select([self._pidfd], [], [], timeout)[0]
            assert ended, f"child {self.name} still runs {timeout}s later"
            os.close(self._pidfd)
            self._pidfd = None
        # a child that died before opening its output leaves the reader in
        # open(); if nobody waits there (OSError), the reader has its end of file
        with contextlib.suppress(OSError):
            os.close(os.open(self.output, os.O_WRONLY | os.O_NONBLOCK))
        self._reader.join(timeout)


class Spawner:
    """`_exact_child.py spawner`: forks a child per request, statekeep imported once."""

    def __init__(self, log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with log.open("wb") as errors:
            self.process = subprocess.Popen(
                [sys.executable, CHILD, "spawner", "-"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                env={**os.environ, **(env or {})},
            )

    def fork(self, child: Forked, args: list[str]) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        request = {"out": str(child.output), "err": str(child.log), "args": args}
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()
        reply = self.process.stdout.readline().split()
        assert reply[:1] == [b"pid"], f"the spawner failed: {self.log.read_text()[-3000:]}"
        child.attach(int(reply[1]))

    def close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()  # the spawner ends at the end of its input
        self.process.wait(30)

    def __enter__(self) -> Spawner:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


class Children:
    """Starts children; kills and reaps whatever is left when the block ends."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[Process] = []

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None, stdin: bool = False
    ) -> Child:
        child = Child(name, list(args), self.directory / f"{name}.log", env, stdin)
        self.started.append(child)
        return child

    def spawn(self, spawner: Spawner, name: str, *args: str) -> Forked:
        child = Forked(name, self.directory)
        self.started.append(child)
        spawner.fork(child, list(args))
        return child

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        for child in self.started:
            child.kill()


# The backends where processes share one database, as applications do: the
# backend registry's SQLite file and PostgreSQL (files is a database of a
# kind, but not what the multi-process defects are about).
SHARED_DATABASES = [b for b in BACKENDS if b.name in ("sqlite-file", "postgresql")]


def shared_database(backend: Backend, directory: Path) -> Iterator[str]:
    """The body of a `shared_url` fixture parametrised over SHARED_DATABASES:
    a fresh store's URL, removed (a PostgreSQL schema) at the end, as the
    registry's store_url fixture does."""
    directory.mkdir()
    url = backend.url(directory)
    yield url
    if backend.cleanup is not None:
        backend.cleanup(url)
