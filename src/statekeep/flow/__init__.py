"""Flow control: how often, how soon, how many at once and how many times
work is tried, for threads and asyncio tasks alike.

- `Batcher` / `AsyncBatcher`: items in one at a time, batches out by size
  or age, a Handle per item, only failed items retried.
- `Throttle`: a rate (GCRA token bucket, exact first burst), a cap on calls
  in flight, cool-downs and per-key throttles.
- `Debounce` / `AsyncDebounce` / `@debounce`: a burst of calls, one
  invocation (trailing, leading, max_wait), per key if asked.
- `CircuitBreaker`: fails fast while a dependency is down, probes, closes.
- `Retry` / `Backoff`: the one retry policy statekeep uses (write-behind
  batches, durable subscriptions, backends retrying a deadlock).
- `Pipeline`: those parts composed (map, debounce, throttle, breaker, then
  batch or each), one put(), one stats(), one close().
- `FakeClock`: every part takes `clock=`, so tests run simulated time.
- `FlowStats`: what each part's `stats()` returns.

The flow package stays a leaf: it imports the standard library and
statekeep.errors only, so every layer, backends included, may use it.
"""

from ._backoff import Backoff
from ._batcher import AsyncBatcher, Batcher
from ._breaker import CircuitBreaker, CircuitState
from ._clock import Clock, FakeClock
from ._debounce import AsyncDebounce, Debounce, debounce
from ._handle import Handle
from ._pipeline import Pipeline
from ._retry import Retry
from ._stats import FlowStats, Percentiles
from ._throttle import Throttle

__all__ = [
    "AsyncBatcher",
    "AsyncDebounce",
    "Backoff",
    "Batcher",
    "CircuitBreaker",
    "CircuitState",
    "Clock",
    "Debounce",
    "FakeClock",
    "FlowStats",
    "Handle",
    "Percentiles",
    "Pipeline",
    "Retry",
    "Throttle",
    "debounce",
]
