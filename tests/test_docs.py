"""Docs are tests: every ```python block in README.md and docs/ runs.

The blocks of one file run in order in one namespace, in a temporary working
directory, so a later block can use what an earlier one defined. Each file
runs in a process of its own, as the program it shows would: its entity
classes (a `Todo`, a `RecordingSession`) are not the test suite's.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text())


@pytest.mark.parametrize(
    "path", [p for p in DOCUMENTS if blocks(p)], ids=lambda p: str(p.relative_to(ROOT))
)
def test_code_blocks_run(path: Path, tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", RUN_BLOCKS, str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr


RUN_BLOCKS = f"""
import re, sys
from pathlib import Path
path = Path(sys.argv[1])
namespace = {{"__name__": "doc_" + path.stem}}
blocks = re.compile({BLOCK.pattern!r}, re.MULTILINE | re.DOTALL).findall(path.read_text())
for number, code in enumerate(blocks, 1):
    exec(compile(code, f"{{path.name}} block {{number}}", "exec", dont_inherit=True), namespace)
"""


def test_readme_has_an_example_and_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert blocks(ROOT / "README.md")


def test_the_flow_timelines_are_drawn_from_a_real_run() -> None:
    """docs/flow.md's timelines are what docs/_timelines.py draws (`make
    docs`): not drawn by hand, not stale. They come from the real clock: a
    machine too loaded to keep 40 ms may draw another picture, so three
    runs are allowed; three different pictures mean the docs are stale."""
    block = re.search(
        r"<!-- timelines -->\n(.*?)\n<!-- /timelines -->",
        (ROOT / "docs" / "flow.md").read_text(),
        re.DOTALL,
    )
    assert block is not None
    drawn = []
    for _ in range(3):
        run = subprocess.run(
            [sys.executable, str(ROOT / "docs" / "_timelines.py")],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        drawn.append(run.stdout.strip())
        if drawn[-1] == block.group(1).strip():
            return
    assert drawn[-1] == block.group(1).strip()
