"""What the numbers ran on: CPU, cores, memory, and the versions that matter."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import persistqueue  # type: ignore[import-untyped, unused-ignore]
import psutil  # type: ignore[import-untyped]
import pydantic
import pydantic_core
import sqlalchemy

import statekeep

from . import _postgres


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _commit() -> str:
    """The repository's commit, marked + when src/ has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+ (uncommitted changes in src/)" if dirty else "")


def _psycopg_version() -> str:
    try:
        import psycopg
    except ImportError:
        return "not installed"
    return f"{psycopg.__version__} ({psycopg.pq.__impl__} implementation)"


def describe() -> list[tuple[str, str]]:
    physical = psutil.cpu_count(logical=False)
    return [
        ("Date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("CPU", _cpu_model()),
        ("Cores", f"{os.cpu_count()} logical, {physical or '?'} physical"),
        ("Memory", f"{psutil.virtual_memory().total / 2**30:.1f} GiB"),
        ("OS", platform.platform()),
        ("Python", f"{platform.python_implementation()} {sys.version.split()[0]}"),
        ("SQLite", sqlite3.sqlite_version),
        ("pydantic", f"{pydantic.VERSION} (pydantic-core {pydantic_core.__version__})"),
        ("SQLAlchemy", sqlalchemy.__version__),
        ("persist-queue", persistqueue.__version__),
        ("psycopg", _psycopg_version()),
        ("PostgreSQL", _postgres.server_version(_postgres.configured_url())),
        ("statekeep", f"{statekeep.__version__}, commit {_commit()}"),
    ]
