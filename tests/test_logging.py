"""Structured logging: every log record statekeep makes carries one extra
attribute, `statekeep`, a dict of plain JSON values whose "event" names what
happened ("events.handler_failed"), on the logger of its layer (statekeep,
statekeep.flow, statekeep.metrics, statekeep.writebehind, statekeep.events,
statekeep.postgresql, statekeep.state).

Each layer is made to log by a real situation; then the source is read with
`ast`, so that a log call added without that shape fails here."""

from __future__ import annotations

import ast
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import statekeep
from statekeep.flow import Debounce, Handle
from statekeep.metrics import TICKER
from statekeep.metrics._ticker import Ticker
from statekeep.state import AppState

SRC = Path(__file__).resolve().parents[1] / "src" / "statekeep"
LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}


class LogNote(statekeep.Entity, collection="log_note"):
    text: str = ""


class Draft(BaseModel):
    title: str = "Draft"


class HandlerError(Exception):
    pass


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every statekeep logger, from DEBUG up."""
    caplog.set_level(logging.DEBUG, logger="statekeep")
    yield caplog


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'log.db'}"


def logged(caplog: pytest.LogCaptureFixture, logger: str, event: str) -> list[dict[str, Any]]:
    """The `statekeep` dicts of the records of that event on that logger,
    each checked to be JSON (and to come back from it unchanged)."""
    found = []
    for record in caplog.records:
        fields = getattr(record, "statekeep", None)
        if record.name == logger and isinstance(fields, dict) and fields["event"] == event:
            assert json.loads(json.dumps(fields, allow_nan=False)) == fields
            found.append(fields)
    return found


def wait_logged(
    caplog: pytest.LogCaptureFixture, logger: str, event: str, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """logged(), waited for: a record another thread makes."""
    deadline = time.monotonic() + timeout
    while not (found := logged(caplog, logger, event)):
        if time.monotonic() > deadline:
            seen = [(r.name, getattr(r, "statekeep", None)) for r in caplog.records]
            raise AssertionError(f"no {event} on {logger} in {timeout} s; logged: {seen}")
        time.sleep(0.01)
    return found


# -- statekeep.events ------------------------------------------------------------------


def test_a_raising_handler_and_a_raising_on_error_callback(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    def failing(event: statekeep.Event) -> None:
        raise HandlerError(f"cannot handle {event.name}")

    def report(*failure: object) -> None:
        raise RuntimeError("the report failed")

    with statekeep.open(url) as store:
        store.on(LogNote, failing)
        store.bus.on_error.append(report)
        store.save(LogNote(id="a"))

    (failed,) = logged(caplog, "statekeep.events", "events.handler_failed")
    event_id = failed.pop("event_id")
    assert isinstance(event_id, str) and event_id
    assert failed == {
        "event": "events.handler_failed",
        "handler": failing.__qualname__,
        "event_name": "log_note.created",
        "collection": "log_note",
        "entity_id": "a",
        "version": 1,
        "error_type": "HandlerError",
        "error": "cannot handle log_note.created",
    }
    (callback,) = logged(caplog, "statekeep.events", "events.on_error_failed")
    assert callback == {
        "event": "events.on_error_failed",
        "callback": report.__qualname__,
        "handler": failing.__qualname__,
        "event_name": "log_note.created",
        "event_id": event_id,
        "error_type": "RuntimeError",
        "error": "the report failed",
    }


# -- statekeep.writebehind -------------------------------------------------------------


def test_a_raising_on_event_callback_on_a_dead_letter(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    def on_event(name: str, info: dict[str, Any]) -> None:
        raise RuntimeError(f"on_event failed on {name}")

    with statekeep.open(url, writebehind={"window": 0.01, "on_event": on_event}) as store:
        store.save(LogNote(id="x"))
        stale = store.enqueue(LogNote(id="x", text="stale"), expect_version=7)
        with pytest.raises(statekeep.ConflictError):
            stale.wait_stored(10)
        (failed,) = wait_logged(caplog, "statekeep.writebehind", "writebehind.on_event_failed")
    assert failed == {
        "event": "writebehind.on_event_failed",
        "on_event": "dead_letter",
        "info": {
            "collection": "log_note",
            "id": "x",
            "error": "log_note 'x': expected version 7, stored 1",
        },
        "error_type": "RuntimeError",
        "error": "on_event failed on dead_letter",
    }


def test_a_handler_stopping_on_the_write_behind_thread(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    def stop(event: statekeep.Event) -> None:
        raise KeyboardInterrupt("stop")

    with statekeep.open(url, writebehind={"window": 0.01}) as store:
        store.on(LogNote, stop)
        assert store.enqueue(LogNote(id="k")).wait_stored(10)
        (stopped,) = wait_logged(caplog, "statekeep.writebehind", "writebehind.handler_stopped")
    assert stopped == {
        "event": "writebehind.handler_stopped",
        "writes": 1,
        "error_type": "KeyboardInterrupt",
        "error": "stop",
    }


def test_a_store_opened_off_the_main_thread(
    url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules["statekeep.writebehind._shutdown"], "_warned", False)
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)  # none installed by a store before
    errors: list[BaseException] = []

    def open_and_close() -> None:
        try:
            statekeep.open(url).close()
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    try:
        thread = threading.Thread(target=open_and_close, name="opener")
        thread.start()
        thread.join(30)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert not errors
    assert logged(caplog, "statekeep.writebehind", "writebehind.no_sigterm_handler") == [
        {"event": "writebehind.no_sigterm_handler", "thread": "opener"}
    ]


# -- statekeep.metrics -----------------------------------------------------------------


def test_an_alert_raised(url: str, caplog: pytest.LogCaptureFixture) -> None:
    with statekeep.open(url) as store:
        meter = store._core.meter
        TICKER.remove(meter)  # ticked here
        store.save(LogNote(id="d"))
        with pytest.raises(statekeep.ConflictError):
            store.enqueue(LogNote(id="d"), expect_version=7).wait_stored(10)
        meter.registry.turn()
        snapshot = meter.registry.snapshot(names=meter.alerts.reads, windows=(10,))
        assert [f.alert for _, f in meter.alerts.evaluate(snapshot, time.monotonic())] == [
            "dead_letters"
        ]
    (raised,) = logged(caplog, "statekeep.metrics", "metrics.alert_raised")
    since = raised.pop("since")
    assert isinstance(since, str) and since[:2] == "20"  # ISO 8601
    assert raised == {
        "event": "metrics.alert_raised",
        "alert": "dead_letters",
        "subject": "",
        "value": 1.0,
        "threshold": 0,
        "severity": "critical",
        "message": "1 writes are in the dead-letter list (store.writebehind.dead_letters())",
    }


def test_a_failing_tick(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def tick(self, now: float) -> None:
            raise RuntimeError("no tick")

        def __repr__(self) -> str:
            return "<Broken>"

    ticker, member = Ticker(interval=0.01), Broken()
    ticker.add(member)
    try:
        (failed, *_) = wait_logged(caplog, "statekeep.metrics", "metrics.tick_failed")
    finally:
        ticker.remove(member)
    assert failed == {
        "event": "metrics.tick_failed",
        "member": "<Broken>",
        "error_type": "RuntimeError",
        "error": "no tick",
    }


# -- statekeep -------------------------------------------------------------------------


def test_close_waiting_for_a_call_of_another_thread(
    url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys.modules["statekeep.store"], "_CLOSE_WAIT", 0.1)
    store = statekeep.open(url)
    inside, leave = threading.Event(), threading.Event()

    def handler(event: statekeep.Event) -> None:  # runs inside the writer's save()
        inside.set()
        leave.wait(10)

    errors: list[BaseException] = []

    def writer() -> None:
        try:
            store.save(LogNote(id="w"))  # committed before its handler runs
        except BaseException as exc:  # noqa: BLE001 - checked below
            errors.append(exc)

    store.on(LogNote, handler)
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert inside.wait(10)
        store.close()
    finally:
        leave.set()
        thread.join(10)
    assert not errors
    waited = logged(caplog, "statekeep", "close.calls_waited")
    assert waited and waited[0] == {"event": "close.calls_waited", "timeout": 0.1, "threads": 1}


# -- statekeep.flow --------------------------------------------------------------------


def test_a_debounced_call_and_a_done_callback_that_raise(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def save(value: int) -> int:
        raise ValueError(f"cannot save {value}")

    def done(handle: Handle[int]) -> None:
        raise RuntimeError("the done callback failed")

    debounced = Debounce(save, wait=60, name="saver")
    try:
        handle = debounced(7)
        handle.add_done_callback(done)
        debounced.flush()
        assert isinstance(handle.exception(0), ValueError)
    finally:
        debounced.close()
    assert logged(caplog, "statekeep.flow", "flow.call_failed") == [
        {
            "event": "flow.call_failed",
            "kind": "debounce",
            "flow": "saver",
            "error_type": "ValueError",
            "error": "cannot save 7",
        }
    ]
    assert logged(caplog, "statekeep.flow", "flow.done_callback_failed") == [
        {
            "event": "flow.done_callback_failed",
            "error_type": "RuntimeError",
            "error": "the done callback failed",
        }
    ]


# -- statekeep.state -------------------------------------------------------------------


def test_a_state_callback_that_raises(caplog: pytest.LogCaptureFixture) -> None:
    def broken(old: Any, new: Any) -> None:
        raise RuntimeError(f"broken at {new}")

    with AppState(Draft(), name="editor", frame=0, max_frame=0) as state:
        subscription = state.subscribe("title", broken)
        state.set("title", "One")
    (failed,) = logged(caplog, "statekeep.state", "state.subscription_failed")
    assert failed == {
        "event": "state.subscription_failed",
        "state": "editor",
        "part": "callback",
        "subscription": failed["subscription"],
        "failures": 1,
        "error_type": "RuntimeError",
        "error": "broken at One",
    }
    assert "title" in failed["subscription"] and subscription.failed == 1


# -- every log call --------------------------------------------------------------------


def log_calls(path: Path) -> Iterator[tuple[str, int, str, ast.Call]]:
    """(logger name, line, method, call) of each call of a logging method on a
    name the module binds to logging.getLogger(...)."""
    tree = ast.parse(path.read_text(), str(path))
    loggers: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            getter = (isinstance(func, ast.Attribute) and func.attr == "getLogger") or (
                isinstance(func, ast.Name) and func.id == "getLogger"
            )
            if getter:
                (arg,) = node.value.args
                assert isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                for target in node.targets:
                    assert isinstance(target, ast.Name)
                    loggers[target.id] = arg.value
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LEVELS | {"log"}
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in loggers
        ):
            yield loggers[node.func.value.id], node.lineno, node.func.attr, node


def event_of(call: ast.Call) -> str | None:
    """The "event" of the call's extra={"statekeep": {"event": ..., ...}}, or None."""
    extra = next((k.value for k in call.keywords if k.arg == "extra"), None)
    if not isinstance(extra, ast.Dict) or len(extra.keys) != 1:
        return None
    (key,), (fields,) = extra.keys, extra.values
    if not (isinstance(key, ast.Constant) and key.value == "statekeep"):
        return None
    if not isinstance(fields, ast.Dict):
        return None
    named: dict[object, ast.expr] = {}
    for name, value in zip(fields.keys, fields.values, strict=True):
        if not isinstance(name, ast.Constant):  # a **spread or a computed key: each field named
            return None
        named[name.value] = value
    event = named.get("event")
    if isinstance(event, ast.Constant) and isinstance(event.value, str):
        return event.value
    return None


