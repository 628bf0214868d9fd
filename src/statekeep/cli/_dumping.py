"""`statekeep export`, `import` and `copy`: moving a store's data."""

from __future__ import annotations

import gzip
import io
import itertools
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO, TextIO, cast

import click

from ._console import SETTINGS, Progress, err_console, progress_bars

if TYPE_CHECKING:
    from rich.console import Console

    from ..ops import Imported, Mode


_GZIP = b"\x1f\x8b"


@contextmanager
def _reading(path: str | None) -> Iterator[TextIO]:
    """A dump's lines from a file or stdin, gzip or not (told by its first
    bytes), as UTF-8 with or without a byte order mark."""
    from ..errors import ConfigurationError, DumpError

    try:
        raw: BinaryIO = sys.stdin.buffer if path in (None, "-") else open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise ConfigurationError(f"cannot open {path}: {exc.strerror or exc}") from exc
    buffered = cast(io.BufferedReader, raw if hasattr(raw, "peek") else io.BufferedReader(raw))
    if buffered.peek(2)[:2] == _GZIP:
        buffered = io.BufferedReader(gzip.GzipFile(fileobj=buffered))
    text = io.TextIOWrapper(buffered, encoding="utf-8-sig", newline="\n")
    try:
        yield text
    except UnicodeDecodeError as exc:
        raise DumpError(
            f"the dump is not UTF-8 text ({exc.reason} at byte {exc.start} of a read); "
            "a dump is what statekeep export wrote, plain or gzip"
        ) from exc
    except (OSError, EOFError) as exc:  # a gzip stream that is cut or corrupted
        raise DumpError(f"the dump cannot be read: {exc}") from exc
    finally:
        if path in (None, "-"):
            text.detach()
        else:
            text.close()
            raw.close()  # a GzipFile does not close the file it was given


@contextmanager
def _writing(path: str | None) -> Iterator[TextIO]:
    """stdout, or a file (gzip for a name ending .gz) written beside it and
    put in its place only once the dump is whole: a failed export leaves an
    existing file as it was."""
    if path is None or path == "-":
        wrapped = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="\n")
        try:
            yield wrapped
        finally:
            wrapped.flush()
            wrapped.detach()
        return
    from ..errors import ConfigurationError

    partial = f"{path}.partial"
    try:
        if path.endswith(".gz"):
            file = cast(TextIO, gzip.open(partial, "wt", encoding="utf-8", newline="\n"))  # noqa: SIM115
        else:
            file = cast(TextIO, open(partial, "w", encoding="utf-8", newline="\n"))  # noqa: SIM115
    except OSError as exc:
        raise ConfigurationError(f"cannot open {path} to write: {exc.strerror or exc}") from exc
    try:
        with file:
            yield file
    except BaseException:
        os.unlink(partial)
        raise
    os.replace(partial, path)


_COLLECTION = click.option(
    "--collection",
    "-c",
    "collections",
    multiple=True,
    help="Only this collection (repeat for more; default: all).",
)


@click.command(context_settings=SETTINGS)
@click.argument("url")
@_COLLECTION
@click.option("--output", "-o", help="Write to this file (.gz: compressed) instead of stdout.")
def export(url: str, collections: tuple[str, ...], output: str | None) -> int:
    """Write a store's collections as a dump (JSON Lines) to stdout.

    Streams in bounded memory, with versions; the last line carries each
    collection's row count and checksum, so an import can tell a whole dump.

    \b
    Example: statekeep export sqlite:///app.db > app.jsonl
    """
    from ..ops import export as write
    from ..ops import open_existing

    with (
        open_existing(url) as store,
        progress_bars("exporting") as progress,
        _writing(output) as out,
    ):
        done = write(store, out, collections=collections or None, progress=progress)
    err_console().print(f"exported {done.rows:,} rows of {len(done.sums)} collection(s)")
    return 0


