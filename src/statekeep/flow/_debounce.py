"""Debounce: many calls in a burst, one invocation.

A call starts a period (or joins the open one). With trailing=True (the
default) the function is invoked once the calls have been quiet for `wait`
seconds, with the last call's arguments; with `max_wait`, also every
`max_wait` seconds while the calls keep coming (it never waits longer than
that after the first call it folds). With leading=True the first call of a
period invokes it at once. Every call returns the Handle of the invocation
it folds into: `handle.result()` or `await handle` gives what the function
returned (or raises what it raised); a call that folds into no invocation
(leading only, inside a period) gets the leading one's.

    wait=1: calls   | | |        |            invocations (trailing)
            t=0  0.3 0.6        2.0 ---> at 1.6 (args of 0.6), at 3.0

`Debounce(fn)` runs a trailing invocation on a thread of its own (one per
debounce and its keys); `AsyncDebounce(coro_fn)` runs them as tasks on the
event loop of its first call. `for_key(key)` gives each key (a document id,
a session) its own periods, sharing that thread or loop; idle keys beyond
`max_keys` are forgotten. `flush()` invokes what is pending now, `cancel()`
drops it (its handle is cancelled), `close()` flushes and stops.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import heapq
import inspect
import itertools
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, Self, TypeVar

from .._numbers import is_seconds, is_whole
from ..errors import ConfigurationError, FlowClosedError
from ..metrics import watch_flow
from ._clock import Clock, a_clock
from ._handle import Handle
from ._stats import FlowStats

T = TypeVar("T")
_log = logging.getLogger("statekeep.flow")


class _Period:
    """One key's open period: when it began (for max_wait), its last call,
    the arguments and handle of the pending trailing invocation."""

    __slots__ = ("args", "began", "handle", "kwargs", "last", "leading")

    def __init__(self, now: float) -> None:
        self.began = self.last = now
        self.args: tuple[Any, ...] = ()
        self.kwargs: dict[str, Any] = {}
        self.handle: Handle[Any] | None = None  # the trailing invocation, once a call folds in
        self.leading: Handle[Any] | None = None


_Fire = tuple[tuple[Any, ...], dict[str, Any], Handle[Any]]


class _Debouncing(Generic[T]):
    """What both twins share: the options, each key's period, the counts."""

    def __init__(
        self,
        fn: Callable[..., Any],
        wait: float,
        max_wait: float | None,
        leading: bool,
        trailing: bool,
        max_keys: int,
        name: str | None,
        clock: Clock | None,
        root: _Debouncing[T] | None = None,
    ) -> None:
        if root is None:
            _check(fn, wait, max_wait, leading, trailing, max_keys, name)
        self.fn, self.wait, self.max_wait = fn, float(wait), max_wait
        self.leading, self.trailing, self.max_keys = leading, trailing, max_keys
        self.name = name if name is not None else getattr(fn, "__qualname__", "debounce")
        self._root: _Debouncing[T] = root if root is not None else self
        self._period: _Period | None = None
        if root is None:
            self._clock = a_clock(clock)
            self._lock = threading.Condition()
            self._keys: collections.OrderedDict[Hashable, _Debouncing[T]] = (
                collections.OrderedDict()
            )
            self._counts = {"calls": 0, "invocations": 0, "failures": 0, "cancelled": 0}
            self._closed = False
        else:
            self._clock, self._lock = root._clock, root._lock
            self._keys, self._counts = root._keys, root._counts
        if root is None:  # a key's debounce counts into its root's figures
            watch_flow(self)  # the process-wide metrics registry reads its stats()

    # -- the period (callers hold the lock) ------------------------------------
    def _fold(
        self, now: float, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Handle[Any], bool]:
        """The handle this call folds into, and whether it invokes at once."""
        if self._root._closed:
            raise FlowClosedError(f"{self.name}: this debounce is closed")
        self._counts["calls"] += 1
        period = self._period
        if period is None:
            period = self._period = _Period(now)
            if self.leading:
                period.leading = Handle()
                return period.leading, True
        period.last = now
        if not self.trailing:
            assert period.leading is not None
            return period.leading, False
        if period.handle is None:
            period.handle = Handle()
        period.args, period.kwargs = args, kwargs
        return period.handle, False

    def _due(self) -> float | None:
        """When this key's period next needs looking at (None: no period)."""
        period = self._period
        if period is None:
            return None
        due = period.last + self.wait
        if self.max_wait is not None and period.handle is not None:
            due = min(due, period.began + self.max_wait)
        return due

    def _take(self, now: float, flush: bool = False) -> _Fire | None:
        """At or after _due(): the invocation to make now, if any; the
        period ends after a quiet wait (or a flush), and goes on after a
        max_wait invocation."""
        period = self._period
        if period is None:
            return None
        quiet = flush or now >= period.last + self.wait
        forced = (
            self.max_wait is not None
            and period.handle is not None
            and now >= period.began + self.max_wait
        )
        if not (quiet or forced):
            return None
        fire: _Fire | None = None
        if period.handle is not None:
            fire = (period.args, period.kwargs, period.handle)
            period.handle, period.args, period.kwargs = None, (), {}
        if quiet:
            self._period = None
        else:
            period.began = now
        return fire

    def _drop(self) -> Handle[Any] | None:
        period, self._period = self._period, None
        if period is None or period.handle is None:
            return None
        self._counts["cancelled"] += 1
        return period.handle

    # -- keys --------------------------------------------------------------------
    def _child(self, key: Hashable) -> _Debouncing[T]:
        try:
            hash(key)
        except TypeError as exc:
            raise ConfigurationError(f"for_key() takes a hashable key, not {key!r}") from exc
        root = self._root
        with root._lock:
            if root._closed:
                raise FlowClosedError(f"{root.name}: this debounce is closed")
            child = root._keys.get(key)
            if child is not None:
                root._keys.move_to_end(key)
                return child
            child = self._make_child(key)
            root._keys[key] = child
            if len(root._keys) > root.max_keys:
                for old in list(itertools.islice(root._keys, 0, 16)):
                    if old != key and root._keys[old]._period is None:  # idle: nothing lost
                        del root._keys[old]
                        break
            return child

    def for_key(self, key: Hashable) -> Self:
        """The debounce of key (made on first use, with these options)."""
        child = self._child(key)
        assert isinstance(child, type(self))
        return child

    def __call__(self, *args: Any, **kwargs: Any) -> Handle[T]:
        raise NotImplementedError  # each twin's

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        """On a method: a debounce per instance (keyed by the instance)."""
        if obj is None:
            return self
        return functools.partial(self.for_key(_Identity(obj)).__call__, obj)

    def _make_child(self, key: Hashable) -> _Debouncing[T]:
        root = self._root
        make: Any = type(self)  # Debounce or AsyncDebounce: the same arguments
        return make(  # type: ignore[no-any-return]
            self.fn,
            self.wait,
            self.max_wait,
            leading=self.leading,
            trailing=self.trailing,
            max_keys=self.max_keys,
            name=f"{root.name}[{key!r}]",
            _root=root,
        )

    def _family(self) -> list[_Debouncing[T]]:
        root = self._root
        return [root, *root._keys.values()]

    @property
    def pending(self) -> bool:
        """Is a trailing invocation waiting (for this key)?"""
        with self._lock:
            return self._period is not None and self._period.handle is not None

    def stats(self) -> FlowStats:
        with self._lock:
            counts = dict(self._counts)
            family = self._family()
            gauges = {
                "pending": float(sum(1 for d in family if d._period and d._period.handle)),
                "keys": float(len(self._keys)),
            }
        return FlowStats("debounce", self.name, counts, gauges)

    def _done(self, handle: Handle[Any], outcome: Any, error: BaseException | None) -> None:
        with self._lock:
            self._counts["invocations"] += 1
            if error is not None:
                self._counts["failures"] += 1
        if error is not None:
            if not isinstance(error, Exception):
                handle._cancel()
                return
            _log.warning(
                "statekeep.flow: %s raised %r",
                self.name,
                error,
                exc_info=error,
                extra={
                    "statekeep": {
                        "event": "flow.call_failed",
                        "kind": "debounce",
                        "flow": self.name,
                        "error_type": type(error).__name__,
                        "error": str(error),
                    }
                },
            )
            handle._fail(error)
        else:
            handle._set(outcome)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}: wait={self.wait:g}>"


