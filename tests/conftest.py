"""Shared by every test: each test starts with no default store."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_default_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """`statekeep.use(store)` sets a process-wide default; keep it from leaking between tests."""
    monkeypatch.setattr("statekeep.active._default", None)
