"""What a type checker sees of a machine: mypy, run on a small user module,
sees an entity's state field as the machine's enum (exhaustive over its
states, the events not among them), an event as a callable that returns the
entity it is given, and refuses a state field set to a number. Once with no
configuration but --strict, once with pydantic's mypy plugin."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

USER_MODULE = '''
from typing import assert_never, reveal_type

import statekeep
from statekeep import Machine, State


class Flow(Machine):
    idle = State(initial=True)
    active = State()
    done = State(final=True)
    start = idle.to(active)
    end = (idle | active).to(done)


class Job(statekeep.Entity):
    state: Flow = Flow.idle
    size: int = 0


def label(state: Flow) -> str:
    """Exhaustive over the three states: mypy accepts assert_never."""
    if state is Flow.idle:
        return "waiting"
    if state is Flow.active:
        return "running"
    if state is Flow.done:
        return "finished"
    assert_never(state)


def label_by_match(state: Flow) -> str:
    match state:
        case Flow.idle | Flow.active:
            return "open"
        case Flow.done:
            return "closed"
        case _:
            assert_never(state)


def forgets_done(state: Flow) -> str:
    if state is Flow.idle:
        return "waiting"
    if state is Flow.active:
        return "running"
    assert_never(state)  # E: done is left


job = Job()
reveal_type(job.state)  # R: state
reveal_type(Flow.start)  # R: event
reveal_type(Flow.start(job))  # R: sent
reveal_type(job.send("end"))  # R: send
reveal_type(Flow.idle)  # R: member
moved: Job = Flow.end(job)
state: Flow = job.state
job.state = Flow.active
job.state = 3  # E: a number
'''


def run_mypy(directory: Path, cache: Path, source: str, *options: str) -> dict[int, str]:
    """mypy's output for source, by line: what it says about each."""
    module = directory / "user_module.py"
    module.write_text(textwrap.dedent(source))
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-error-summary",
            "--show-error-codes",
            "--cache-dir",
            str(cache),
            *options,
            module.name,
        ],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode in (0, 1), run.stdout + run.stderr  # 2: mypy itself failed
    said: dict[int, str] = {}
    for line in run.stdout.splitlines():
        found = re.match(r"user_module\.py:(\d+): (.*)", line)
        assert found is not None, line
        number = int(found.group(1))
        said[number] = (said.get(number, "") + "\n" + found.group(2)).strip()
    return said


def line_of(source: str, marker: str) -> int:
    (number,) = [
        n for n, line in enumerate(textwrap.dedent(source).splitlines(), 1) if marker in line
    ]
    return number


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache for the module's runs (statekeep and pydantic are read once)."""
    return tmp_path_factory.mktemp("mypy-cache")


CONFIGURATIONS = ["strict", "pydantic-plugin"]


def options_for(configuration: str, directory: Path) -> list[str]:
    """--strict and no configuration file (the project's is not the user's), or a
    configuration file of the user's with pydantic's plugin."""
    if configuration == "pydantic-plugin":
        ini = directory / "mypy.ini"
        ini.write_text("[mypy]\nstrict = True\nplugins = pydantic.mypy\n")
        return ["--config-file", str(ini)]
    return ["--config-file=", "--strict"]


@pytest.mark.parametrize("configuration", CONFIGURATIONS)
def test_mypy_sees_the_states_as_an_enum_and_events_as_callables(
    tmp_path: Path, cache: Path, configuration: str
) -> None:
    said = run_mypy(tmp_path, cache, USER_MODULE, *options_for(configuration, tmp_path))

    def at(marker: str) -> str:
        return said.pop(line_of(USER_MODULE, marker), "")

    assert at("# R: state") == 'note: Revealed type is "user_module.Flow"'
    event = at("# R: event")
    assert re.fullmatch(r'note: Revealed type is "def \[(\w+)\] \(\1\) -> \1"', event), event
    assert at("# R: sent") == 'note: Revealed type is "user_module.Job"'
    assert at("# R: send") == 'note: Revealed type is "user_module.Job"'
    assert "Literal[user_module.Flow.idle]" in at("# R: member")
    # exhaustiveness: a state left out is an error at assert_never, and only there
    left_out = at("# E: done is left")
    assert "error" in left_out and "Literal[Flow.done]" in left_out, left_out
    number = at("# E: a number")
    assert "error: Incompatible types in assignment" in number and '"Flow"' in number, number
    assert "[assignment]" in number
    assert said == {}, said  # nothing else: the machine, the match and the rest type-check


def test_mypy_accepts_an_entitys_asend(tmp_path: Path, cache: Path) -> None:
    """The typed way to await async guards and actions: entity.asend (an
    event is typed as a plain callable, so `Flow.start.asend` is not)."""
    source = """
    import statekeep
    from statekeep import Machine, State


    class Flow(Machine):
        idle = State(initial=True)
        done = State(final=True)
        start = idle.to(done)


    class Job(statekeep.Entity):
        state: Flow = Flow.idle


    async def main() -> Job:
        return await Job().asend("start")
    """
    assert run_mypy(tmp_path, cache, source, "--config-file=", "--strict") == {}


def test_mypy_accepts_one_event_from_several_states(tmp_path: Path, cache: Path) -> None:
    """`(active | idle).to(done)` is the typed spelling of one event from
    several states; `active.to(done) | idle.to(done)` runs, but a type checker
    sees two callables joined with `|` (docs/machines.md says so)."""
    source = """
    from statekeep import Machine, State


    class Flow(Machine):
        idle = State(initial=True)
        active = State()
        done = State(final=True)
        start = idle.to(active)
        stop = (active | idle).to(done)
        halt = active.to(done) | idle.to(done)  # type: ignore[operator]
    """
    assert run_mypy(tmp_path, cache, source, "--config-file=", "--strict") == {}
