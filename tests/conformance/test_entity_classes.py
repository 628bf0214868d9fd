"""What an entity class may be called and hold, checked when it is defined.

A collection belongs to one class, with names compared the same way on every
backend (without case: SQLite folds it, PostgreSQL does not), unless a class
says shared=True. Field names that would hide an entity class's own API are
refused. Each test also checks that the store it runs on is untouched and that
classes it was allowed to define work there.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated, Any, ClassVar, cast

import pytest

import statekeep
from statekeep import ConfigurationError, Entity, Indexed

Check = Callable[[], None]


def define(source: str, module: str, **names: Any) -> dict[str, Any]:
    """Runs source as the body of a module of that name (not imported: no file)."""
    namespace: dict[str, Any] = {
        "__name__": module,
        "Entity": Entity,
        "Indexed": Indexed,
        "Annotated": Annotated,
        **names,
    }
    exec(compile(source, module, "exec", dont_inherit=True), namespace)
    return namespace


# -- collection name collisions ---------------------------------------------


def test_two_classes_of_one_name_in_different_modules_are_refused(
    store: statekeep.Store, assert_unchanged: Check
) -> None:
    first = define("class LoginSession(Entity):\n    user: str = ''\n", "app_auth")["LoginSession"]
    with pytest.raises(ConfigurationError) as raised:
        define("class LoginSession(Entity):\n    track: str = ''\n", "app_audio")
    message = str(raised.value)
    assert (
        "app_auth.LoginSession" in message
        and "'login_session'" in message
        and "shared=True" in message
    )
    store.save(first(id="s", user="ann"))  # the first class still owns the collection
    assert store.get(first, "s").user == "ann"
    assert_unchanged()


def test_class_names_that_make_one_collection_name_are_refused(
    store: statekeep.Store, assert_unchanged: Check
) -> None:
    log = define("class HTTPLog(Entity):\n    path: str = ''\n", "app_web")["HTTPLog"]
    with pytest.raises(ConfigurationError):  # both are http_log
        define("class HttpLog(Entity):\n    path: str = ''\n", "app_web")
    store.save(log(id="l", path="/"))
    assert store.get(log, "l").path == "/"
    assert_unchanged()


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("class Mixed(Entity, collection='Mixed'):", "class Other(Entity, collection='mixed'):"),
        ("class Mixed(Entity, collection='Mixed'):", "class Other(Entity, collection='MIXED'):"),
        ("class Plain(Entity):", "class Other(Entity, collection='PLAIN'):"),
    ],
    ids=["Mixed and mixed", "Mixed and MIXED", "plain and PLAIN"],
)
def test_collection_names_that_differ_only_in_case_are_one_name(
    store: statekeep.Store, assert_unchanged: Check, one: str, other: str
) -> None:
    """Refused even with shared=True: SQLite would put both in one table, PostgreSQL in two."""
    cls = next(iter(_classes(define(f"{one}\n    n: int = 0\n", "app_case_one"))))
    for shared in ("", ", shared=True"):
        with pytest.raises(ConfigurationError):
            define(f"{other[:-2]}{shared}):\n    n: int = 0\n", "app_case_other")
    store.save(cls(id="x", n=1))
    assert [cast(Any, e).n for e in store.find(cls)] == [1]  # a class made at run time
    assert_unchanged()


def _classes(namespace: dict[str, Any]) -> Iterator[type[Entity]]:
    return (
        value
        for value in namespace.values()
        if isinstance(value, type) and issubclass(value, Entity) and value is not Entity
    )


def test_shared_true_declares_one_collection_on_purpose(
    store: statekeep.Store, assert_unchanged: Check
) -> None:
    full = define(
        "class Ticket(Entity):\n    title: Annotated[str, Indexed()] = ''\n    body: str = ''\n",
        "app_tickets",
    )["Ticket"]
    view = define(
        "class TicketTitle(Entity, collection='ticket', shared=True):\n"
        "    model_config = {'extra': 'ignore'}\n"
        "    title: Annotated[str, Indexed()] = ''\n",
        "app_reports",
    )["TicketTitle"]
    store.save(full(id="t1", title="printer", body="on fire"))
    assert store.get(view, "t1").title == "printer"
    assert [t.id for t in store.find(view, title="printer")] == ["t1"]
    assert store.count(full) == store.count(view) == 1
    with pytest.raises(ConfigurationError):  # a third class without shared=True is still refused
        define("class Ticket(Entity):\n    title: str = ''\n", "app_other")
    assert_unchanged()


def test_the_same_class_defined_again_replaces_it(
    store: statekeep.Store, assert_unchanged: Check
) -> None:
    """A class made in a function called twice, or a module executed again."""
    for n in range(3):

        class Repeated(Entity):
            n: int = 0

        store.save(Repeated(id=f"r{n}", n=n))
        define("class Again(Entity):\n    n: int = 0\n", "app_again")
    assert store.count(Repeated) == 3
    assert_unchanged()


@pytest.fixture(scope="module")
def module_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp_path = tmp_path_factory.mktemp("models")
    path = tmp_path / "sk_reloaded_models.py"
    path.write_text(
        "from statekeep import Entity\n\nclass ReloadedThing(Entity):\n    n: int = 0\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield path
    sys.path.remove(str(tmp_path))
    for name in ("sk_reloaded_models", "sk_reloaded_as_script"):
        sys.modules.pop(name, None)


def test_a_reloaded_module_and_a_module_run_under_two_names(
    store: statekeep.Store, assert_unchanged: Check, module_file: Path
) -> None:
    """importlib.reload, and `python -m app.models` importing app.models: the same file."""
    module = importlib.import_module("sk_reloaded_models")
    importlib.reload(module)
    spec = importlib.util.spec_from_file_location("sk_reloaded_as_script", module_file)
    assert spec is not None and spec.loader is not None
    twin = importlib.util.module_from_spec(spec)
    sys.modules["sk_reloaded_as_script"] = twin
    spec.loader.exec_module(twin)
    store.save(twin.ReloadedThing(id="x", n=2))
    assert store.get(module.ReloadedThing, "x").n == 2
    assert_unchanged()


def test_a_subclass_has_a_collection_of_its_own(
    store: statekeep.Store, assert_unchanged: Check
) -> None:
    base = define("class Animal(Entity):\n    name: str = ''\n", "app_zoo")["Animal"]
    cat = define("class Cat(Animal):\n    lives: int = 9\n", "app_zoo_cats", Animal=base)["Cat"]
    assert (base.__statekeep__.spec.name, cat.__statekeep__.spec.name) == ("animal", "cat")
    store.save(base(id="a", name="generic"))
    store.save(cat(id="a", name="tom"))
    assert (store.get(base, "a").name, store.get(cat, "a").name) == ("generic", "tom")
    with pytest.raises(ConfigurationError):  # the subclass may not take the base's collection
        define("class Dog(Animal, collection='animal'):\n    pass\n", "app_zoo_dogs", Animal=base)
    dog = define(
        "class Dog(Animal, collection='animal', shared=True):\n    pass\n",
        "app_zoo_dogs",
        Animal=base,
    )["Dog"]
    assert store.get(dog, "a").name == "generic"
    assert_unchanged()


def test_shared_must_be_a_bool(store: statekeep.Store, assert_unchanged: Check) -> None:
    with pytest.raises(ConfigurationError):
        define("class Unsure(Entity, shared='yes'):\n    pass\n", "app_unsure")
    assert_unchanged()


# -- reserved field names ---------------------------------------------------

RESERVED = [
    "count",
    "record",
    "find",
    "save",
    "get",
    "delete",
    "all",
    "f",
    "Created",
    "Updated",
    "Deleted",
    "model_dump",
    "model_fields",
]


@pytest.mark.parametrize("default", ["", " = 0"], ids=["required", "with a default"])
@pytest.mark.parametrize("name", RESERVED)
def test_a_field_named_like_the_entity_api_is_refused(
    store: statekeep.Store, assert_unchanged: Check, name: str, default: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        define(f"class Clash(Entity):\n    {name}: int{default}\n", "app_clash")
    assert repr(name) in str(raised.value) and "Clash" in str(raised.value)
    assert_unchanged()


@pytest.mark.parametrize(
    "field", ["id: int = 0", "id: str = 'fixed'", "version: int = 0", "version: str = ''"]
)
def test_redefining_id_or_version_is_refused(
    store: statekeep.Store, assert_unchanged: Check, field: str
) -> None:
    with pytest.raises(ConfigurationError) as raised:
        define(f"class Redefined(Entity):\n    {field}\n", "app_redefined")
    assert "statekeep's own field" in str(raised.value)
    assert_unchanged()


@pytest.mark.parametrize(
    "fields",
    [
        ["Title: Annotated[str, Indexed()] = ''", "title: Annotated[str, Indexed()] = ''"],
        ["ID: Annotated[str, Indexed()] = ''"],
        ["Version: Annotated[int, Indexed()] = 0"],
    ],
    ids=["Title and title", "ID", "Version"],
)
def test_indexed_fields_whose_names_differ_only_in_case_are_refused(
    store: statekeep.Store, assert_unchanged: Check, fields: list[str]
) -> None:
    """One column name on SQLite, two on PostgreSQL: refused on every backend alike."""
    body = "".join(f"    {field}\n" for field in fields)
    with pytest.raises(ConfigurationError):
        define(f"class CaseColumns(Entity):\n{body}", "app_columns")
    assert_unchanged()


@pytest.mark.parametrize(
    "name", ["body", "statekeep_layout", "rowid", "OID", "ctid", "xmin", "tableoid"]
)
def test_an_indexed_field_named_like_a_column_the_backends_use_is_refused(
    store: statekeep.Store, assert_unchanged: Check, name: str
) -> None:
    """statekeep_layout is the row stamp (SQLite found nothing, PostgreSQL failed);
    rowid hid SQLite's rowid from the fill trigger (rows of an older writer
    were missed); PostgreSQL's system columns cannot be added."""
    with pytest.raises(ConfigurationError) as raised:
        define(f"class Column(Entity):\n    {name}: Annotated[int, Indexed()] = 0\n", "app_col")
    assert repr(name) in str(raised.value)
    cls = define(f"class Column(Entity):\n    {name}: int = 0\n", "app_col")["Column"]
    store.save(cls(id="c", **{name: 4}))  # unindexed, it is a key of the body like any other
    assert [c.id for c in store.find(cls, **cast(dict[str, Any], {name: 4}))] == ["c"]
    assert_unchanged()


