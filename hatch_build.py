"""Puts the Datastar browser client into statekeep.web's wheel, from the npm registry.

statekeep.web serves the client itself (``statekeep/web/static/datastar.js``): a
page never loads it from a CDN at run time, and the repository holds no copy of
it. package.json pins the npm package ``@starfederation/datastar`` exactly, and
package-lock.json fixes its integrity hash; the pin must speak the same protocol
as the ``datastar-py`` pin in pyproject.toml (tests/web/test_packaging.py checks
that every event the server SDK sends is named in the bundle).

hatchling runs this hook (registered in pyproject.toml for the wheel target, and
the sdist's) before it builds a wheel, an editable install (``pip install -e``,
``make``) or an sdist:

1. If ``node_modules/@starfederation/datastar/dist/datastar.js`` is missing, is
   older than package-lock.json, or is not the locked version, it runs
   ``npm ci --ignore-scripts --no-audit --no-fund`` (an error naming npm where
   npm is absent). npm ci installs exactly what the lock says and runs no
   package's scripts.
2. It copies that file to ``src/statekeep/web/static/datastar.js`` and writes
   ``datastar.LICENSE.txt`` beside it (the package's name, version, licence and
   npm address, read from its package.json), creating ``static/`` if needed.
   Both are generated and ignored by git; a file already identical is not
   rewritten.
3. It marks both as build artifacts, so the wheel and the sdist carry them
   although .gitignore names them (hatchling leaves out ignored files by
   default). An editable install needs nothing more: it puts ``src/`` on the
   path, where the files now are.

An sdist carries the two generated files but not package.json: a wheel built
from it uses the files as they are and needs neither npm nor the network.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PACKAGE = "@starfederation/datastar"
STATIC = Path("src", "statekeep", "web", "static")
BUNDLE = "datastar.js"
LICENSE = "datastar.LICENSE.txt"
NPM_CI = ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"]


class DatastarClientHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        static = root / STATIC
        if (root / "package.json").exists():
            installed = root / "node_modules" / PACKAGE
            if _stale(root, installed):
                _npm_ci(root, self.app.display_info)
            static.mkdir(parents=True, exist_ok=True)
            _write_if_changed(static / BUNDLE, (installed / "dist" / BUNDLE).read_bytes())
            _write_if_changed(static / LICENSE, _attribution(installed).encode())
        for name in (BUNDLE, LICENSE):
            if not (static / name).is_file():
                raise RuntimeError(
                    f"{STATIC / name} is missing and there is no package.json to make it "
                    "from: build from a clone of statekeep's repository (with npm on PATH), "
                    "or from an sdist, which carries the file"
                )
        build_data["artifacts"].extend(
            f"/{(STATIC / name).as_posix()}" for name in (BUNDLE, LICENSE)
        )


def _stale(root: Path, installed: Path) -> bool:
    bundle = installed / "dist" / BUNDLE
    lock = root / "package-lock.json"
    if not bundle.is_file() or not lock.is_file():
        return True
    if bundle.stat().st_mtime < lock.stat().st_mtime:
        return True
    locked = json.loads(lock.read_text())["packages"].get(f"node_modules/{PACKAGE}", {})
    present = json.loads((installed / "package.json").read_text())
    return bool(locked.get("version") != present.get("version"))


def _npm_ci(root: Path, say: Callable[[str], None]) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            f"building statekeep needs npm, to install the Datastar browser client ({PACKAGE}, "
            "pinned in package.json) from the npm registry: install Node.js and npm "
            "(Debian: apt-get install npm), then build again"
        )
    say(f"statekeep: {' '.join(NPM_CI)} (the Datastar browser client, {PACKAGE})")
    done = subprocess.run([npm, *NPM_CI[1:]], cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(NPM_CI)}` failed with exit code {done.returncode} in {root}:\n"
            f"{done.stdout}{done.stderr}"
        )


def _attribution(installed: Path) -> str:
    meta = json.loads((installed / "package.json").read_text())
    name, version = meta["name"], meta["version"]
    lines = [
        f"{BUNDLE} is {name} {version}, the Datastar browser client,",
        f"copied unchanged from its npm package's dist/{BUNDLE} when statekeep was built.",
        "",
        f"Package: {name}",
        f"Version: {version}",
        f"License: {meta.get('license', 'not stated in its package.json')}",
    ]
    if "author" in meta:
        author = meta["author"]
        lines.append(f"Author: {author['name'] if isinstance(author, dict) else author}")
    lines.append(f"npm: https://www.npmjs.com/package/{name}/v/{version}")
    if "homepage" in meta:
        lines.append(f"Homepage: {meta['homepage']}")
    return "\n".join(lines) + "\n"


def _write_if_changed(path: Path, content: bytes) -> None:
    if not path.is_file() or path.read_bytes() != content:
        path.write_bytes(content)
