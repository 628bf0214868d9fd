"""statekeep[web]'s packaging: the wheel carries the Datastar browser client
from npm (hatch_build.py copies it at build time), with its licence, and that
client speaks the protocol of the pinned server SDK, datastar-py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
from datastar_py import consts

ROOT = Path(__file__).resolve().parents[2]
CLIENT = "@starfederation/datastar"
CLIENT_PIN = "1.0.0-beta.11"
SDK_PIN = "0.5.0"
IN_WHEEL = "statekeep/web/static/"
# The events datastar-py 0.5.0 sends; 0.6 and later send `datastar-patch-*` instead.
EVENTS = (
    "datastar-merge-signals",
    "datastar-merge-fragments",
    "datastar-remove-signals",
    "datastar-remove-fragments",
)


def build(kind: str, source: Path, into: Path, env: dict[str, str] | None = None) -> Path:
    """Builds `source`'s wheel or sdist with hatchling, as pip would, without pip."""
    code = f"import sys; from hatchling.build import build_{kind}; print(build_{kind}(sys.argv[1]))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(into)],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return into / done.stdout.strip().splitlines()[-1]


def without_npm() -> dict[str, str]:
    """The environment with a PATH on which there is no npm."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    assert shutil.which("npm", path=env["PATH"]) is None
    return env


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel and an sdist of statekeep as it stands, built once."""
    into = tmp_path_factory.mktemp("dist")
    build("wheel", ROOT, into)
    build("sdist", ROOT, into)
    return into


@pytest.fixture(scope="module")
def bundle(dist: Path) -> str:
    with zipfile.ZipFile(next(dist.glob("*.whl"))) as wheel:
        return wheel.read(f"{IN_WHEEL}datastar.js").decode()


def test_the_wheel_carries_the_client_from_npm_and_its_licence(dist: Path) -> None:
    with zipfile.ZipFile(next(dist.glob("*.whl"))) as wheel:
        carried = wheel.read(f"{IN_WHEEL}datastar.js")
        licence = wheel.read(f"{IN_WHEEL}datastar.LICENSE.txt").decode()
    from_npm = ROOT / "node_modules" / CLIENT / "dist" / "datastar.js"
    assert carried == from_npm.read_bytes()
    npm_meta = json.loads((from_npm.parents[1] / "package.json").read_text())
    assert npm_meta["license"] == "MIT"
    assert f"Package: {CLIENT}\n" in licence
    assert f"Version: {CLIENT_PIN}\n" in licence
    assert "License: MIT\n" in licence
    assert f"npm: https://www.npmjs.com/package/{CLIENT}/v/{CLIENT_PIN}\n" in licence


def test_every_event_the_server_sdk_sends_is_named_in_the_packaged_client(bundle: str) -> None:
    assert f"Datastar v{CLIENT_PIN}" in bundle
    sent = {event.value for event in consts.EventType}
    assert set(EVENTS) <= sent
    assert sorted(event for event in sent if event not in bundle) == []


def test_the_client_and_the_server_sdk_are_pinned_together() -> None:
    package = json.loads((ROOT / "package.json").read_text())
    assert package["dependencies"] == {CLIENT: CLIENT_PIN}  # exactly: no ^ or ~
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert lock["packages"][f"node_modules/{CLIENT}"]["version"] == CLIENT_PIN
    assert version("datastar-py") == SDK_PIN
    web = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert f"datastar-py=={SDK_PIN}" in web["web"]
    assert consts.VERSION == CLIENT_PIN  # the client release the SDK was generated for


def test_a_wheel_built_from_the_sdist_needs_neither_npm_nor_package_json(
    dist: Path, tmp_path: Path
) -> None:
    with tarfile.open(next(dist.glob("*.tar.gz"))) as sdist:
        names = sdist.getnames()
        sdist.extractall(tmp_path, filter="data")
    top = names[0].split("/")[0]
    assert f"{top}/package.json" not in names
    assert f"{top}/package-lock.json" not in names
    assert not any("/node_modules/" in name for name in names)
    wheel = build("wheel", tmp_path / top, tmp_path, env=without_npm())
    with zipfile.ZipFile(wheel) as built, zipfile.ZipFile(next(dist.glob("*.whl"))) as first:
        for name in ("datastar.js", "datastar.LICENSE.txt"):
            assert built.read(IN_WHEEL + name) == first.read(IN_WHEEL + name)


def test_a_build_that_needs_npm_without_it_says_so(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "hatch_build.py", "README.md", "package.json"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "package-lock.json", tmp_path / "package-lock.json")
    (tmp_path / "src" / "statekeep").mkdir(parents=True)
    (tmp_path / "src" / "statekeep" / "__init__.py").write_text("")
    code = "import sys; from hatchling.build import build_wheel; build_wheel(sys.argv[1])"
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        cwd=tmp_path,
        env=without_npm(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "building statekeep needs npm" in done.stderr
    assert not (tmp_path / "node_modules").exists()