class Debounce(_Debouncing[T]):
    """`debounced = Debounce(fn, wait=0.2)`; `handle = debounced(*args)`."""

    def __init__(
        self,
        fn: Callable[..., T],
        wait: float = 0.2,
        max_wait: float | None = None,
        *,
        leading: bool = False,
        trailing: bool = True,
        max_keys: int = 10_000,
        name: str | None = None,
        clock: Clock | None = None,
        _root: Debounce[T] | None = None,
    ) -> None:
        super().__init__(fn, wait, max_wait, leading, trailing, max_keys, name, clock, _root)
        if inspect.iscoroutinefunction(fn):
            raise ConfigurationError(
                f"Debounce takes a plain function; use AsyncDebounce for {fn!r}"
            )
        self._armed: float | None = None  # the moment booked in the heap for this key
        if _root is None:
            self._heap: list[tuple[float, int, Debounce[T]]] = []
            self._order = itertools.count()
            self._thread: threading.Thread | None = None
        else:
            self._heap, self._order = _root._heap, _root._order

    def __call__(self, *args: Any, **kwargs: Any) -> Handle[T]:
        with self._lock:
            handle, at_once = self._fold(self._clock.now(), args, kwargs)
            self._arm()
        if at_once:
            self._invoke(args, kwargs, handle)
        return handle

    def _arm(self) -> None:
        """With the lock: books a look at this key's due moment, unless an
        earlier look is booked (a call only moves the due moment later;
        that look books the next)."""
        due = self._due()
        if due is None or (self._armed is not None and self._armed <= due):
            return
        self._armed = due
        heapq.heappush(self._heap, (due, next(self._order), self))
        root = self._root
        assert isinstance(root, Debounce)
        if root._thread is None:
            root._thread = threading.Thread(
                target=root._run, name=f"statekeep-debounce {root.name}", daemon=True
            )
            root._thread.start()
        self._lock.notify()

    def _run(self) -> None:
        """The thread: invokes each key's trailing call when due."""
        heap, clock = self._heap, self._clock
        while True:
            with self._lock:
                fires: list[tuple[Debounce[T], _Fire]] = []
                while True:
                    now = clock.now()
                    while heap and heap[0][0] <= now:
                        moment, _, key = heapq.heappop(heap)
                        if key._armed != moment:
                            continue  # stale
                        key._armed = None
                        fire = key._take(now)
                        if fire is not None:
                            fires.append((key, fire))
                        key._arm()
                    if fires:
                        break
                    if self._closed and not heap:
                        self._thread = None
                        return
                    clock.wait(self._lock, heap[0][0] if heap else None)
            for key, (args, kwargs, handle) in fires:
                # on this thread, even a KeyboardInterrupt or SystemExit fn
                # raised ends only its invocation (its handle is cancelled)
                key._invoke(args, kwargs, handle, reraise=False)

    def _invoke(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        handle: Handle[Any],
        reraise: bool = True,
    ) -> None:
        try:
            outcome = self.fn(*args, **kwargs)
        except BaseException as exc:
            self._done(handle, None, exc)
            if not isinstance(exc, Exception):
                if reraise:
                    raise
                _log.error(
                    "statekeep.flow: %s raised %r; its handle is cancelled",
                    self.name,
                    exc,
                    extra={
                        "statekeep": {
                            "event": "flow.call_interrupted",
                            "kind": "debounce",
                            "flow": self.name,
                            "error_type": type(exc).__name__,
                            "error": str(exc),
                        }
                    },
                )
            return
        self._done(handle, outcome, None)

    def flush(self) -> Handle[T] | None:
        """Invokes this key's pending trailing call now (in this thread);
        its handle, or None if nothing was pending."""
        with self._lock:
            fire = self._take(self._clock.now(), flush=True)
        if fire is None:
            return None
        self._invoke(*fire)
        return fire[2]

    def cancel(self) -> None:
        """Drops this key's pending call; its handle is cancelled."""
        with self._lock:
            handle = self._drop()
        if handle is not None:
            handle._cancel()

    def close(self) -> None:
        """Invokes every key's pending call now, then stops the thread; calls
        after it raise FlowClosedError."""
        root = self._root
        assert isinstance(root, Debounce)
        with root._lock:
            if root._closed:
                return
            root._closed = True
            now = root._clock.now()
            fires = [(d, d._take(now, flush=True)) for d in root._family()]
            root._heap.clear()
            root._lock.notify_all()
            thread = root._thread
        for key, fire in fires:
            if fire is not None:
                assert isinstance(key, Debounce)
                key._invoke(*fire)
        if thread is not None and thread is not threading.current_thread():
            thread.join()


