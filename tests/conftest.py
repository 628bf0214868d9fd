"""Shared by every test: each test starts with no default store, and every
suite has the backend registry (tests/_backends.py: the `backend` and
`store_url` fixtures, the `requires` marker)."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["_backends"]


@pytest.fixture(autouse=True)
def no_default_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """`statekeep.use(store)` sets a process-wide default; keep it from leaking between tests."""
    monkeypatch.setattr("statekeep.active._default", None)


@pytest.fixture(autouse=True, scope="session")
def private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Backends without a file of their own (PostgreSQL) keep their write-behind
    journals under STATEKEEP_STATE_DIR; the tests keep theirs out of the home folder."""
    os.environ["STATEKEEP_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
