"""The public API is what `statekeep/__init__.py` exports: pinned here, so that
adding or removing a name is a decision someone makes, not an accident."""

from __future__ import annotations

import inspect
import re

import pytest

import statekeep
import statekeep.errors

PUBLIC = [
    "AlertRaised",
    "AlertResolved",
    "BackendError",
    "CircuitOpenError",
    "Condition",
    "ConfigurationError",
    "ConflictError",
    "Created",
    "DeadLetter",
    "DeadlockError",
    "Deleted",
    "DumpError",
    "DurableSubscription",
    "Entity",
    "Event",
    "FieldRef",
    "FlowClosedError",
    "FrozenStateError",
    "HandlerFailed",
    "Indexed",
    "Lifecycle",
    "Machine",
    "NotFoundError",
    "Ordering",
    "Policy",
    "Priority",
    "QueryError",
    "QueueFullError",
    "Receipt",
    "State",
    "StateError",
    "StatePathError",
    "StatekeepError",
    "Stats",
    "Store",
    "StoreClosedError",
    "Subscription",
    "SubscriptionInfo",
    "ThrottledError",
    "TransactionError",
    "TransientBackendError",
    "TransitionError",
    "TransitionRecord",
    "TransitionReport",
    "Transitioned",
    "UnknownFieldError",
    "Updated",
    "ValidationError",
    "WriteBehindOptions",
    "errors",
    "open",
    "use",
]

ERRORS = [
    "BackendError",
    "CircuitOpenError",
    "ConfigurationError",
    "ConflictError",
    "DeadlockError",
    "DumpError",
    "FlowClosedError",
    "FrozenStateError",
    "NotFoundError",
    "QueryError",
    "QueueFullError",
    "StateError",
    "StatePathError",
    "StatekeepError",
    "StoreClosedError",
    "ThrottledError",
    "TransactionError",
    "TransientBackendError",
    "TransitionError",
    "UnknownFieldError",
    "ValidationError",
]

# The tree drawn in the docstring of statekeep/errors.py: error -> its direct bases.
ERROR_TREE: dict[str, tuple[type[BaseException], ...]] = {
    "StatekeepError": (Exception,),
    "ConfigurationError": (statekeep.errors.StatekeepError,),
    "StoreClosedError": (statekeep.errors.StatekeepError,),
    "TransactionError": (statekeep.errors.StatekeepError,),
    "DeadlockError": (statekeep.errors.StatekeepError,),
    "NotFoundError": (statekeep.errors.StatekeepError, LookupError),
    "ConflictError": (statekeep.errors.StatekeepError,),
    "ValidationError": (statekeep.errors.StatekeepError, ValueError),
    "DumpError": (statekeep.errors.StatekeepError, ValueError),
    "QueryError": (statekeep.errors.StatekeepError, ValueError),
    "QueueFullError": (statekeep.errors.StatekeepError,),
    "ThrottledError": (statekeep.errors.StatekeepError, TimeoutError),
    "CircuitOpenError": (statekeep.errors.StatekeepError,),
    "FlowClosedError": (statekeep.errors.StatekeepError,),
    "StateError": (statekeep.errors.StatekeepError,),
    "StatePathError": (statekeep.errors.StateError, LookupError),
    "FrozenStateError": (statekeep.errors.StateError, TypeError),
    "TransitionError": (statekeep.errors.StatekeepError,),
    "UnknownFieldError": (statekeep.errors.QueryError, AttributeError),
    "BackendError": (statekeep.errors.StatekeepError,),
    "TransientBackendError": (statekeep.errors.BackendError,),
}


