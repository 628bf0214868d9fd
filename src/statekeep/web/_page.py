"""The dashboard's HTML: a page of cards whose figures are bound to signals
(`data-text="$wb.total"`), and the rows of its lists, rebuilt when a list's
length changes (the rows are bound to `$counts.3.count` and so on, so a
changed figure is a signal patch, not new HTML)."""

from __future__ import annotations

import functools
import html
import json

from ._signals import Tree

_LIST_ROWS = {
    # list -> (container id, the row's cells: (signal under the row, css class))
    "counts": ("counts-rows", (("name", ""), ("count", "num"))),
    "outbox": (
        "outbox-rows",
        (("name", ""), ("position", "num"), ("lag", "num"), ("active", ""), ("stalled", "")),
    ),
    "transitions": (
        "transitions-rows",
        (("at", ""), ("entity", "mono"), ("machine", ""), ("event", ""), ("move", "")),
    ),
    "alerts": (
        "alerts-rows",
        (("severity", "sev"), ("alert", ""), ("subject", ""), ("message", "")),
    ),
    "advice": ("advice-rows", (("title", ""), ("evidence", ""), ("change", "mono"))),
}


def page(*, title: str, csrf: str, writable: bool, login: bool, signals: Tree, base: str) -> str:
    """The whole page; the stream at {base}/events fills it (base: where the app is
    mounted; Datastar resolves an action's URL against the site's root). signals: the tree as it is
    now (Datastar's client needs every signal the page names declared up front)."""
    who = (
        '<a href="logout" class="who">signed in · sign out</a>'
        if writable and login
        else '<a href="login" class="who">read-only · sign in</a>'
        if login
        else ""
    )
    return _PAGE.format(
        title=html.escape(title),
        signals=html.escape(json.dumps({**signals, "csrf": csrf}), quote=True),
        who=who,
        lists="\n".join(_list_card(name) for name in _LIST_ROWS),
        base=html.escape(base, quote=True),
    )


def _list_card(name: str) -> str:
    container, cells = _LIST_ROWS[name]
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell, _ in cells)
    return (
        f'<section class="card wide" id="card-{name}"><h2>{_TITLES[name]}</h2>'
        f'<table><thead><tr>{head}</tr></thead><tbody id="{container}"></tbody></table>'
        f'<p class="empty" data-show="$shape.{name} == 0">none</p></section>'
    )


_TITLES = {
    "counts": "Entities",
    "outbox": "Durable subscriptions",
    "transitions": "Recent transitions",
    "alerts": "Alerts",
    "advice": "Advice",
}


@functools.lru_cache(maxsize=256)
def rows(name: str, n: int) -> str:
    """The rows of list name when it has n elements, bound to its signals."""
    container, cells = _LIST_ROWS[name]
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{css}" data-text="${name}.{i}.{cell}"></td>' for cell, css in cells)
        + "</tr>"
        for i in range(n)
    )
    return f'<tbody id="{container}">{body}</tbody>'


@functools.lru_cache(maxsize=256)
def letters(n: int, writable: bool, base: str) -> str:
    """The dead letters' rows, with a requeue button each when the page may act."""
    body = []
    for i in range(n):
        action = (
            f"<button data-on-click=\"@post('{html.escape(base, quote=True)}/actions/requeue"
            "?collection=' + "
            f"encodeURIComponent($letters.{i}.collection) + '&id=' + "
            f'encodeURIComponent($letters.{i}.id))" '
            f'class="requeue" id="requeue-{i}">requeue</button>'
            if writable
            else ""
        )
        body.append(
            f'<tr><td data-text="$letters.{i}.collection"></td>'
            f'<td class="mono" data-text="$letters.{i}.id"></td>'
            f'<td class="err" data-text="$letters.{i}.error"></td><td>{action}</td></tr>'
        )
    return f'<tbody id="letters-rows">{"".join(body)}</tbody>'