def test_fields_whose_names_differ_only_in_case_work_unindexed(
    store: statekeep.Store, assert_unchanged: Check
) -> None:
    cls = define(
        "class CasePlain(Entity):\n"
        "    Title: Annotated[str, Indexed()] = ''\n"
        "    title: str = ''\n",
        "app_columns",
    )["CasePlain"]
    store.save(cls(id="c", Title="A", title="b"))
    assert [c.id for c in store.find(cls, Title="A", title="b")] == ["c"]
    assert_unchanged()


def test_names_close_to_reserved_ones_work(store: statekeep.Store, assert_unchanged: Check) -> None:
    cls = define(
        "class Tally(Entity, collection='tally_near'):\n"
        "    model_config: ClassVar[dict] = {'extra': 'ignore'}\n"  # pydantic's own, annotated
        "    counted: Annotated[int, Indexed()] = 0\n"
        "    model_name: str = ''\n"
        "    F: int = 0\n"
        "    created: bool = False\n",
        "app_near",
        ClassVar=ClassVar,
    )["Tally"]
    store.save(cls(id="t", counted=3, model_name="m", F=1, created=True))
    loaded = store.get(cls, "t")
    assert (loaded.counted, loaded.model_name, loaded.F, loaded.created) == (3, "m", 1, True)
    assert [t.id for t in store.find(cls, counted=3)] == ["t"]
    assert_unchanged()


