"""The conflict rule's memory: for each entity this engine stored lately, the
chain of its own versions (the first base, the last version it stored).

A write based on version b may be stored over the stored version s when
b == s, or when every change from b to s was this engine's own (b is in a
chain that ends at s). The flusher alone changes the chains (it reads them
without the engine's lock); the journal thread reads them under the lock."""

from __future__ import annotations

from ._write import Key, Write

LIMIT = 100_000  # entities whose chain is remembered (the least recent go first)


class Chains:
    def __init__(self) -> None:
        # in the order they were stored last (a dict keeps it): the least recent first
        self._chains: dict[Key, tuple[int, int]] = {}
        self.changes = 0  # how many times the chains changed: unchanged, effective() is too

    def allowed(self, write: Write, stored: int) -> bool:
        """May write be stored over the stored version?"""
        base = write.base
        if base is None or base == stored:
            return True
        chain = self._chains.get(write.key)
        return chain is not None and chain[0] <= base and chain[1] == stored

    def has(self, key: Key) -> bool:
        """Has this engine stored the entity lately (so its versions may be its own)?"""
        return key in self._chains

    def effective(self, write: Write) -> int | None:
        """The base a journal record of write says: the version this engine
        stored last, when every change since write's base was its own."""
        base = write.base
        if base is None:
            return None
        chain = self._chains.get(write.key)
        if chain is not None and chain[0] <= base <= chain[1]:
            return chain[1]
        return base

    def forget(self, key: Key) -> None:
        """Another writer deleted the entity: its versions start again, so a
        version this engine stored no longer says the content is its own."""
        self._chains.pop(key, None)
        self.changes += 1

    def stored(self, writes: list[Write]) -> None:
        """This engine stored each write as its version (0: deleted)."""
        chains = self._chains
        self.changes += 1
        for write in writes:
            key, version = write.key, write.version
            chain = chains.pop(key, None)  # and put back last: the most recent
            if version:
                before = version - 1
                chains[key] = (
                    (chain[0], version) if chain and chain[1] == before else (before, version)
                )
        while len(chains) > LIMIT:
            del chains[next(iter(chains))]