@functools.lru_cache(maxsize=256)
def machines(states: tuple[int, ...]) -> str:
    """A card per machine field: its states as bars, and its Mermaid diagram."""
    cards = []
    for m, n in enumerate(states):
        bars = "".join(
            f'<div class="bar"><span data-text="$machines.{m}.states.{s}.state"></span>'
            f"<i data-attr-style=\"'width:' + $machines.{m}.states.{s}.width\"></i>"
            f'<b data-text="$machines.{m}.states.{s}.count"></b></div>'
            for s in range(n)
        )
        cards.append(
            f'<div class="machine"><h3 data-text="$machines.{m}.name"></h3>{bars}'
            f"<details><summary>diagram (Mermaid)</summary>"
            f'<pre data-text="$machines.{m}.diagram"></pre></details></div>'
        )
    return f'<div id="machines-rows">{"".join(cards)}</div>'


def changed_rows(old: Tree | None, new: Tree, writable: bool, base: str) -> list[str]:
    """The row fragments to send when new's lists differ in length from old's."""
    before = (old or {}).get("shape", {})
    shape = new["shape"]
    found = [rows(name, shape[name]) for name in _LIST_ROWS if before.get(name) != shape[name]]
    if before.get("letters") != shape["letters"]:
        found.append(letters(shape["letters"], writable, base))
    if before.get("machines_states") != shape["machines_states"]:
        found.append(machines(tuple(shape["machines_states"])))
    return found


_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="stylesheet" href="static/statekeep.css">
<script type="module" src="static/datastar.js"></script>
</head>
<body data-signals="{signals}">
<header><h1>{title}</h1>
<span class="live" data-class-on="$connected">live</span>
<span class="pid">pid <b data-text="$pid"></b></span>{who}</header>
<main data-on-load="@post('{base}/events', {{openWhenHidden: true}})">
<section class="card" id="card-writebehind"><h2>Write-behind</h2>
<p class="big"><b id="wb-total" data-text="$wb.total">0</b> pending
<span class="health" data-text="$wb.health"></span></p>
<div class="meter"><i data-attr-style="'width:' + $wb.percent"></i></div>
<table class="kv">
<tr><th>critical</th><td id="wb-critical" data-text="$wb.pending.critical"></td>
<th>normal</th><td id="wb-normal" data-text="$wb.pending.normal"></td>
<th>low</th><td id="wb-low" data-text="$wb.pending.low"></td></tr>
<tr><th>in flight</th><td data-text="$wb.inflight"></td>
<th>oldest</th><td><span data-text="$wb.oldest"></span> s</td>
<th>db circuit</th><td data-text="$wb.database"></td></tr>
</table>
<svg class="spark" viewBox="0 0 120 30" preserveAspectRatio="none">
<polyline data-attr-points="$spark.pending"></polyline></svg>
<p class="err" data-show="$wb.error" data-text="$wb.error"></p></section>
<section class="card" id="card-throughput"><h2>Throughput</h2>
<p class="big"><b id="stored-rate" data-text="$rate.stored">0</b> stored/s</p>
<svg class="spark" viewBox="0 0 120 30" preserveAspectRatio="none">
<polyline data-attr-points="$spark.stored"></polyline></svg>
<table class="kv">
<tr><th>stored</th><td id="wb-stored" data-text="$wb.stored"></td>
<th>saves/s</th><td data-text="$rate.saves"></td></tr>
<tr><th>retried</th><td data-text="$wb.retried"></td>
<th>shed</th><td data-text="$wb.shed"></td></tr>
</table></section>
<section class="card" id="card-latency"><h2>Latency (ms, last 10 s)</h2>
<table class="kv">
<tr><th></th><th>p50</th><th>p99</th></tr>
<tr><th>enqueue</th><td data-text="$lat.enqueue.p50"></td>
<td data-text="$lat.enqueue.p99"></td></tr>
<tr><th>save</th><td data-text="$lat.save.p50"></td><td data-text="$lat.save.p99"></td></tr>
<tr><th>batch</th><td data-text="$lat.batch.p50"></td><td data-text="$lat.batch.p99"></td></tr>
</table></section>
<section class="card wide" id="card-letters"><h2>Dead letters
<b id="wb-dead" data-text="$wb.dead"></b></h2>
<table><tbody id="letters-rows"></tbody></table>
<p class="empty" data-show="$shape.letters == 0">none</p></section>
<section class="card wide" id="card-machines"><h2>State machines</h2>
<div id="machines-rows"></div>
<p class="empty" data-show="$shape.machines == 0">none</p></section>
{lists}
</main>
</body>
</html>
"""