@pytest.mark.parametrize(
    "field",
    [
        "ratio: Annotated[float, Indexed()] = float('inf')",
        "ratio: Annotated[float | None, Indexed()] = float('nan')",
        "at: datetime = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))",
        "at: Annotated[datetime, Indexed()] = "
        "datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))",
    ],
    ids=["indexed inf", "indexed nan", "time beyond 9999 in UTC", "indexed time before year 1"],
)
def test_a_default_no_backend_can_hold_is_refused_at_class_definition(
    store: statekeep.Store, assert_unchanged: Check, field: str
) -> None:
    """Taken before: the table's triggers could not be made (SQLite: no such
    column: inf; PostgreSQL: invalid JSON), or an OverflowError escaped the
    class statement."""
    with pytest.raises(ConfigurationError):
        define(
            f"class Odd(Entity):\n    {field}\n",
            "app_odd",
            datetime=datetime,
            timezone=timezone,
            timedelta=timedelta,
        )
    assert_unchanged()


def test_an_unindexed_non_finite_default_is_allowed(store: statekeep.Store) -> None:
    cls = define(
        "class Ratio(Entity, collection='ratio_nan'):\n"
        "    ratio: float = float('nan')\n"
        "    n: Annotated[int, Indexed()] = 0\n",
        "app_ratio",
    )["Ratio"]
    store.save(cls(id="r", ratio=0.5, n=1))
    assert [r.id for r in store.find(cls, ratio=0.5)] == ["r"]
    assert [r.id for r in store.find(cls, n=1)] == ["r"]
