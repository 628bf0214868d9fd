"""`statekeep export`: a store's collections as a dump (see _dump), streamed.

Rows are read a page at a time by id (Catalog.scan), so memory stays flat
whatever the size. An export is not a snapshot: with writers running, each
row is as it was committed when its page was read (stop the writers, or
export from a copy of the file, for one moment's state).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TextIO

from ..backends.base import Catalog, CollectionInfo
from ..errors import ConfigurationError
from ..store import Store
from ._dump import Digest, end_line, header_line, row_line
from ._stores import catalog, plain

# (collection, rows done, rows expected): called as pages go by
Progress = Callable[[str, int, int], None]
PAGE = 2000


@dataclass(frozen=True, slots=True)
class Exported:
    """What an export wrote: each collection's rows and digest."""

    sums: dict[str, Digest]

    @property
    def rows(self) -> int:
        return sum(total.rows for total in self.sums.values())


def chosen(cat: Catalog, names: Sequence[str] | None) -> list[CollectionInfo]:
    """The collections named (all of them for None); ConfigurationError for a
    name the database does not hold."""
    infos = cat.collections()
    if not names:
        return infos
    by_name = {info.spec.name: info for info in infos}
    unknown = [name for name in names if name not in by_name]
    if unknown:
        held = ", ".join(sorted(by_name)) or "none"
        raise ConfigurationError(
            f"no collection {', '.join(map(repr, unknown))} in this database; it holds: {held}"
        )
    return [by_name[name] for name in dict.fromkeys(names)]


def pages_of(cat: Catalog, name: str, page: int = PAGE) -> Iterator[list[tuple[str, int, str]]]:
    """A collection's rows (id, version, body), a page at a time: in the
    backend's own order where it offers one (Catalog's optional pages), else by id."""
    own = getattr(cat, "pages", None)
    if own is not None:
        yield from own(name, page)
        return
    after = None
    while True:
        rows = cat.scan(name, after, page)
        if rows:
            yield rows
        if len(rows) < page:
            return
        after = rows[-1][0]


def select_collections(store: Store, names: Sequence[str] | None) -> list[CollectionInfo]:
    """The store's collections named (all for None or none named); ConfigurationError
    for a name it does not hold."""
    return chosen(catalog(plain(store)), names or None)


def rows_of(cat: Catalog, name: str, page: int = PAGE) -> Iterator[tuple[str, int, str]]:
    for rows in pages_of(cat, name, page):
        yield from rows


def export(
    store: Store,
    out: TextIO,
    *,
    collections: Sequence[str] | None = None,
    progress: Progress | None = None,
) -> Exported:
    """Writes the dump of store's collections (or of those named) to out."""
    store = plain(store)
    cat = catalog(store)
    infos = chosen(cat, collections)
    source = {k: v for k, v in cat.describe().items() if k in ("backend", "server", "layout")}
    out.write(header_line([(info.spec, info.rows) for info in infos], source) + "\n")
    sums: dict[str, Digest] = {}
    for info in infos:
        name, total = info.spec.name, Digest()
        sums[name] = total
        if progress is not None:
            progress(name, 0, info.rows)
        for rows in pages_of(cat, name):
            lines = [row_line(name, id, version, body) for id, version, body in rows]
            total.add_lines(lines)
            out.write("\n".join(lines) + "\n")
            if progress is not None:
                progress(name, total.rows, max(info.rows, total.rows))
        if progress is not None:
            progress(name, total.rows, total.rows)
    out.write(end_line(sums) + "\n")
    out.flush()
    return Exported(sums)
