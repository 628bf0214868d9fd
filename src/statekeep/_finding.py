"""A find's results, read lazily: each from the backend as it is asked for,
counted as a call in flight (StoreClosedError once the store is closing),
and the time spent reading them (not the caller's time between them) timed
into the store's metrics by collection and whether an index serves it."""

from __future__ import annotations

from collections.abc import Iterator
from time import perf_counter_ns
from typing import TYPE_CHECKING, Any

from .backends.base import Query

if TYPE_CHECKING:
    from ._core import Core
    from ._schema import EntityInfo


def results(core: Core, info: EntityInfo, query: Query) -> Iterator[Any]:
    load, calls, backend, meter = info.load, core.calls, core.backend, core.meter
    timer = meter.find(info.spec.name, query.filters) if meter.enabled else None
    clock = perf_counter_ns
    spent = 0
    try:
        start = clock()
        with calls:
            backend.ensure_collection(info.spec, create=False)
            bodies = backend.select(info.spec, query)
        while True:
            with calls:  # StoreClosedError once the store is closing
                body = next(bodies, None)
            spent += clock() - start
            if body is None:
                break
            yield load(body)
            start = clock()
    except GeneratorExit:  # the caller stopped reading: a find all the same
        if timer is not None:
            timer.record(spent)
        raise
    except BaseException as error:  # a failed find: counted, not timed (as @counted does)
        if timer is not None:
            meter.failed("find", error)
        raise
    if timer is not None:
        timer.record(spent)
