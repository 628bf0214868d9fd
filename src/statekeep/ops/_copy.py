"""`statekeep copy FROM TO`: an export piped into an import, in one process.

The rows go from the source's pages straight to the target's chunks (no
text in between), then the target is read back: its row count and checksum
(see _dump) must equal the source's, collection by collection, or copy
raises DumpError. With merge, the target may hold rows of its own, so it is
checked that every copied row is there at the copied version or newer
(kept), not that the two are equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..backends.base import Catalog
from ..errors import DumpError
from ..store import Store
from ._dump import Checksum
from ._export import Progress, chosen, rows_of
from ._import import Imported, Loader, Mode
from ._stores import catalog, plain


@dataclass(frozen=True, slots=True)
class Copied:
    """What a copy did (see Imported), and the target's checksums read back
    (None with merge, which does not compare the two)."""

    imported: Imported
    verified: dict[str, Checksum] | None

    @property
    def rows(self) -> int:
        return self.imported.rows


def copy(
    source: Store,
    target: Store,
    *,
    collections: Sequence[str] | None = None,
    mode: Mode = "new",
    progress: Progress | None = None,
    verify: Progress | None = None,
) -> Copied:
    """Copies the source's collections (or those named) into target, then checks them.

    progress reports the copy, verify the reading back (of both: a source
    that changed meanwhile fails the check too)."""
    source, target = plain(source), plain(target)
    infos = chosen(catalog(source), collections)
    loader = Loader(
        target,
        {info.spec.name: info.spec for info in infos},
        mode,
        expected={info.spec.name: info.rows for info in infos},
        progress=progress,
        canonical=True,
        options="copy into empty collections, or choose merge (--merge)",
    )
    cat = catalog(source)
    for info in infos:
        name = info.spec.name
        for id, version, body in rows_of(cat, name):
            loader.add(name, id, version, body)
        loader.flush()
        if name not in loader.result.sums:  # an empty collection: made, and counted
            loader.add_empty(name)
    if mode == "merge":
        return Copied(loader.result, None)
    return Copied(loader.result, _verify(source, target, loader.result, verify))


def _verify(
    source: Store, target: Store, done: Imported, verify: Progress | None
) -> dict[str, Checksum]:
    found: dict[str, Checksum] = {}
    for name, copied in done.sums.items():
        total = found[name] = _sums(catalog(target), name, copied.rows, verify)
        now = _sums(catalog(source), name, copied.rows, None)
        if (total.rows, total.hex) == (now.rows, now.hex):
            continue
        if (total.rows, total.hex) == (copied.rows, copied.hex):
            raise DumpError(
                f"{name}: the source changed while it was copied (it now holds {now.rows} "
                f"rows, checksum {now.hex}; the target holds the {total.rows} rows read, "
                f"checksum {total.hex}): copy again with the writers stopped"
            )
        raise DumpError(
            f"{name}: the target holds {total.rows} rows (checksum {total.hex}), the source "
            f"{now.rows} (checksum {now.hex}): a writer changed the target during the copy, "
            "or a row did not survive the trip"
        )
    return found


def _sums(cat: Catalog, name: str, expected: int, verify: Progress | None) -> Checksum:
    total = Checksum()
    for id, version, body in rows_of(cat, name):
        total.add(id, version, body)
        if verify is not None and total.rows % 10_000 == 0:
            verify(name, total.rows, expected)
    if verify is not None:
        verify(name, total.rows, expected)
    return total
