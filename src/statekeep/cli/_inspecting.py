"""`statekeep inspect`, `dead-letters` and `bench`: looking into a store."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from ._console import SETTINGS, age, size

if TYPE_CHECKING:
    from rich.console import Console

    from ..ops import Inspection, Letter


def _out() -> Console:
    from rich.console import Console

    return Console()


@click.command(context_settings=SETTINGS)
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print plain JSON, for scripts.")
def inspect(url: str, as_json: bool) -> int:
    """Show what a database holds and what waits on it.

    Collections (rows, indexed columns, size), write-behind journals (pending
    writes by priority, the oldest one's age, dead letters), the outbox and each
    durable subscription's lag. Reads only: nothing is stored or taken over.

    \b
    Example: statekeep inspect sqlite:///app.db --json
    """
    from ..ops import inspect as read
    from ..ops import open_existing

    with open_existing(url) as store:
        found = read(store)
    if as_json:
        click.echo(json.dumps(found.to_dict(), indent=2, default=str))
    else:
        _show(found, _out())
    return 0


def _show(found: Inspection, console: Console) -> None:
    from rich.table import Table

    db = found.database
    console.print(
        f"[bold]{found.url}[/]  {db.get('backend')} {db.get('server') or ''}  "
        f"size {size(db.get('bytes'))}  layout {db.get('layout')}"
    )
    table = Table(title="collections", title_justify="left")
    for name, justify in (("name", "left"), ("rows", "right"), ("size", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    table.add_column("indexed columns")
    table.add_column("state")
    for info in found.collections:
        indexes = ", ".join(f"{i.name} ({i.kind})" for i in info.spec.indexes) or "-"
        state = "ready" if info.ready else "[yellow]filling[/]"
        table.add_row(info.spec.name, f"{info.rows:,}", size(info.bytes), indexes, state)
    console.print(table)
    if found.journals:
        journals = Table(title="write-behind journals", title_justify="left")
        for name in ("directory", "held", "CRITICAL", "NORMAL", "LOW", "oldest", "dead letters"):
            journals.add_column(name)
        for journal in found.journals:
            journals.add_row(
                str(journal.directory),
                "running" if journal.held else "free",
                *(f"{journal.pending.get(p, 0):,}" for p in ("CRITICAL", "NORMAL", "LOW")),
                age(journal.oldest_age),
                f"{len(journal.dead_letters):,}",
            )
        console.print(journals)
    else:
        console.print("write-behind journals: none")
    capped = "+" if found.outbox_capped else ""
    console.print(f"outbox: {found.outbox_events:,}{capped} events kept")
    if found.subscriptions:
        subs = Table(title="durable subscriptions", title_justify="left")
        for name in ("name", "position", "lag", "state", "consumer", "advanced"):
            subs.add_column(name)
        for lagging in found.subscriptions:
            sub = lagging.info
            state = "stalled" if sub.stalled else "behind" if sub.behind else "caught up"
            moved = "never" if sub.advanced_at is None else sub.advanced_at.isoformat()
            holder = "running" if sub.active else "not running"
            subs.add_row(sub.name, str(sub.position), f"{lagging.lag:,}", state, holder, moved)
        console.print(subs)


@click.group("dead-letters", context_settings=SETTINGS, invoke_without_command=True)
@click.argument("url")
@click.pass_context
def dead_letters(ctx: click.Context, url: str) -> int:
    """List, show, requeue or drop dead-lettered write-behind writes.

    Without an action: list. Requeue and drop ask first (--yes does not), and
    refuse a journal that a running store holds.

    \b
    Examples:
      statekeep dead-letters sqlite:///app.db list
      statekeep dead-letters sqlite:///app.db show 3fa2c1d0
      statekeep dead-letters sqlite:///app.db requeue --all --yes
    """
    ctx.obj = url
    if ctx.invoked_subcommand is None:
        return _list(url)
    return 0


def _letters(url: str) -> list[Letter]:
    from ..ops import dead_letters as read
    from ..ops import open_existing

    with open_existing(url) as store:
        return read(store)


@dead_letters.command("list", context_settings=SETTINGS)
@click.pass_obj
def list_letters(url: str) -> int:
    """List the dead letters: id, collection, entity id, error.

    \b
    Example: statekeep dead-letters sqlite:///app.db list
    """
    return _list(url)


def _list(url: str) -> int:
    from rich.table import Table

    letters = _letters(url)
    console = _out()
    if not letters:
        console.print("no dead letters")
        return 0
    table = Table(title=f"{len(letters)} dead letters", title_justify="left")
    for name in ("id", "collection", "entity", "write", "error", "journal"):
        table.add_column(name, overflow="fold")
    for one in letters:
        letter = one.letter
        journal = f"{one.directory.name}{' (running)' if one.held else ''}"
        write = "delete" if letter.delete else "save"
        table.add_row(one.id, letter.collection, letter.id, write, letter.error, journal)
    console.print(table)
    return 0


@dead_letters.command(context_settings=SETTINGS)
@click.argument("id")
@click.pass_obj
def show(url: str, id: str) -> int:
    """Show one dead letter in full: its error and the write as journaled.

    \b
    Example: statekeep dead-letters sqlite:///app.db show 3fa2c1d0
    """
    from ..ops import pick

    (one,) = pick(_letters(url), [id])
    record = dict(one.letter.journal_record)
    shown: dict[str, Any] = {
        "id": one.id,
        "collection": one.letter.collection,
        "entity": one.letter.id,
        "write": "delete" if one.letter.delete else "save",
        "error": one.letter.error,
        "journal": str(one.directory),
        "record": record,
    }
    click.echo(json.dumps(shown, indent=2, default=str))
    return 0


def _chosen(url: str, ids: tuple[str, ...], every: bool) -> list[Letter]:
    from ..ops import pick

    if bool(ids) == every:
        raise click.UsageError("name the dead letters by id, or give --all (not both)")
    letters = _letters(url)
    return letters if every else pick(letters, ids)


def _declined(what: str, chosen: list[Letter], yes: bool) -> int | None:
    """The exit code if there is nothing to do (0) or the answer was no (1)."""
    if not chosen:
        click.echo("no dead letters")
        return 0
    if not yes and not click.confirm(f"{what} {len(chosen)} dead letter(s)?", err=True):
        click.echo("statekeep dead-letters: nothing done, as answered", err=True)
        return 1
    return None


@dead_letters.command(context_settings=SETTINGS)
@click.argument("ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every dead letter.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@click.pass_obj
def requeue(url: str, ids: tuple[str, ...], every: bool, yes: bool) -> int:
    """Store dead-lettered writes again, over whatever is stored now.

    \b
    Example: statekeep dead-letters sqlite:///app.db requeue 3fa2c1d0 --yes
    """
    from ..ops import requeue as again

    chosen = _chosen(url, ids, every)
    declined = _declined("requeue", chosen, yes)
    if declined is not None:
        return declined
    failed = 0
    for one, error in again(url, chosen):
        if error is None:
            click.echo(f"{one.id} {one.letter.collection}/{one.letter.id}: stored")
        else:
            failed += 1
            failure = f"{type(error).__name__}: {error}"
            click.echo(f"{one.id} {one.letter.collection}/{one.letter.id}: failed again: {failure}")
    return 1 if failed else 0


@dead_letters.command(context_settings=SETTINGS)
@click.argument("ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Every dead letter.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask.")
@click.pass_obj
def drop(url: str, ids: tuple[str, ...], every: bool, yes: bool) -> int:
    """Give dead-lettered writes up for good: they are never stored.

    \b
    Example: statekeep dead-letters sqlite:///app.db drop --all
    """
    from ..ops import drop as give_up

    chosen = _chosen(url, ids, every)
    declined = _declined("drop", chosen, yes)
    if declined is not None:
        return declined
    give_up(chosen)
    click.echo(f"dropped {len(chosen)} dead letter(s)")
    return 0


@click.command(context_settings=SETTINGS)
@click.option("--quick", is_flag=True, help="A short run (about 10 s) instead of about a minute.")
@click.option("--json", "as_json", is_flag=True, help="Print plain JSON, for scripts.")
def bench(quick: bool, as_json: bool) -> int:
    """Benchmark the installed statekeep on this machine against raw sqlite3.

    Prints a table to paste into a bug report: items, time, memory and the
    ratio to the raw driver doing the same work.

    \b
    Example: statekeep bench --quick
    """
    from ..ops import bench_table, run_bench
    from ._console import progress_bars

    with progress_bars("measuring", single=True) as progress:
        report = run_bench(quick=quick, progress=progress)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        _out().print(bench_table(report))
    return 0


COMMANDS = (inspect, dead_letters, bench)
