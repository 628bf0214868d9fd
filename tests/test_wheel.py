"""`python -m build` makes an sdist and, from it, a wheel (what pip does with an
sdist) that installs into a fresh virtual environment, away from the repository:
the `statekeep` command there runs the demo and inspects its database, the
package is typed (py.typed), and the postgresql, web and metrics extras resolve.

What the wheel and the sdist carry of the browser client is
tests/web/test_packaging.py's to check; this module checks that what was built
installs and runs. The build uses this virtualenv's hatchling (--no-isolation:
2 s, against 6 s to install hatchling into an isolated build environment
first). The fresh venv has no pip of its own (0.1 s to make, against 7 s with
ensurepip's): this venv's pip installs into it (`pip --python`), with the
dependencies from the index or pip's cache, and compiles nothing ahead
(--no-compile); each command then compiles what it imports, once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# What `statekeep demo` needs beyond the core: rich (the demo extra; a core dependency
# too, since the command draws with it) and statekeep.state (the state extra).
DEMO_EXTRAS = "demo,state"
OTHER_EXTRAS = ("postgresql", "web", "metrics")
# a distribution each of those extras brings
BROUGHT = {"psycopg", "starlette", "datastar-py", "prometheus-client"}
# the collections the demo writes, named for its entities' classes
COLLECTIONS = ("recording_session", "segment", "level_meter")
# what would let the fresh venv see this checkout or this virtualenv
LEAKS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
# Where pytest runs with PYTHONDONTWRITEBYTECODE, a command in the venv would compile
# every module it imports again each time (1-2 s): the venv keeps its bytecode.
RECOMPILES = ("PYTHONDONTWRITEBYTECODE",)


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, log: bool = False) -> str:
    """args' stdout (and stderr, with log); all they wrote is the failure's
    message if they exit with other than 0."""
    done = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if log else subprocess.PIPE,
        text=True,
        timeout=240,
        check=False,
    )
    said = done.stdout + (done.stderr or "")
    assert done.returncode == 0, f"{args} exited with {done.returncode}:\n{said}"
    return done.stdout


def pip(venv: Path, *args: str | Path, cwd: Path) -> str:
    """This virtualenv's pip, acting on the fresh venv."""
    python = venv / "bin" / "python"
    return run(sys.executable, "-m", "pip", "--python", python, *args, "--no-compile", cwd=cwd)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Dist:
    sdist: Path
    wheel: Path
    version: str


@dataclass(frozen=True)
class Venv:
    path: Path
    cwd: Path  # outside the repository, so that the checkout is not importable from there
    env: dict[str, str]

    def run(self, *args: str | Path) -> str:
        return run(*args, cwd=self.cwd, env=self.env)

    def statekeep(self, *args: str | Path) -> str:
        return self.run(self.path / "bin" / "statekeep", *args)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    """The sdist, and the wheel python -m build makes from it (not from the checkout)."""
    into = tmp_path_factory.mktemp("dist")
    build: list[str | Path] = [sys.executable, "-m", "build", "--no-isolation"]
    assert "Building wheel from sdist" in run(*build, "--outdir", into, ROOT, cwd=into, log=True)
    (sdist,) = into.glob("statekeep-*.tar.gz")
    (wheel,) = into.glob("statekeep-*-py3-none-any.whl")
    return Dist(sdist, wheel, wheel.name.split("-")[1])


@pytest.fixture(scope="module")
def venv(dist: Dist, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """A fresh venv (which sees neither this virtualenv's packages nor its editable
    install of src/) with the wheel and the demo's extras installed."""
    path = tmp_path_factory.mktemp("venv")
    cwd = tmp_path_factory.mktemp("work")
    assert not cwd.is_relative_to(ROOT) and not path.is_relative_to(ROOT)
    run(sys.executable, "-m", "venv", "--without-pip", "--clear", path, cwd=cwd)
    pip(path, "install", "--quiet", f"{dist.wheel}[{DEMO_EXTRAS}]", cwd=cwd)
    env = {name: value for name, value in os.environ.items() if name not in LEAKS + RECOMPILES}
    env["VIRTUAL_ENV"] = str(path)
    env["PATH"] = f"{path / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return Venv(path, cwd, env)


PROBE = """
import json, sysconfig
from importlib.metadata import files, version
import statekeep
print(json.dumps({
    "module": statekeep.__file__,
    "site": sysconfig.get_path("purelib"),
    "version": version("statekeep"),
    "files": [str(file) for file in files("statekeep") or ()],
}))
"""


def test_the_package_is_the_installed_wheel_and_is_typed(dist: Dist, venv: Venv) -> None:
    probe = json.loads(venv.run(venv.path / "bin" / "python", "-c", PROBE))
    package = Path(probe["site"]).resolve() / "statekeep"
    assert Path(probe["module"]).resolve() == package / "__init__.py"
    assert not package.is_relative_to(ROOT)
    assert probe["version"] == dist.version
    assert "statekeep/py.typed" in probe["files"]  # installed from the wheel's RECORD
    assert (package / "py.typed").is_file()


def test_the_wheel_holds_the_package_alone(dist: Dist) -> None:
    with zipfile.ZipFile(dist.wheel) as wheel:
        tops = {name.split("/")[0] for name in wheel.namelist()}
    assert tops == {"statekeep", f"statekeep-{dist.version}.dist-info"}


def test_statekeep_version_names_the_installed_version(dist: Dist, venv: Venv) -> None:
    assert dist.version in venv.statekeep("--version").split()


def test_the_extras_are_declared_and_resolve(dist: Dist, venv: Venv) -> None:
    with zipfile.ZipFile(dist.wheel) as wheel:
        metadata = wheel.read(f"statekeep-{dist.version}.dist-info/METADATA").decode()
    extras = HeaderParser().parsestr(metadata).get_all("Provides-Extra") or []
    assert set(OTHER_EXTRAS) <= set(extras)
    wanted = f"{dist.wheel}[{','.join(OTHER_EXTRAS)}]"
    report = venv.path.parent / "extras.json"
    pip(venv.path, "install", "--quiet", "--dry-run", "--report", report, wanted, cwd=venv.cwd)
    install = json.loads(report.read_text())["install"]
    assert BROUGHT - {canonical(item["metadata"]["name"]) for item in install} == set()


def test_the_demo_runs_and_statekeep_inspect_reads_its_database(venv: Venv) -> None:
    db = venv.cwd / "demo.db"
    venv.statekeep("demo", "--quick", "--path", db)
    assert db.is_file()
    url = f"sqlite:///{db}"
    out = venv.statekeep("inspect", url)
    assert [name for name in COLLECTIONS if name not in out] == []
    report = json.loads(venv.statekeep("inspect", url, "--json"))
    assert set(COLLECTIONS) - {collection["name"] for collection in report["collections"]} == set()
