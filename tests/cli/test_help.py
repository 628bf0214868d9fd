"""Every command and subcommand explains itself: `--help` gives a one-line
purpose and an example; `--version`; usage errors are exit 2."""

from __future__ import annotations

import click
import pytest

import statekeep
from statekeep.cli import cli as group

from .conftest import Cli, run_process


def commands() -> list[tuple[str, ...]]:
    """The argv prefix that reaches each command (a group's argument filled)."""
    found: list[tuple[str, ...]] = [()]
    for name, command in sorted(group.commands.items()):
        found.append((name,))
        if isinstance(command, click.Group):
            for sub in sorted(command.commands):
                found.append((name, "sqlite:///app.db", sub))
    return found


def cases() -> list[object]:
    return list(commands())


def test_every_command_is_listed() -> None:
    names = {prefix[-1] for prefix in commands() if prefix}
    assert {
        "inspect",
        "export",
        "import",
        "copy",
        "dead-letters",
        "list",
        "show",
        "requeue",
        "drop",
        "bench",
        "demo",
        "serve",
    } <= names


@pytest.mark.parametrize("prefix", cases(), ids=lambda p: " ".join(p) or "statekeep")
def test_help_has_a_purpose_and_an_example(prefix: tuple[str, ...], cli: Cli) -> None:
    ran = cli(*prefix, "--help")
    assert ran.code == 0, ran.err
    assert ran.err == ""
    lines = ran.out.splitlines()
    assert lines[0].startswith("Usage: statekeep"), lines[0]
    assert lines[1] == ""
    purpose = lines[2].strip()
    assert purpose and purpose.endswith("."), purpose
    assert lines[3].strip() == "", f"the purpose is more than one line: {lines[2:4]}"
    assert "Example" in ran.out, f"no example in `statekeep {' '.join(prefix)} --help`"
    assert cli(*prefix, "-h").out == ran.out


def test_version() -> None:
    done = run_process("--version")
    assert done.returncode == 0
    assert done.stdout == f"statekeep, version {statekeep.__version__}\n"
    assert done.stderr == ""


@pytest.mark.parametrize(
    "args",
    [
        ("--bogus",),
        ("inspect", "--bogus", "sqlite:///x.db"),
        ("export", "sqlite:///x.db", "--output"),
        ("copy", "sqlite:///x.db"),
        ("no-such-command",),
        ("dead-letters",),
        ("dead-letters", "sqlite:///x.db", "no-such-action"),
        ("bench", "--quick", "--rounds", "3"),
    ],
    ids=" ".join,
)
def test_usage_errors_are_exit_2(args: tuple[str, ...], cli: Cli) -> None:
    ran = cli(*args)
    assert ran.code == 2
    assert "Error:" in ran.err and "Traceback" not in ran.err
    assert ran.out == ""


def test_a_usage_error_in_a_process() -> None:
    done = run_process("inspect", "--bogus", "sqlite:///x.db")
    assert done.returncode == 2
    assert "Usage: statekeep inspect" in done.stderr
    assert "No such option '--bogus'" in done.stderr and done.stdout == ""
