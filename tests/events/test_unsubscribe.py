"""Retiring a durable subscription: store.unsubscribe(name) (and the CLI's
`statekeep unsubscribe URL NAME`) drops its checkpoint, so the outbox is
pruned past it; store.subscriptions() shows where each one is, and pruning
reports, rather than silently obeys, a subscription that stalled."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import pytest

import statekeep
from statekeep import ConfigurationError, NotFoundError
from statekeep.cli import main

from ._support import Recorder, outbox, wait_for
from .models import Item

if TYPE_CHECKING:
    from statekeep.backends.postgres import PostgresBackend

OpenStore = Callable[..., statekeep.Store]


def write(store: statekeep.Store, ids: range) -> None:
    for n in ids:
        store.save(Item(id=f"i{n}", n=n))


def consume(store: statekeep.Store, name: str) -> None:
    subscription = store.subscribe(name, Recorder())
    assert subscription.wait_idle(20)
    subscription.stop()


def test_a_retired_subscription_stops_holding_back_pruning(
    outbox_store: statekeep.Store,
) -> None:
    store = outbox_store
    write(store, range(10))
    consume(store, "old")
    write(store, range(10, 30))
    consume(store, "new")
    assert store.prune_events() == 10  # "old" passed 10 events only
    assert len(outbox(store)) == 20

    store.unsubscribe("old")
    assert [info.name for info in store.subscriptions()] == ["new"]
    assert store.prune_events() == 20
    assert outbox(store) == []


def test_unsubscribe_refuses_a_running_or_unknown_name(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    write(store, range(3))
    subscription = store.subscribe("live", Recorder())
    with pytest.raises(ConfigurationError, match="stop"):
        store.unsubscribe("live")
    assert subscription.wait_idle(20)
    subscription.stop()
    store.unsubscribe("live")
    with pytest.raises(NotFoundError, match=r"store\.subscriptions\(\)"):
        store.unsubscribe("live")
    with pytest.raises(ConfigurationError):
        store.unsubscribe(42)  # type: ignore[arg-type]


@pytest.mark.requires("persistent")
def test_unsubscribe_refuses_a_name_another_store_runs(
    outbox_store: statekeep.Store, open_store: OpenStore
) -> None:
    write(outbox_store, range(3))
    other = open_store(outbox=True, outbox_retention=None)
    running = other.subscribe("elsewhere", Recorder())
    assert running.wait_idle(20)
    with pytest.raises(ConfigurationError, match="another process"):
        outbox_store.unsubscribe("elsewhere")
    running.stop()
    outbox_store.unsubscribe("elsewhere")


def test_subscriptions_show_position_lag_and_holder(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    write(store, range(5))
    before = time.time()
    consume(store, "done")
    running = store.subscribe("running", Recorder())
    assert running.wait_idle(20)
    write(store, range(5, 8))
    assert running.wait_idle(20)
    infos = {info.name: info for info in store.subscriptions()}
    assert set(infos) == {"done", "running"}
    done, live = infos["done"], infos["running"]
    assert done.position < live.position
    assert done.behind and not live.behind
    assert live.active and not done.active
    assert done.advanced_at is not None and done.advanced_at.timestamp() >= before - 1
    assert not done.stalled  # behind, but it advanced within outbox_stale_after


def test_a_stalled_subscription_is_reported_when_pruning(
    open_store: OpenStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(outbox=True, outbox_retention=None, outbox_stale_after=0.05)
    write(store, range(5))
    consume(store, "stuck")
    write(store, range(5, 10))
    time.sleep(0.1)
    [info] = store.subscriptions()
    assert info.stalled
    with caplog.at_level(logging.WARNING, logger="statekeep.events"):
        assert store.prune_events() == 5  # obeyed: what "stuck" has not read is kept
    assert "'stuck' has not advanced" in caplog.text
    assert "store.unsubscribe('stuck')" in caplog.text


def test_a_running_subscription_reports_a_stalled_one_as_it_prunes(
    open_store: OpenStore, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(outbox=True, outbox_retention=0, outbox_stale_after=0.05)
    write(store, range(5))
    consume(store, "stuck")
    write(store, range(5, 10))
    with caplog.at_level(logging.WARNING, logger="statekeep.events"):
        live = store.subscribe("live", Recorder())
        live._prune_every = 0.0  # prune at each checkpoint, not every 5 s
        assert live.wait_idle(20)
        time.sleep(0.1)  # "stuck" is now stalled for sure
        write(store, range(10, 12))
        wait_for(lambda: "'stuck' has not advanced" in caplog.text, what="the report")
    live.stop()


@pytest.mark.parametrize("stale", [0, -1, "1", True])
def test_bad_stale_after(store_url: str, stale: object) -> None:
    with pytest.raises(ConfigurationError, match="outbox_stale_after"):
        statekeep.open(store_url, outbox=True, outbox_stale_after=stale)


@pytest.mark.requires("persistent")
def test_the_cli_lists_and_drops_subscriptions(
    outbox_store: statekeep.Store, store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    write(outbox_store, range(3))
    consume(outbox_store, "retired")
    assert main(["subscriptions", store_url]) == 0
    listed = capsys.readouterr().out
    assert "retired\tposition" in listed and "caught up\tnot running" in listed
    assert main(["unsubscribe", store_url, "retired"]) == 0
    assert "unsubscribed 'retired'" in capsys.readouterr().out
    assert main(["unsubscribe", store_url, "retired"]) == 1
    assert "no durable subscription named 'retired'" in capsys.readouterr().err
    assert main(["subscriptions", store_url]) == 0
    assert capsys.readouterr().out == "no durable subscriptions\n"


def test_pruning_waits_for_a_new_subscription_that_has_no_checkpoint_yet(
    outbox_store: statekeep.Store,
) -> None:
    """A subscription delivering its first batch has saved no checkpoint yet:
    pruning for the others must not delete the events it has still to read."""
    store = outbox_store
    store.save_many(Item(id=f"i{n}", n=n) for n in range(700))  # more than a read's batch
    consume(store, "fast")
    gate = threading.Event()
    slow = Recorder(lambda event: gate.wait(20))
    subscription = store.subscribe("slow", slow)
    wait_for(lambda: len(slow) == 1, what="the first event")
    store.prune_events()
    gate.set()
    assert subscription.wait_idle(30)
    subscription.stop()
    assert sorted(event.entity_id for event in slow.events) == sorted(f"i{n}" for n in range(700))


@pytest.mark.requires("postgresql")
def test_stopped_subscriptions_and_listing_them_leave_no_connections_behind(
    outbox_store: statekeep.Store,
) -> None:
    """A stopped subscription's LISTEN connection stayed open until the store
    closed (subscribing and stopping names over and over ran the server out of
    connections), and every subscriptions() kept its claims' connections."""
    import psycopg

    store = outbox_store
    backend = cast("PostgresBackend", store.backend)
    write(store, range(3))
    for n in range(5):
        consume(store, f"name {n}")
    for _ in range(10):
        assert len(store.subscriptions()) == 5
    listening = f"LISTEN {backend._channel}"
    with psycopg.connect(store.url.split("?")[0], autocommit=True) as conn:
        wait_for(
            lambda: (
                conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE query = %s", (listening,)
                ).fetchone()
                == (0,)
            ),
            what="the stopped subscriptions' LISTEN connections to close",
        )
    assert len(backend._listeners) <= 1  # the last claim's, let go at the next
