"""Pipeline: the flow parts composed, declared in the order items take them.

    ingest = (
        Pipeline("ingest")
        .debounce(wait=0.2, key=lambda segment: segment.session)  # the last per key
        .throttle(rate=500)                                       # at most 500/s on
        .batch(store_segments, max_size=200, max_delay=0.05,
               retry=Retry(5, retry_on=TransientBackendError))    # in batches
    )
    handle = ingest.put(segment)        # a Handle of the item's final outcome
    ingest.stats()                      # each part's FlowStats, by name
    ingest.close()                      # drains every part, first to last

Stages run in the order they were declared: `map(fn)` transforms an item,
`debounce(...)` lets only the last item of each key's burst on (the items it
drops resolve with the outcome of the one that went on), `throttle(...)`
waits for the rate (or a slot under max_concurrent), `breaker(...)` fails
items fast while the last stage's dependency is down, and the last stage,
`batch(process, ...)` or `each(fn)`, does the work. A Pipeline is sync:
its stages run on the thread of `put()`, but for what follows a debounce,
which runs on the debounce's thread when the burst ends.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

from ..errors import ConfigurationError, FlowClosedError
from ._batcher import Batcher
from ._breaker import CircuitBreaker
from ._debounce import Debounce
from ._handle import Handle
from ._stats import FlowStats
from ._throttle import Throttle

Stage = Callable[[Any], Any]  # an item -> its outcome, or a Handle of it


class Pipeline:
    """Declare the stages, then `put(item)`; see the module's docstring."""

    def __init__(self, name: str = "pipeline") -> None:
        if not isinstance(name, str):
            raise ConfigurationError(f"name must be a str, not {name!r}")
        self.name = name
        self._steps: list[tuple[str, Any]] = []  # (kind, part or function), in order
        self._parts: dict[str, Any] = {}
        self._run: Stage | None = None
        self._closed = False
        self._lock = threading.Lock()

    # -- declaring -----------------------------------------------------------------
    def _add(self, kind: str, part: Any, name: str | None) -> Pipeline:
        if self._run is not None:
            raise ConfigurationError(f"{self.name}: its last stage is declared; no stage after it")
        label = name or kind
        if label in self._parts:
            label = f"{label}{len(self._steps)}"
        self._steps.append((kind, part))
        self._parts[label] = part
        return self

    def map(self, fn: Callable[[Any], Any], *, name: str | None = None) -> Pipeline:
        """Each item becomes fn(item) (an error fails that item)."""
        if not callable(fn):
            raise ConfigurationError(f"map() takes a callable, not {fn!r}")
        return self._add("map", fn, name)

    def debounce(
        self,
        wait: float = 0.2,
        max_wait: float | None = None,
        *,
        key: Callable[[Any], Hashable] | None = None,
        max_keys: int = 10_000,
        name: str | None = None,
    ) -> Pipeline:
        """Only the last item of a burst (per key(item), if given) goes on,
        once `wait` passes without another (and at least every max_wait)."""
        if key is not None and not callable(key):
            raise ConfigurationError(f"key must be callable, not {key!r}")
        holder: list[Stage] = []  # the stages after it, known once the pipeline is complete
        part: Debounce[Any] = Debounce(
            lambda item: holder[0](item),
            wait,
            max_wait,
            max_keys=max_keys,
            name=f"{self.name} debounce",
        )
        return self._add("debounce", (part, key, holder), name)

    def throttle(self, rate: float | None = None, per: float = 1.0, **options: Any) -> Pipeline:
        """Items go on at most `rate` per `per` seconds (Throttle's options)."""
        name = options.pop("name", None)
        part = Throttle(rate, per, name=f"{self.name} throttle", **options)
        return self._add("throttle", part, name)

    def breaker(self, failure_threshold: int = 5, **options: Any) -> Pipeline:
        """While the stages after it keep failing, items fail fast with
        CircuitOpenError (CircuitBreaker's options)."""
        name = options.pop("name", None)
        part = CircuitBreaker(failure_threshold, name=f"{self.name} breaker", **options)
        return self._add("breaker", part, name)

    def batch(self, process: Callable[[list[Any]], Any], **options: Any) -> Pipeline:
        """The last stage: items in batches to process (Batcher's options)."""
        name = options.pop("name", None)
        options.setdefault("caller_runs", False)  # put() stays quick; the batcher's thread works
        part: Batcher[Any, Any] = Batcher(process, name=f"{self.name} batch", **options)
        self._add("batch", part, name)
        self._complete()
        return self

    def each(self, fn: Callable[[Any], Any], *, name: str | None = None) -> Pipeline:
        """The last stage: fn(item) for each item, in put()'s thread."""
        if not callable(fn):
            raise ConfigurationError(f"each() takes a callable, not {fn!r}")
        self._add("each", fn, name)
        self._complete()
        return self

    def _complete(self) -> None:
        """Builds the chain of stages, last to first."""
        run: Stage | None = None
        for kind, part in reversed(self._steps):
            run = _stage(kind, part, run)
        self._run = run

    # -- running -----------------------------------------------------------------------
    def put(self, item: Any) -> Handle[Any]:
        """Sends item down the pipeline: a Handle of its final outcome."""
        run = self._run
        if run is None:
            raise ConfigurationError(f"{self.name}: declare a last stage (batch or each) first")
        if self._closed:
            raise FlowClosedError(f"{self.name}: this pipeline is closed")
        outcome = Handle[Any]()
        try:
            _follow(run(item), outcome)
        except Exception as exc:  # noqa: BLE001 - the item's failure, on its handle
            outcome._fail(exc)
        return outcome

    def put_many(self, items: Any) -> list[Handle[Any]]:
        return [self.put(item) for item in items]

    def stats(self) -> dict[str, FlowStats]:
        """Each part's figures, by its name in the pipeline."""
        figures: dict[str, FlowStats] = {}
        for label, part in self._parts.items():
            part = part[0] if isinstance(part, tuple) else part
            if hasattr(part, "stats"):
                figures[label] = part.stats()
        return figures

    def table(self) -> object:
        """A rich Table: one row per part and figure."""
        from rich.table import Table

        table = Table(title=f"pipeline {self.name}")
        for column in ("part", "figure", "value"):
            table.add_column(column, justify="right" if column == "value" else "left")
        for label, stats in self.stats().items():
            for figure, value in stats.rows():
                table.add_row(label, figure, value)
        return table

    def close(self, timeout: float | None = None) -> None:
        """Drains every part, first to last (a debounce's pending items go
        on, then the batcher flushes), and refuses put() after it."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for kind, part in self._steps:
            if kind == "debounce":
                part[0].close()
            elif kind == "batch":
                part.close(timeout)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Pipeline {self.name}: {' -> '.join(kind for kind, _ in self._steps)}>"


def _stage(kind: str, part: Any, after: Stage | None) -> Stage:
    """One stage, calling `after` with what it lets on."""
    if kind == "batch":
        return part.add  # type: ignore[no-any-return]
    if kind == "each":
        return part  # type: ignore[no-any-return]
    assert after is not None
    nxt = after
    if kind == "map":
        return lambda item: nxt(part(item))
    if kind == "throttle":

        def throttled(item: Any) -> Any:
            with part:
                return nxt(item)

        return throttled
    if kind == "breaker":
        return _guarded(part, nxt)
    debounced, key, holder = part
    holder.append(nxt)
    if key is None:
        return debounced  # type: ignore[no-any-return]
    return lambda item: debounced.for_key(key(item))(item)


def _guarded(breaker: CircuitBreaker, after: Stage) -> Stage:
    """A breaker's stage: it admits the item (or fails it fast), and the
    outcome of the stages after it, when it comes, counts for or against."""

    def guarded(item: Any) -> Any:
        probe = breaker._enter()  # CircuitOpenError while open
        try:
            outcome = after(item)
        except BaseException as exc:
            breaker._exit(probe, exc)
            raise
        if not isinstance(outcome, Handle):
            breaker._exit(probe, None)
            return outcome

        def ended(handle: Handle[Any]) -> None:
            try:
                error = handle.exception(0)
            except BaseException as exc:  # noqa: BLE001 - cancelled: neither
                error = exc
            breaker._exit(probe, error)

        outcome.add_done_callback(ended)
        return outcome

    return guarded


def _follow(outcome: Any, into: Handle[Any]) -> None:
    """Settles `into` with outcome, following Handles to the value."""
    if not isinstance(outcome, Handle):
        into._set(outcome)
        return

    def done(handle: Handle[Any]) -> None:
        try:
            value = handle.result(0)
        except BaseException as exc:  # noqa: BLE001 - the item's failure, on its handle
            into._fail(exc)
            return
        _follow(value, into)

    outcome.add_done_callback(done)
