"""A domain event kind belongs to one class, and outbox entries name the class.

Two classes of one kind (a `Completed` in billing and one in sessions) would
both be named `<collection>.completed`, and an outbox entry of one could be read
back as the other: the second is refused when it is defined. The same class
defined again (a reload, a test run twice) replaces the first. An outbox entry
carries its class's topic (`module:qualname`) beside its kind; entries written
before topics were still read back by their kind.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

import statekeep
from statekeep._emit import decode
from statekeep.events import domain_class

from ._support import outbox, outbox_events
from .models import Session, SessionCompleted

COMPLETED = """
import statekeep

class TopicsCompleted(statekeep.Event):
    minutes: int = 0
"""


def define(code: str, module: str) -> dict[str, Any]:
    """Runs code as the body of a module named module (that has no file)."""
    namespace: dict[str, Any] = {"__name__": module}
    exec(compile(code, f"<{module}>", "exec"), namespace)
    return namespace


def test_a_second_class_of_a_kind_is_refused_naming_both() -> None:
    define(COMPLETED, "topics_billing")
    with pytest.raises(statekeep.ConfigurationError) as refused:
        define(COMPLETED, "topics_sessions")
    message = str(refused.value)
    assert "topics_sessions:TopicsCompleted" in message
    assert "topics_billing:TopicsCompleted" in message
    assert "'topics_completed'" in message
    first = domain_class("topics_completed")
    assert first is not None and first.__module__ == "topics_billing"


def test_a_second_class_of_a_kind_given_with_kind_is_refused() -> None:
    code = "import statekeep\nclass Paid(statekeep.Event):\n    kind = 'topics_paid'\n"
    define(code, "topics_shop")
    with pytest.raises(statekeep.ConfigurationError, match="topics_shop:Paid"):
        define(code.replace("Paid(", "Settled("), "topics_shop")


def test_the_same_class_defined_again_replaces_it() -> None:
    code = COMPLETED.replace("TopicsCompleted", "TopicsReloaded")
    first = define(code, "topics_reloaded")["TopicsReloaded"]
    again = define(code, "topics_reloaded")["TopicsReloaded"]
    assert again is not first
    assert domain_class("topics_reloaded") is again
    assert domain_class("topics_reloaded", "topics_reloaded:TopicsReloaded") is again


def test_a_class_made_in_a_function_called_twice_is_defined_again() -> None:
    def make() -> type[statekeep.Event]:
        class TopicsMade(statekeep.Event):
            n: int = 0

        return TopicsMade

    first, second = make(), make()
    assert domain_class("topics_made") is second is not first


def test_an_outbox_entry_carries_its_class_topic(outbox_store: statekeep.Store) -> None:
    store = outbox_store
    session = Session(id="s")
    session.record(SessionCompleted(minutes=3))
    store.save(session)
    entries = [json.loads(body) for _, body in outbox(store)]
    assert [(e["kind"], e.get("topic")) for e in entries] == [
        ("created", None),  # a lifecycle event: its kind and collection name its class
        ("session_completed", f"{SessionCompleted.__module__}:SessionCompleted"),
    ]
    assert [type(e) for e in outbox_events(store)][1] is SessionCompleted


def test_an_entry_written_before_topics_is_read_back_by_its_kind() -> None:
    body = (
        '{"kind":"session_completed","event":{"event_id":"0old","at":"2026-01-01T00:00:00Z",'
        '"collection":"session","entity_id":"s","version":2,"minutes":42}}'
    )
    event = decode(body)
    assert isinstance(event, SessionCompleted)
    assert (event.name, event.minutes) == ("session.session_completed", 42)


def test_an_entry_is_read_back_as_the_class_of_its_topic_first() -> None:
    topic = f"{SessionCompleted.__module__}:SessionCompleted"
    entry = {
        "kind": "what_it_was_called",
        "topic": topic,
        "event": {"collection": "session", "entity_id": "s", "version": 2, "minutes": 1},
    }
    assert type(decode(json.dumps(entry))) is SessionCompleted
    # a topic this process does not know (a class since moved, a script's
    # __main__): its kind
    entry = {**entry, "kind": "session_completed", "topic": "__main__:SessionCompleted"}
    assert type(decode(json.dumps(entry))) is SessionCompleted