def _error_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in statekeep.errors (not imported into it)."""
    return {
        name: value
        for name, value in vars(statekeep.errors).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == statekeep.errors.__name__
    }


def test_all_is_pinned() -> None:
    assert statekeep.__all__ == PUBLIC


def test_all_is_sorted_without_duplicates() -> None:
    assert sorted(set(PUBLIC)) == PUBLIC


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_exists(name: str) -> None:
    assert getattr(statekeep, name, None) is not None


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from statekeep import *", namespace)
    del namespace["__builtins__"]
    assert sorted(namespace) == PUBLIC


@pytest.mark.parametrize("name", sorted(set(PUBLIC) - {"errors"}))
def test_public_names_are_statekeeps_own(name: str) -> None:
    """Nothing exported is a re-exported third-party object (pydantic, ...)."""
    module = getattr(statekeep, name).__module__
    assert module == "statekeep" or module.startswith("statekeep."), module


def test_errors_module_is_exported() -> None:
    assert statekeep.errors is statekeep.__dict__["errors"]
    assert statekeep.errors.__name__ == "statekeep.errors"


def test_errors_all_is_pinned() -> None:
    assert statekeep.errors.__all__ == ERRORS


def test_errors_all_names_every_error_class() -> None:
    assert sorted(_error_classes()) == ERRORS


@pytest.mark.parametrize("name", ERRORS)
def test_every_error_is_a_statekeep_error(name: str) -> None:
    error = getattr(statekeep.errors, name)
    assert inspect.isclass(error)
    assert issubclass(error, statekeep.errors.StatekeepError)


@pytest.mark.parametrize("name", ERRORS)
def test_every_error_is_exported_from_statekeep(name: str) -> None:
    assert name in statekeep.__all__
    assert getattr(statekeep, name) is getattr(statekeep.errors, name)


def test_error_tree_is_pinned() -> None:
    assert sorted(ERROR_TREE) == ERRORS
    found = {name: cls.__bases__ for name, cls in _error_classes().items()}
    assert found == ERROR_TREE


@pytest.mark.parametrize("name", ERRORS)
def test_every_error_is_drawn_in_the_errors_docstring(name: str) -> None:
    assert re.search(rf"\b{name}\b", statekeep.errors.__doc__ or "")


# statekeep.aio, a subpackage the docs name (docs/async.md)
AIO_ALL = ["AsyncResults", "AsyncStore", "AsyncTransaction", "open"]


def test_aio_all_is_pinned() -> None:
    import statekeep.aio

    assert statekeep.aio.__all__ == AIO_ALL
    for name in AIO_ALL:
        assert getattr(statekeep.aio, name).__module__.startswith("statekeep.aio")


# statekeep.flow, a subpackage the docs name (docs/flow.md)
FLOW_ALL = [
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


def test_flow_all_is_pinned() -> None:
    import statekeep.flow

    assert statekeep.flow.__all__ == FLOW_ALL
    for name in FLOW_ALL:
        assert getattr(statekeep.flow, name).__module__.startswith("statekeep.flow")


def test_aio_is_not_imported_by_statekeep() -> None:
    """`import statekeep` loads no asyncio facade: it is imported when asked for."""
    import subprocess
    import sys

    code = "import sys, statekeep; print('statekeep.aio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# statekeep.state, a subpackage the docs name (docs/state.md)
STATE_ALL = [
    "AppState",
    "GuardStats",
    "MemoryGuard",
    "MemoryPressure",
    "MemoryRelieved",
    "MemoryReport",
    "Node",
    "Priority",
    "StateSnapshot",
    "StateStats",
    "Subscription",
    "check_open_options",
    "memory_guard",
    "open_state",
]


def test_state_all_is_pinned() -> None:
    import statekeep.state

    assert statekeep.state.__all__ == STATE_ALL
    for name in STATE_ALL:
        assert getattr(statekeep.state, name).__module__.startswith("statekeep.")


def test_import_statekeep_does_not_import_the_state_extras() -> None:
    """`import statekeep` needs only pydantic: immutables and zstandard load
    with statekeep.state (store.state() imports it when first called)."""
    import subprocess
    import sys

    code = "import sys, statekeep; print('immutables' in sys.modules, 'zstandard' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# statekeep.web, a subpackage the docs name (docs/serving.md; the web extra)
WEB_ALL = ["app", "from_env", "live", "serve"]


def test_web_all_is_pinned() -> None:
    import statekeep.web

    assert statekeep.web.__all__ == WEB_ALL
    for name in WEB_ALL:
        assert getattr(statekeep.web, name).__module__.startswith("statekeep.web")


def test_import_statekeep_does_not_import_the_web_extra() -> None:
    """`import statekeep` loads neither statekeep.web nor starlette or uvicorn."""
    import subprocess
    import sys

    code = (
        "import sys, statekeep; "
        "print(*(m in sys.modules for m in ('statekeep.web', 'starlette', 'uvicorn')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False", "False"]
