"""docs/machines.md's diagram is what SessionFlow.to_mermaid() draws for the
machine its first example declares: not drawn by hand, not stale."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "machines.md"
PYTHON = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)
MERMAID = re.compile(r"^```mermaid\n(.*?)^```", re.MULTILINE | re.DOTALL)


def test_the_diagram_in_the_docs_is_to_mermaid_of_the_example(tmp_path: Path) -> None:
    text = DOC.read_text()
    first = PYTHON.findall(text)[0]
    (diagram,) = MERMAID.findall(text)
    program = first + "\nimport sys\nsys.stdout.write(SessionFlow.to_mermaid())\n"
    run = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == diagram
