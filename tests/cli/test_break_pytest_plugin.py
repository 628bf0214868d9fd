"""Breaking the pytest plugin as a user's suite would use it.

The test fails today."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SECRET = "hunter2sekrit"


def test_the_header_hides_a_password_given_in_the_query_string(tmp_path: Path) -> None:
    """testing.md: pytest names the URL in its header "a password shown as
    `***`". A password given as libpq's query parameter
    (`postgresql://app@db/test?password=...`, common in CI variables) was
    printed as is: `statekeep_url: postgresql://postgres@127.0.0.1:5432/test?password=...`."""
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    url = f"postgresql://postgres@127.0.0.1:5432/test?password={SECRET}"
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "--statekeep-url",
            url,
            "test_nothing.py",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "STATEKEEP_TEST_URL"},
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "statekeep_url:" in ran.stdout
    assert SECRET not in ran.stdout + ran.stderr
