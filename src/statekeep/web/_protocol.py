"""The Datastar events statekeep.web sends, in one place.

The browser client is `@starfederation/datastar` 1.0.0-beta.11 from npm
(packaged into the wheel by hatch_build.py); it speaks the
`datastar-merge-signals` / `datastar-remove-signals` / `datastar-merge-fragments`
events, and so does datastar-py 0.5.0, which writes them here. The newer
protocol (`datastar-patch-signals` / `datastar-patch-elements`, datastar-py
0.6 and later) has no client on npm yet. Moving to it is a change to this
module and the page's attributes only: bump both pins, make `signals` call
`patch_signals` (a patch with null values removes, so `removed` paths become
nulls in the same patch), `fragments` call `patch_elements`, and rename the
page's `data-on-click` to `data-on:click` and `data-on-load` to `data-init`
(tests/web/test_packaging.py checks that the bundle knows every event name
the installed SDK can emit).
"""

from __future__ import annotations

import json
from typing import Any

from datastar_py.sse import ServerSentEventGenerator as _Sse


def signals(patch: dict[str, Any]) -> bytes:
    """Merges patch into the page's signals (nested objects merge; any other value replaces)."""
    return _Sse.merge_signals(patch).encode()


def remove_signals(paths: list[str]) -> bytes:
    """Removes these dotted signal paths from the page."""
    return _Sse.remove_signals(paths).encode()


def fragments(html: str, selector: str | None = None) -> bytes:
    """Morphs html into the page: into the element of the same id, or into selector."""
    return _Sse.merge_fragments(html, selector=selector).encode()


def read_signals(raw: bytes | str | None) -> dict[str, Any]:
    """The signals a Datastar action sent (the body of a POST, `?datastar=` of a GET);
    {} when there are none or they are not a JSON object."""
    if not raw:
        return {}
    try:
        found = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return found if isinstance(found, dict) else {}
