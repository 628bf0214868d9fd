"""Breaking the write-behind engine v2 with hostile input: every bad option
or argument must be a typed error from statekeep.errors (raised before
anything changes), never a crash of the engine's threads or a bare Python
exception. A real SQLite file."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import statekeep
from statekeep import Entity, WriteBehindOptions
from statekeep.errors import StatekeepError


class BrkNote(Entity, collection="brk_note", last_write_wins=True):
    title: str = ""


def open_file(tmp_path: Path, **options: object) -> statekeep.Store:
    return statekeep.open(f"sqlite:///{tmp_path / 'input.db'}", writebehind=options)


def test_a_huge_window_is_refused_or_honoured(tmp_path: Path) -> None:
    """Promise: a bad option value is a ConfigurationError that names it
    (docs/writebehind.md); flush() waits until everything enqueued is stored.

    Observed: WriteBehindOptions(window=1e300) is accepted (it is finite and
    positive), and the flusher thread dies at its first wait with
    OverflowError ("timestamp out of range for platform time_t") from
    Condition.wait: nothing is ever stored, flush(3) returns False and the
    write stays pending. Cause: _options.WriteBehindOptions.__post_init__
    checks only "positive", and _engine._next_batch waits for wake - now
    seconds unbounded."""
    try:
        store = open_file(tmp_path, window=1e300)
    except statekeep.ConfigurationError:
        return  # refused: fine
    try:
        receipt = store.enqueue(BrkNote(id="a", title="x"))
        time.sleep(0.3)  # the flusher plans its next look (one window away)
        assert store.flush(timeout=3), f"not stored: {receipt!r}, {store.writebehind.stats()}"
    finally:
        store.close(timeout=0.5)


def test_a_huge_drain_timeout_is_refused_or_close_works(tmp_path: Path) -> None:
    """Promise: bad option values are ConfigurationErrors; close() drains
    and releases everything.

    Observed: WriteBehindOptions(drain_timeout=1e300) is accepted; close()
    with a write pending then raises a bare OverflowError (not a
    statekeep error), and the store is left half closed (closing, its
    backend never closed). Cause: is_seconds() accepts any finite number,
    and WriteBehind.close waits drain_timeout seconds with Condition.wait_for."""
    try:
        store = open_file(tmp_path, drain_timeout=1e300)
    except statekeep.ConfigurationError:
        return
    store.enqueue(BrkNote(id="a", title="x"))
    try:
        store.close()
    except StatekeepError:
        pass  # a typed error would be acceptable
    except Exception as exc:  # noqa: BLE001 - what the test looks for
        pytest.fail(f"close() raised {type(exc).__name__}: {exc}")
    assert store.closed and not store.closing


@pytest.mark.parametrize(
    ("call", "timeout"),
    [
        ("wait_stored", "1"),
        ("wait_durable", "1"),
        ("wait_stored", 1e300),
        ("flush", 1e300),
        ("close", 1e300),
    ],
)
def test_a_bad_wait_timeout_is_a_typed_error(tmp_path: Path, call: str, timeout: object) -> None:
    """Promise: every bad argument is a typed error from statekeep.errors
    (guide, "Errors": a timeout is a ConfigurationError) - store.flush(-1)
    and flush("1") are ConfigurationErrors.

    Observed: receipt.wait_stored("1") / wait_durable("1") raise a bare
    TypeError ("unsupported operand type(s) for +: 'float' and 'str'"),
    and wait_stored(1e300), store.flush(1e300), store.close(1e300) raise a
    bare OverflowError (close() then leaves the store half closed).
    Cause: Receipt.wait_* pass the timeout to Condition.wait_for unchecked;
    check.timeout accepts any finite number of seconds."""
    store = open_file(tmp_path, window=30)  # the write stays pending while the test waits
    try:
        receipt = store.enqueue(BrkNote(id="a", title="x"))
        target = store if call in ("flush", "close") else receipt
        try:
            getattr(target, call)(timeout)
        except StatekeepError:
            pass
        except Exception as exc:  # noqa: BLE001 - what the test looks for
            pytest.fail(f"{call}({timeout!r}) raised {type(exc).__name__}: {exc}")
    finally:
        if not store.closed:
            store.close(timeout=0)


def test_an_empty_journal_path_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Promise: an unknown field or a bad value of writebehind= is a
    ConfigurationError that names it (docs/writebehind.md); journal is "a
    folder, 'auto' (beside a file) or None".

    Observed: WriteBehindOptions(journal="") is accepted and the journal
    goes to the current working directory (Path("") is "."): the first
    enqueue creates `lock` and `segment-*.log` files among the
    application's own files. Cause:
    WriteBehindOptions.__post_init__ accepts any str; _location.journal_dir
    makes Path("")."""
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    try:
        store = statekeep.open(
            f"sqlite:///{tmp_path / 'empty.db'}",
            writebehind=WriteBehindOptions(journal="", durability="journal", window=30),
        )
    except statekeep.ConfigurationError:
        return
    try:
        assert store.enqueue(BrkNote(id="a")).wait_durable(timeout=5)
        assert sorted(p.name for p in work.iterdir()) == [], (
            "journal files in the working directory"
        )
    finally:
        store.close(timeout=0)
