"""The command-line tests: `statekeep.cli.main` run in-process (stdout and
stderr read with capsys), and as `python -m statekeep.cli` where the real
process matters (exit codes, stdout against stderr, stdin).

The commands operate persistent databases (sqlite-file, files, postgresql of
the registry in tests/_backends.py); `make_url(name)` makes a fresh one of
any registered backend, removed (PostgreSQL: its schema dropped) at the end.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from _backends import BACKENDS
from _backends import Backend as Backend  # for the tests that name it
from statekeep.cli import main

PERSISTENT = tuple(b.name for b in BACKENDS if "persistent" in b.capabilities)
MakeUrl = Callable[[str], str]


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str


Cli = Callable[..., Ran]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """rich draws its tables this wide, so no cell is folded in the tests."""
    monkeypatch.setenv("COLUMNS", "250")


@pytest.fixture
def make_url(tmp_path: Path) -> Iterator[MakeUrl]:
    """make_url("sqlite-file" | "files" | "postgresql" | ...): a new database's URL."""
    made: list[tuple[Backend, str]] = []

    def make(name: str) -> str:
        (backend,) = [b for b in BACKENDS if b.name == name]
        directory = tmp_path / f"db{len(made)}-{name}"
        directory.mkdir()
        url = backend.url(directory)
        made.append((backend, url))
        return url

    yield make
    for backend, url in made:
        if backend.cleanup is not None:
            backend.cleanup(url)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """cli(*args, stdin=text or bytes): runs `statekeep args` in this process."""

    def run(*args: str, stdin: str | bytes | None = None) -> Ran:
        capsys.readouterr()
        if stdin is not None:
            data = stdin.encode() if isinstance(stdin, str) else stdin
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), "utf-8"))
        code = main(list(args))
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return run


def run_process(
    *args: str,
    stdin: str | None = None,
    timeout: float = 120,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m statekeep.cli args` in a process of its own (env: added to this one's)."""
    return subprocess.run(
        [sys.executable, "-m", "statekeep.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        env={**os.environ, "COLUMNS": "250", "PYTHONUTF8": "1", **(env or {})},
        check=False,
        cwd=cwd,
    )


def one_line(err: str) -> str:
    """stderr of a failed command: exactly one line, which is returned."""
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert "Traceback" not in err
    return lines[0]
