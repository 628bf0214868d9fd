"""docs/metrics.md stays true: it lists every metric a store keeps, every
default alert and every advice rule."""

from __future__ import annotations

import re
from pathlib import Path

from statekeep.metrics import _advice, default_alerts
from statekeep.metrics import names as n

DOC = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()


def table_names(doc: str) -> set[str]:
    return set(re.findall(r"^\| `(\w+)` \|", doc, re.MULTILINE))


def test_every_metric_is_in_the_doc() -> None:
    names = {value for key, value in vars(n).items() if key.isupper() and isinstance(value, str)}
    assert names and names <= table_names(DOC)


def test_every_default_alert_is_in_the_doc() -> None:
    assert {rule.name for rule in default_alerts()} <= table_names(DOC)


def test_every_advice_rule_is_in_the_doc() -> None:
    source = Path(_advice.__file__).read_text()
    rules = set(re.findall(r'Advice\(\s*"(\w+)"', source))
    assert len(rules) == 7 and rules <= table_names(DOC)
