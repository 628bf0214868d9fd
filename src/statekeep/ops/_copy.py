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

from ..errors import DumpError
from ..store import Store
from ._dump import Checksum
from ._export import Progress, chosen, rows_of
from ._import import Imported, Loader, Mode
from ._stores import catalog


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

    progress reports the copy, verify the reading back."""
    infos = chosen(catalog(source), collections)
    loader = Loader(
        target,
        {info.spec.name: info.spec for info in infos},
        mode,
        expected={info.spec.name: info.rows for info in infos},
        progress=progress,
        canonical=True,
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
    return Copied(loader.result, _verify(target, loader.result, verify))


def _verify(target: Store, done: Imported, verify: Progress | None) -> dict[str, Checksum]:
    cat = catalog(target)
    found: dict[str, Checksum] = {}
    for name, expected in done.sums.items():
        total = found[name] = Checksum()  # expected is one too: canonical=True
        for id, version, body in rows_of(cat, name):
            total.add(id, version, body)
            if verify is not None and total.rows % 10_000 == 0:
                verify(name, total.rows, expected.rows)
        if verify is not None:
            verify(name, total.rows, expected.rows)
        if (total.rows, total.hex) != (expected.rows, expected.hex):
            raise DumpError(
                f"{name}: the target holds {total.rows} rows (checksum {total.hex}), the "
                f"source gave {expected.rows} (checksum {expected.hex}): a writer changed "
                "one of them during the copy, or a row did not survive the trip"
            )
    return found