class AsyncDebounce(_Debouncing[T]):
    """Debounce for coroutine functions: `handle = debounced(*args)` (no
    await needed), `await handle`; invocations run as tasks on the event
    loop of the first call, and calls must come from that loop's thread."""

    def __init__(
        self,
        fn: Callable[..., Awaitable[T]],
        wait: float = 0.2,
        max_wait: float | None = None,
        *,
        leading: bool = False,
        trailing: bool = True,
        max_keys: int = 10_000,
        name: str | None = None,
        clock: Clock | None = None,
        _root: AsyncDebounce[T] | None = None,
    ) -> None:
        super().__init__(fn, wait, max_wait, leading, trailing, max_keys, name, clock, _root)
        if not inspect.iscoroutinefunction(fn):
            raise ConfigurationError(f"AsyncDebounce takes a coroutine function, not {fn!r}")
        self._timer: asyncio.Task[None] | None = None
        if _root is None:
            self._loop: asyncio.AbstractEventLoop | None = None
            self._tasks: set[asyncio.Task[Any]] = set()  # timers and invocations
            self._invocations: set[asyncio.Task[Any]] = set()
        else:
            self._tasks, self._invocations = _root._tasks, _root._invocations

    def __call__(self, *args: Any, **kwargs: Any) -> Handle[T]:
        loop = self._the_loop()
        with self._lock:
            handle, at_once = self._fold(self._clock.now(), args, kwargs)
        if at_once:
            self._invocations.add(self._spawn(loop, self._invoke(args, kwargs, handle)))
        if self._timer is None:  # it ends the period, and fires what folds in
            self._timer = self._spawn(loop, self._wait_and_fire())
        return handle

    def _the_loop(self) -> asyncio.AbstractEventLoop:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise ConfigurationError(
                f"{self.name}: an AsyncDebounce is called on an event loop"
            ) from None
        root = self._root
        assert isinstance(root, AsyncDebounce)
        if root._loop is None or root._loop.is_closed():
            root._loop = loop
        elif root._loop is not loop:
            raise ConfigurationError(f"{self.name}: this AsyncDebounce belongs to another loop")
        return loop

    def _spawn(self, loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(self._invocations.discard)
        return task

    async def _wait_and_fire(self) -> None:
        """This key's timer: sleeps until due, fires, and ends with the period."""
        try:
            while True:
                with self._lock:
                    due = self._due()
                if due is None:
                    return
                await self._clock.sleep_until_async(due)
                with self._lock:
                    fire = self._take(self._clock.now())
                if fire is not None:
                    await self._invoke(*fire)
        finally:
            self._timer = None

    async def _invoke(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], handle: Handle[Any]
    ) -> None:
        try:
            outcome = await self.fn(*args, **kwargs)
        except BaseException as exc:
            self._done(handle, None, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._done(handle, outcome, None)

    async def flush(self) -> Handle[T] | None:
        """Invokes this key's pending call now; its handle, or None."""
        with self._lock:
            fire = self._take(self._clock.now(), flush=True)
        if fire is None:
            return None
        await self._invoke(*fire)
        return fire[2]

    def cancel(self) -> None:
        with self._lock:
            handle = self._drop()
        if handle is not None:
            handle._cancel()

    async def close(self) -> None:
        """Invokes every key's pending call, waits for running invocations,
        and refuses calls after it."""
        root = self._root
        assert isinstance(root, AsyncDebounce)
        with root._lock:
            if root._closed:
                return
            root._closed = True
            now = root._clock.now()
            fires = [(d, d._take(now, flush=True)) for d in root._family()]
        for key, fire in fires:
            if fire is not None:
                assert isinstance(key, AsyncDebounce)
                await key._invoke(*fire)
        me = asyncio.current_task()
        invoking = [t for t in root._invocations if t is not me]
        await asyncio.gather(*invoking, return_exceptions=True)  # they end as they would
        timers = [t for t in root._tasks if t is not me and t not in invoking]
        for task in timers:
            task.cancel()  # nothing is left for them to fire
        await asyncio.gather(*timers, return_exceptions=True)


class _Identity:
    """A method debounce's key: its instance, by identity, held weakly (an
    id() alone could come back for a new object once the old one is gone)."""

    __slots__ = ("__weakref__", "_hash", "_ref")

    def __init__(self, obj: Any) -> None:
        self._hash = id(obj)
        try:
            self._ref: Callable[[], Any] = weakref.ref(obj)
        except TypeError:  # no weak references (slots): held strongly
            self._ref = lambda: obj

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Identity):
            return NotImplemented
        mine = self._ref()
        return mine is not None and mine is other._ref()

    def __repr__(self) -> str:
        return f"<instance {self._hash:#x}>"


