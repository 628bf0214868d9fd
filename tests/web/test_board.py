"""The dashboard's tree (statekeep.web._board.Board.read), read without a page:
signals as they go out (nothing made plain again at each frame), and figures
that cost a snapshot or a query read on their own clocks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import statekeep
from statekeep.web._board import Board
from statekeep.web._signals import plain

from .test_dashboard_browser import DashNote, DashOrder


@pytest.fixture
def store(tmp_path: Path) -> Iterator[statekeep.Store]:
    store = statekeep.open(f"sqlite:///{tmp_path / 'board.db'}")
    yield store
    store.close()


def test_a_frame_is_plain_signals_as_read(store: statekeep.Store) -> None:
    order = store.save(DashOrder(item="tea"))
    store.send(order, "pay")
    store.save(DashNote(text="a.b__c: not a path"))
    board = Board(store, [DashOrder, DashNote])
    board.start()
    try:
        tree = board.read()
        assert tree == plain(tree)
        json.dumps(tree, allow_nan=False)  # strict JSON: no NaN or infinity
        assert [row["name"] for row in tree["counts"].values()] == ["dash_order", "dash_note"]
        assert tree["machines"]["0"]["states"]["1"] == {
            "state": "paid",
            "count": 1,
            "width": "100%",
        }
    finally:
        board.stop()


def test_the_board_does_not_make_saves_build_events(store: statekeep.Store) -> None:
    """An open dashboard follows transitions only: a save makes no event for it
    (following every commit made each save build one, doubling its time)."""
    board = Board(store, [DashOrder, DashNote])
    board.start()
    try:
        bus = store._core.bus
        assert not bus.wants("dash_note", "updated")
        assert not bus.wants("dash_order", "created")
    finally:
        board.stop()


def test_rates_and_latencies_are_read_once_a_second(store: statekeep.Store) -> None:
    board = Board(store, [DashNote])
    snapshots = 0
    metrics = store.metrics

    def counted() -> object:
        nonlocal snapshots
        snapshots += 1
        return metrics()

    store.metrics = counted  # type: ignore[method-assign,assignment]
    for _ in range(20):
        board.read()
    assert snapshots == 2  # one for the rates and latencies, one for the outbox's lags