def test_every_log_call_is_structured() -> None:
    calls = [(path, *call) for path in sorted(SRC.rglob("*.py")) for call in log_calls(path)]
    assert len(calls) > 30  # the scan sees them
    wrong = []
    for path, logger, line, method, call in calls:
        where = f"{path.relative_to(SRC.parent)}:{line} {logger}.{method}"
        event = event_of(call)
        if event is None:
            wrong.append(f'{where}: no extra={{"statekeep": {{"event": "...", ...}}}}')
            continue
        layer = logger.removeprefix("statekeep").removeprefix(".")
        prefix, _, name = event.partition(".")
        if not name or not all(p.isidentifier() and p.islower() for p in event.split(".")):
            wrong.append(f"{where}: event {event!r} is not a dotted lower-case name")
        elif layer and prefix != layer:
            wrong.append(f"{where}: event {event!r} of logger {logger} does not start {layer}.")
    assert not wrong, "\n".join(wrong)


def test_the_scan_refuses_a_log_call_without_its_event(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import logging\n"
        'log = logging.getLogger("statekeep.state")\n'
        'log.warning("plain %s", 1)\n'
        'log.info("other", extra={"statekeep": {"state": "x"}})\n'
        'log.error("good", extra={"statekeep": {"event": "state.failed", "state": "x"}})\n'
    )
    found: dict[int, str | None] = {line: event_of(call) for _, line, _, call in log_calls(module)}
    assert found == {3: None, 4: None, 5: "state.failed"}


def test_every_event_is_in_the_docs() -> None:
    doc = (SRC.parents[1] / "docs" / "metrics.md").read_text()
    events = {event_of(call) for path in sorted(SRC.rglob("*.py")) for *_, call in log_calls(path)}
    missing = sorted(e for e in events if e is not None and f"| `{e}` |" not in doc)
    assert not missing, f"docs/metrics.md's logging table lacks {missing}"


QUIET = """
import statekeep
from statekeep.metrics import AlertRule

rule = AlertRule("always", "always {value}", lambda s: {"": 2.0}, above=1)
with statekeep.open("memory://", alerts=[rule]) as store:
    meter = store._core.meter
    meter.tick(0.0)
    assert [f.alert for f in store.alerts()] == ["always"]
"""


def test_the_library_prints_nothing_where_the_application_set_no_logging() -> None:
    """A library's records go where the application sends them: with no
    handler configured, a raised alert (a WARNING) prints nothing to stderr."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", QUIET], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "" and done.stdout == ""