def debounce(
    wait: float = 0.2,
    max_wait: float | None = None,
    *,
    leading: bool = False,
    trailing: bool = True,
    max_keys: int = 10_000,
    name: str | None = None,
    clock: Clock | None = None,
) -> Callable[[Callable[..., Any]], Any]:
    """`@debounce(wait=0.5)` on a function, coroutine function or method: a
    Debounce (an AsyncDebounce for a coroutine function)."""

    def wrap(fn: Callable[..., Any]) -> Any:
        cls = AsyncDebounce if inspect.iscoroutinefunction(fn) else Debounce
        made = cls(
            fn,
            wait,
            max_wait,
            leading=leading,
            trailing=trailing,
            max_keys=max_keys,
            name=name,
            clock=clock,
        )
        functools.update_wrapper(made, fn)
        return made

    return wrap


def _check(
    fn: Any,
    wait: Any,
    max_wait: Any,
    leading: Any,
    trailing: Any,
    max_keys: Any,
    name: Any,
) -> None:
    if not callable(fn):
        raise ConfigurationError(f"a debounce takes a callable, not {fn!r}")
    if not is_seconds(wait):
        raise ConfigurationError(f"wait must be seconds >= 0, not {wait!r}")
    if max_wait is not None and not (is_seconds(max_wait, positive=True) and max_wait >= wait):
        raise ConfigurationError(f"max_wait must be seconds >= wait ({wait!r}), not {max_wait!r}")
    for label, flag in (("leading", leading), ("trailing", trailing)):
        if not isinstance(flag, bool):
            raise ConfigurationError(f"{label} must be True or False, not {flag!r}")
    if not (leading or trailing):
        raise ConfigurationError("a debounce with neither leading nor trailing never calls")
    if not is_whole(max_keys, 1):
        raise ConfigurationError(f"max_keys must be a whole number >= 1, not {max_keys!r}")
    if name is not None and not isinstance(name, str):
        raise ConfigurationError(f"name must be a str, not {name!r}")
