"""Docs are tests: every ```python block in README.md and docs/ runs.

The blocks of one file run in order in one namespace, in a temporary working
directory, so a later block can use what an earlier one defined.
"""

from __future__ import annotations

import re
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
def test_code_blocks_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": f"doc_{path.stem}"}
    for number, code in enumerate(blocks(path), 1):
        exec(compile(code, f"{path.name} block {number}", "exec", dont_inherit=True), namespace)


def test_readme_has_an_example_and_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert blocks(ROOT / "README.md")