@click.command("import", context_settings=SETTINGS)
@click.argument("url")
@click.option("--input", "-i", "source", help="Read this file (.gz: compressed), not stdin.")
@click.option("--resume", is_flag=True, help="Go on with an import that stopped half-way.")
@click.option("--merge", is_flag=True, help="Into a store that has rows: the newer version wins.")
def import_(url: str, source: str | None, resume: bool, merge: bool) -> int:
    """Store a dump (from statekeep export) into a store, versions kept.

    The target's collections must be empty, unless --merge or --resume. Atomic
    per chunk: an import cut short keeps what it committed; run it again with
    --resume to go on.

    \b
    Example: statekeep import postgresql://localhost/app < app.jsonl
    """
    from ..errors import DumpError
    from ..ops import import_dump, open_quietly, read_header

    if resume and merge:
        raise click.UsageError("--resume or --merge, not both")
    mode: Mode = "resume" if resume else "merge" if merge else "new"
    with _reading(source) as lines:
        first = lines.readline()  # a dump that is not one opens (and makes) no database
        if not first:
            raise DumpError("the dump is empty: no header line")
        read_header(first)
        _lasting(url)
        with open_quietly(url) as store, progress_bars("importing") as progress:
            dump = itertools.chain([first], lines)
            done = import_dump(store, dump, mode=mode, progress=progress)
    _summary("imported", done)
    if not done.complete:
        err_console().print(
            "[red]the dump ended before its end line[/]: it was cut short. What it held "
            "is stored; import the whole dump again with --resume."
        )
        return 1
    return 0


def _summary(verb: str, done: Imported) -> None:
    parts = [f"{verb} {done.rows:,} rows"]
    skipped, kept = sum(done.skipped.values()), sum(done.kept.values())
    if skipped:
        parts.append(f"skipped {skipped:,} stored already")
    if kept:
        parts.append(f"kept {kept:,} newer in the target")
    err_console().print(", ".join(parts) + f" ({len(done.sums)} collection(s))")


@click.command(context_settings=SETTINGS)
@click.argument("source")
@click.argument("target")
@_COLLECTION
@click.option("--merge", is_flag=True, help="Into a store that has rows: the newer version wins.")
def copy(source: str, target: str, collections: tuple[str, ...], merge: bool) -> int:
    """Copy a store's collections into another store, then verify them.

    The target is read back: its row counts and checksums must equal the
    source's. The target's collections must be empty unless --merge.

    \b
    Example: statekeep copy sqlite:///app.db postgresql://localhost/app
    """
    from rich.table import Table

    from ..ops import copy as move
    from ..ops import open_existing, open_quietly, select_collections

    _lasting(target)
    with open_existing(source) as origin:
        select_collections(origin, collections)  # an unknown name: before the target is made
        with open_quietly(target) as into, progress_bars("copying") as progress:
            done = move(
                origin,
                into,
                collections=collections or None,
                mode="merge" if merge else "new",
                progress=progress,
                verify=None if progress is None else _checking(progress),
            )
    table = Table(title=f"copied {done.rows:,} rows", title_justify="left")
    for name in ("collection", "rows", "checksum", "verified"):
        table.add_column(name)
    for name, total in done.imported.sums.items():
        check = "-" if done.verified is None else "yes"
        table.add_row(name, f"{total.rows:,}", total.hex[:16], check)
    _stdout().print(table)
    return 0


def _stdout() -> Console:
    from rich.console import Console

    return Console()


def _lasting(url: str) -> None:
    """A store the data goes into must outlive the command."""
    from ..errors import ConfigurationError
    from ..ops import outlives

    if not outlives(url):
        raise ConfigurationError(
            f"{url} lives only as long as this command: the rows would be gone when it "
            "ends (from Python, statekeep.ops can fill a store you keep open)"
        )


def _checking(progress: Progress) -> Progress:
    return lambda name, done, total: progress(f"{name} (verifying)", done, total)


COMMANDS = (export, import_, copy)
