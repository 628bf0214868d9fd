"""`python -m benchmarks [--quick] [--only NAME] [--output PATH]`."""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from . import (
    aio,
    dumps,
    events,
    files,
    flow,
    get,
    load,
    machine,
    memory,
    metrics,
    outbox,
    postgres,
    report,
    save,
    save_many,
    state,
    state_machines,
    web,
    writebehind,
)
from .harness import ExtraTable, Progress, Result, Sizes

# Each returns its rows of the results table, and maybe extra tables of its own.
BENCHMARKS: dict[str, Callable[[Sizes, str, Progress], Sequence[Result | ExtraTable]]] = {
    "save_many": save_many.run,
    "save": save.run,
    "get": get.run,
    "memory": memory.run,
    "writebehind": writebehind.run,
    "postgres": postgres.run,
    "files": files.run,
    "events": events.run,
    "outbox": outbox.run,
    "aio": aio.run,
    "flow": flow.run,
    "state": state.run,
    "state_machines": state_machines.run,
    "metrics": metrics.run,
    "web": web.run,
    "dumps": dumps.run,
}
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="statekeep side by side with raw sqlite3 and psycopg, SQLAlchemy and "
        "persist-queue. "
        f"A full run writes {DOCS.relative_to(DOCS.parent.parent)}; --quick and "
        "--only runs write only to an explicit --output.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument(
        "--only", action="append", choices=list(BENCHMARKS), help="run these (repeatable)"
    )
    parser.add_argument("--repeats", type=int, help="runs per contender (best is kept)")
    parser.add_argument("--output", type=Path, help="write the markdown report here")
    parser.add_argument("--no-write", action="store_true", help="write no markdown")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, console: Console | None = None) -> int:
    """Runs the benchmarks and prints the table. Returns 0 even when a target is
    missed: this is a report, and the table says what failed."""
    args = parse(argv)
    if console is None:
        console = Console()
        if not console.is_terminal:  # piped or captured: room for the table anyway
            console = Console(width=150)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.repeats:
        sizes = Sizes(**{**sizes.__dict__, "repeats": args.repeats})
    chosen = args.only or list(BENCHMARKS)
    output = args.output
    if output is None and not args.quick and not args.only:
        output = DOCS
    if args.no_write:
        output = None

    title = "Results" + (" (--quick: sizes too small to judge)" if args.quick else "")
    described = machine.describe()  # before the run: the commit that is measured
    results: list[Result] = []
    tables: list[ExtraTable] = []
    start = time.perf_counter()
    before = load.snapshot()
    with (
        tempfile.TemporaryDirectory(prefix="statekeep-bench-") as workdir,
        console.status("starting") as status,
    ):
        for name in chosen:
            for row in BENCHMARKS[name](sizes, workdir, status.update):
                if isinstance(row, ExtraTable):
                    tables.append(row)
                else:
                    results.append(row)
    elapsed = time.perf_counter() - start
    measured = load.between(before, load.snapshot())
    other_load = measured.describe()
    warning = measured.warning()
    if warning is not None:
        other_load += f". WARNING: {warning}"
    described.append(("Other load during this run", other_load))

    report.print_table(
        console,
        results,
        f"{title}, {sizes.repeats} rounds (SQLAlchemy: {sizes.slow_repeats}; "
        f"write-behind: {sizes.wb_rounds}): medians where the target says so, else best",
    )
    for table in tables:
        report.print_extra(console, table)
    failed = report.failures(results)
    console.print(
        ("[bold red]" if failed else "[green]") + report.summary(results) + "[/]",
        f"({elapsed:.0f} s)",
    )
    console.print(f"Machine load: {other_load}.")
    if warning is not None:
        console.print(f"[bold yellow]Warning: {warning}.[/]")
    if output is not None:
        text = report.markdown(results, described, sizes, title, tables)
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        console.print(f"wrote {output}")
    return 0
