"""Breaking statekeep.ops from asyncio code (statekeep.aio's AsyncStore).

A hostile new user's asyncio program hands its AsyncStore to the ops
functions. export, import_dump and copy work on it (they read store.backend);
inspect does not. The test fails today."""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path

import statekeep
import statekeep.aio
from statekeep import ops

from .models import Note


def test_ops_inspect_of_an_async_store_works_or_refuses_clearly(tmp_path: Path) -> None:
    """ops.inspect(async_store) raised `TypeError: 'coroutine' object is not
    iterable` (it iterates store.subscriptions(), a coroutine function on
    AsyncStore) with `RuntimeWarning: coroutine 'AsyncStore.subscriptions'
    was never awaited`. Either inspect it (as ops.export does), or refuse
    with a StatekeepError that says to pass a Store."""
    url = f"sqlite:///{tmp_path / 'app.db'}"

    async def main() -> ops.Inspection | None:
        async with await statekeep.aio.open(url) as store:
            await store.save(Note(id="n1", text="from asyncio"))
            try:
                return ops.inspect(store)  # type: ignore[arg-type]
            except statekeep.StatekeepError:
                return None  # a clear refusal will do

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        report = asyncio.run(main())
    if report is not None:
        assert [(c.spec.name, c.rows) for c in report.collections] == [("cli_note", 1)]
