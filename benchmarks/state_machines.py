"""statekeep.machines beside transitions and python-statemachine.

Every timed part runs in rounds (the contenders interleaved, who goes first
rotating, each on fresh objects and files made untimed, after a full garbage
collection: harness.rounds); the median round is judged, the best beside it.
The extra table after the results notes the machine's other load during each
part.

1. An in-memory transition with one guard and one action: a cycle of three
   states (a -> b -> c -> a, one event `step` from each), sent round and
   round to one object; the guard reads a bool field, the action increments
   a counter field. The targets are judged on the same kind of object for
   all three: a plain object (the only kind transitions can move; its class
   declares `state: Cycle`). statekeep: `Cycle.send(obj, "step")` (guard:
   the attribute's name, action: a method doing `self.bumps += 1`);
   transitions: `Machine(model=obj, ..., auto_transitions=False)` with
   `conditions=` and `after=` names, `obj.step()`; python-statemachine: a
   StateMachine subclass bound with `model=obj` (`cond=`, `after=` names),
   `sm.send("step")`. Costs are per call above the same loop calling a
   plain function. Targets: >= 10x faster than transitions, >= 100x faster
   than python-statemachine. Beside them: `Cycle.step(obj)`, and
   `entity.send("step")` on an Entity, which also records the move for its
   next save to announce, and whose action's `self.bumps += 1` is validated
   by pydantic (about a microsecond of its own); and, for reference, a
   transition written by hand on the same entity (a dict from state to
   state, the guard, the action, the field set).
2. Memory and creation of Sizes.machine_entities objects bound to a
   machine, each contender in a child process of its own: the growth of its
   RSS (after a full collection) and, for the statekeep entities,
   tracemalloc's count of a second set made the same way (exact). Target:
   an Entity with a machine field takes <= 100 bytes more than the same
   class with a plain str field (tracemalloc). Beside it the same entities
   after one `entity.send` each (the transition is recorded until the next
   save), against the str-field entities moved by hand (the field assigned,
   the action called). transitions: one Machine with every object added (`Machine(model=
   None)` then `add_model`, the way its documentation gives for many
   models), and a Machine per object; python-statemachine: a
   `StateMachine(model=obj)` per object (it has no other way); both against
   a plain object with the same fields. The time to make them all is the
   median of the rounds in the child (one round for the slow ones).
3. A stored transition: `store.send(entity, "flip")` (sent and saved in one
   transaction) against setting the same field (`entity.state =
   Switch.on`) and `store.save(entity)`, Sizes.machine_stored entities read
   from a SQLite file (WAL) untimed, a commit each; the machine has no guard
   or action, so both store the same change. Target: overhead <= 15%
   (the median of the rounds' paired ratios).
4. `store.transition_many(Lamp, "flip", state=Switch.off)` of
   Sizes.machine_entities entities in a SQLite file, against reading them
   (`list(store.find(...))`) and a loop of `entity.send` + `store.save` (a
   commit each); beside it the same loop in one `store.transaction()` and
   by hand: `entity.send` each, one `store.save_many`. No target: the
   speedup is reported.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import psutil  # type: ignore[import-untyped]

import statekeep
from statekeep.machines import Machine, State

from . import load
from .harness import (
    CallCosts,
    Cleanup,
    ExtraTable,
    Progress,
    Result,
    Run,
    Sizes,
    Trial,
    micros,
    remove_db,
    rounds,
)

FASTER_THAN_TRANSITIONS = 10.0  # target: an in-memory send this many times cheaper
FASTER_THAN_PSM = 100.0  # ... than python-statemachine's
MOST_BYTES = 100  # target: bytes a machine field adds to an entity
MOST_OVERHEAD = 0.15  # target: store.send's time over store.save's of the same change


# -- the machines and entities --------------------------------------------------------


class Cycle(Machine):
    """Parts 1 and 2: three states in a ring, one guarded event with an action."""

    a = State(initial=True)
    b, c = State(), State()
    # one event from each state; `|` of two .to()s is what State.to's annotation
    # (a callable, see statekeep.machines._define) does not tell a type checker
    step = (
        a.to(b, cond="ready", after="bump")  # type: ignore[operator]
        | b.to(c, cond="ready", after="bump")
        | c.to(a, cond="ready", after="bump")
    )


class Job(statekeep.Entity, collection="bench_machine_job"):
    state: Cycle = Cycle.a
    ready: bool = True
    bumps: int = 0

    def bump(self) -> None:
        self.bumps += 1


class PlainJob(statekeep.Entity, collection="bench_machine_plain_job"):
    """Job with a plain str field where Job has its machine."""

    state: str = "a"
    ready: bool = True
    bumps: int = 0

    def bump(self) -> None:
        self.bumps += 1


class Switch(Machine):
    """Parts 3 and 4: no guard, no action, so a send stores what an assignment does."""

    off = State(initial=True)
    on = State()
    flip = off.to(on)
    flop = on.to(off)


class Lamp(statekeep.Entity, collection="bench_machine_lamp"):
    state: Switch = Switch.off
    title: str = ""
    priority: int = 0
    tags: list[str]


def _lamps(n: int) -> list[Lamp]:
    return [
        Lamp(title=f"lamp number {i} in the east wing", priority=i % 5, tags=["hall", "east"])
        for i in range(n)
    ]


class ModelObject:
    """The plain object transitions and python-statemachine move (their model);
    statekeep moves the same class, through its `state: Cycle` annotation
    (transitions and python-statemachine set `state` themselves)."""

    state: Cycle = Cycle.a

    def __init__(self) -> None:
        self.ready = True
        self.bumps = 0

    def bump(self) -> None:
        self.bumps += 1


_STATES = ("a", "b", "c")
_RING = (("a", "b"), ("b", "c"), ("c", "a"))


def _transitions_machine(model: object) -> Any:
    """transitions' Machine for the ring; model None: one to add models to."""
    import transitions

    return transitions.Machine(
        model=model,
        states=list(_STATES),
        initial="a",
        transitions=[
            {"trigger": "step", "source": s, "dest": d, "conditions": "ready", "after": "bump"}
            for s, d in _RING
        ],
        auto_transitions=False,
    )


_psm: list[Any] = []


def _psm_class() -> Any:
    """python-statemachine's StateMachine subclass for the ring (made once)."""
    if not _psm:
        from statemachine import State as PsmState
        from statemachine import StateMachine

        class PsmCycle(StateMachine):
            a = PsmState(initial=True)
            b = PsmState()
            c = PsmState()
            step = (
                a.to(b, cond="ready", after="bump")
                | b.to(c, cond="ready", after="bump")
                | c.to(a, cond="ready", after="bump")
            )

        _psm.append(PsmCycle)
    return _psm[0]


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in ("transitions", "python-statemachine"):
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:  # pragma: no cover - the bench extra installs both
            found.append(f"{name} (not installed)")
    return ", ".join(found)


def run(sizes: Sizes, workdir: str, progress: Progress) -> list[Result | ExtraTable]:
    parts: tuple[tuple[str, Callable[[], list[Result]]], ...] = (
        ("1. in-memory transition", lambda: _in_memory(sizes, progress)),
        ("2. memory per entity", lambda: _memory(sizes, workdir, progress)),
        ("3. store.send vs store.save", lambda: _stored(sizes, workdir, progress)),
        ("4. transition_many", lambda: _many(sizes, workdir, progress)),
    )
    results: list[Result | ExtraTable] = []
    loads: list[tuple[str, load.Load]] = []
    first = load.snapshot()
    for name, part in parts:
        before = load.snapshot()
        results += part()
        loads.append((name, load.between(before, load.snapshot())))
    loads.append(("all of statekeep.machines", load.between(first, load.snapshot())))
    results.append(
        load.load_table(
            "statekeep.machines: the machine's other load during each part",
            loads,
            "Part 2 runs in child processes: their CPU counts as this process's.",
        )
    )
    return results


def _nothing(*args: object) -> None:
    return None


# -- 1. in-memory transition ------------------------------------------------------------

SK_SEND = "statekeep Cycle.send(obj, 'step') on the same plain object"
SK_EVENT = "statekeep Cycle.step(obj) on the same plain object"
SK_ENTITY = "statekeep entity.send('step') on an Entity (move recorded, action validated)"
TR_STEP = "transitions obj.step() (Machine(model=obj), conditions=, after=)"
PSM_SEND = "python-statemachine sm.send('step') (StateMachine(model=obj), cond=, after=)"
BY_HAND = "by hand on the same entity: a dict from state to state, guard, action, field set"
PLAIN = "a plain call (the loop's own cost)"


def _in_memory(sizes: Sizes, progress: Progress) -> list[Result]:
    n = sizes.machine_sends
    # the others are 2-30x slower: fewer calls, the same time each round
    calls = {
        SK_SEND: n,
        SK_EVENT: n,
        SK_ENTITY: n // 2,
        TR_STEP: n // 4,
        PSM_SEND: n // 40,
        BY_HAND: n,
        PLAIN: n,
    }
    ends = (Cycle.a, Cycle.b, Cycle.c)

    def statekeep_trial() -> tuple[Run, Cleanup]:
        model: Any = ModelObject()
        count, send = calls[SK_SEND], Cycle.send

        def run() -> None:
            for _ in range(count):
                send(model, "step")

        def cleanup() -> None:
            assert model.bumps == count and model.state is ends[count % 3], model.state

        return run, cleanup

    def event_trial() -> tuple[Run, Cleanup]:
        model: Any = ModelObject()
        count, step = calls[SK_EVENT], cast(Any, Cycle).step  # an event joined with |

        def run() -> None:
            for _ in range(count):
                step(model)

        def cleanup() -> None:
            assert model.bumps == count and model.state is ends[count % 3], model.state

        return run, cleanup

    def entity_trial() -> tuple[Run, Cleanup]:
        job, count = Job(), calls[SK_ENTITY]
        send = job.send

        def run() -> None:
            for _ in range(count):
                send("step")

        def cleanup() -> None:
            assert job.bumps == count and job.state is ends[count % 3], job

        return run, cleanup

    def by_hand_trial() -> tuple[Run, Cleanup]:
        job, count = Job(), calls[BY_HAND]
        ring = {Cycle.a: Cycle.b, Cycle.b: Cycle.c, Cycle.c: Cycle.a}

        def run() -> None:
            for _ in range(count):
                # read each time: a validated assignment (the action's) replaces __dict__
                fields = job.__dict__
                if fields["ready"]:
                    fields["state"] = ring[fields["state"]]
                    job.bump()

        def cleanup() -> None:
            assert job.bumps == count and job.state is ends[count % 3], job

        return run, cleanup

    def transitions_trial() -> tuple[Run, Cleanup]:
        model: Any = ModelObject()
        count = calls[TR_STEP]
        _transitions_machine(model)
        step = model.step

        def run() -> None:
            for _ in range(count):
                step()

        def cleanup() -> None:
            assert model.bumps == count and model.state == _STATES[count % 3], model.state

        return run, cleanup

    def psm_trial() -> tuple[Run, Cleanup]:
        model: Any = ModelObject()
        count = calls[PSM_SEND]
        send = _psm_class()(model=model).send

        def run() -> None:
            for _ in range(count):
                send("step")

        def cleanup() -> None:
            assert model.bumps == count and model.state == _STATES[count % 3], model.state

        return run, cleanup

    def plain_trial() -> tuple[Run, Cleanup]:
        count, call = calls[PLAIN], _nothing

        def run() -> None:
            for _ in range(count):
                call("step")

        return run, _nothing

    trials: dict[str, Trial] = {
        SK_SEND: statekeep_trial,
        SK_EVENT: event_trial,
        SK_ENTITY: entity_trial,
        TR_STEP: transitions_trial,
        PSM_SEND: psm_trial,
        BY_HAND: by_hand_trial,
        PLAIN: plain_trial,
    }
    times = rounds(trials, sizes.repeats, progress, "machines in-memory transition")
    costs = CallCosts(times, calls, PLAIN)
    median, best, cost, text = costs.median, costs.best, costs.cost, costs.text

    label = "machines: in-memory transition, one guard + one action (speed vs transitions)"
    rows = []
    for rival, most, short, owner in (
        (TR_STEP, FASTER_THAN_TRANSITIONS, "transitions", "transitions'"),
        (PSM_SEND, FASTER_THAN_PSM, "python-statemachine", "python-statemachine's"),
    ):
        speedup = cost(rival) / cost(SK_SEND)
        best_speedup = cost(rival, True) / cost(SK_SEND, True)
        rows.append(
            Result(
                label,
                f"{SK_SEND}, vs {short}",
                1 / median[SK_SEND],
                cost(TR_STEP) / cost(SK_SEND),
                target=f">= {most:g}x faster than {short}",
                passed=speedup >= most,
                detail=f"{text(SK_SEND)}; {speedup:.1f}x faster than {owner} "
                f"{micros(cost(rival))} (best / best {best_speedup:.1f}x)",
            )
        )
    for name in (SK_EVENT, SK_ENTITY, TR_STEP, PSM_SEND, BY_HAND):
        rows.append(
            Result(
                label,
                name,
                1 / median[name],
                cost(TR_STEP) / cost(name),
                detail=text(name) + ("; " + _versions() if name == TR_STEP else ""),
            )
        )
    rows.append(
        Result(
            label,
            PLAIN,
            1 / median[PLAIN],
            detail=f"{micros(median[PLAIN])} a call (best {micros(best[PLAIN])}): "
            "taken off every other row",
        )
    )
    return rows


# -- 2. memory per entity, in child processes -------------------------------------------

# kind -> (label, slow: one round and no tracemalloc pass)
KINDS: dict[str, tuple[str, bool]] = {
    "sk_str": ("statekeep Entity with a plain str field (the reference)", False),
    "sk_machine": ("statekeep Entity with a machine field", False),
    "sk_sent": ("statekeep, the machine field after one entity.send each", False),
    "sk_moved": ("statekeep, the str field moved by hand (assigned, the action run)", False),
    "plain": ("a plain object with the same fields (the others' reference)", False),
    "tr_one": ("transitions, one Machine, every object added (add_model)", True),
    "tr_each": ("transitions, a Machine(model=obj) per object", True),
    "psm": ("python-statemachine, a StateMachine(model=obj) per object", True),
}


def _make(kind: str, n: int) -> Any:
    """n objects of kind, bound to their machine (what the child measures)."""
    if kind == "sk_str":
        return [PlainJob() for _ in range(n)]
    if kind == "sk_machine":
        return [Job() for _ in range(n)]
    if kind == "sk_sent":
        jobs = [Job() for _ in range(n)]
        for job in jobs:
            job.send("step")
        return jobs
    if kind == "sk_moved":
        plain_jobs = [PlainJob() for _ in range(n)]
        for plain_job in plain_jobs:
            plain_job.state = "b"
            plain_job.bump()
        return plain_jobs
    if kind == "plain":
        return [ModelObject() for _ in range(n)]
    if kind == "tr_one":
        machine = _transitions_machine(None)
        objects = [ModelObject() for _ in range(n)]
        machine.add_model(objects)
        return machine, objects
    if kind == "tr_each":
        objects = [ModelObject() for _ in range(n)]
        return objects, [_transitions_machine(o) for o in objects]
    if kind == "psm":
        cls = _psm_class()
        return [cls(model=ModelObject()) for _ in range(n)]
    raise ValueError(kind)


def child(argv: list[str]) -> None:
    """In a child process: makes n objects of kind `rounds` times; prints the
    seconds of each round, the RSS growth of the first, and (unless slow)
    tracemalloc's count of one more set."""
    kind, n, repeats = argv[0], int(argv[1]), int(argv[2])
    _make(kind, 10)  # imports, class set-up, first-call caches: not the objects'
    process = psutil.Process()
    seconds: list[float] = []
    rss = 0
    for round_ in range(repeats):
        gc.collect()
        before = process.memory_info().rss
        start = time.perf_counter()
        made = _make(kind, n)
        seconds.append(time.perf_counter() - start)
        if round_ == 0:
            gc.collect()
            rss = process.memory_info().rss - before
        del made
    traced = None
    if not KINDS[kind][1]:
        gc.collect()
        tracemalloc.start()
        made = _make(kind, n)
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del made
    print(json.dumps({"seconds": seconds, "rss": rss, "traced": traced}))


def _run_child(kind: str, n: int, repeats: int) -> dict[str, Any]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-c",
        "import sys; from benchmarks.state_machines import child; child(sys.argv[1:])",
        kind,
        str(n),
        str(repeats),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the {kind} memory child failed: {done.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


def _memory(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    n = sizes.machine_entities
    got: dict[str, dict[str, Any]] = {}
    for kind, (name, slow) in KINDS.items():
        progress(f"machines memory: {name} ({n:,} in a child process)")
        got[kind] = _run_child(kind, n, 1 if slow else sizes.repeats)

    def per(kind: str, key: str) -> float:
        return float(got[kind][key]) / n

    def made(kind: str) -> str:
        seconds = got[kind]["seconds"]
        median = statistics.median(seconds)
        tail = f", best {min(seconds):.2f} s" if len(seconds) > 1 else ", one round"
        return f"made in {median:.2f} s ({micros(median / n)} each{tail})"

    label = f"machines: {n:,} entities bound to a machine, memory and time to make"
    added = per("sk_machine", "traced") - per("sk_str", "traced")
    sent = per("sk_sent", "traced") - per("sk_moved", "traced")
    rows = [
        Result(
            label,
            KINDS["sk_str"][0],
            n / statistics.median(got["sk_str"]["seconds"]),
            detail=f"{per('sk_str', 'traced'):.0f} B an entity (tracemalloc; RSS "
            f"{per('sk_str', 'rss'):.0f} B); {made('sk_str')}",
        ),
        Result(
            label,
            KINDS["sk_machine"][0],
            n / statistics.median(got["sk_machine"]["seconds"]),
            target=f"adds <= {MOST_BYTES} B an entity",
            passed=added <= MOST_BYTES,
            detail=f"adds {added:+.1f} B an entity (tracemalloc {per('sk_machine', 'traced'):.0f}"
            f" B; RSS {per('sk_machine', 'rss'):.0f} B); {made('sk_machine')}",
        ),
        Result(
            label,
            KINDS["sk_sent"][0],
            detail=f"adds {sent:+.0f} B an entity over the str field moved by hand, until "
            f"it is saved (the transition is recorded for the save to announce; tracemalloc "
            f"{per('sk_sent', 'traced'):.0f} B, RSS {per('sk_sent', 'rss'):.0f} B); made and "
            f"sent in {statistics.median(got['sk_sent']['seconds']):.2f} s",
        ),
        Result(
            label,
            KINDS["sk_moved"][0],
            detail=f"{per('sk_moved', 'traced'):.0f} B an entity (tracemalloc; RSS "
            f"{per('sk_moved', 'rss'):.0f} B): what a validated assignment costs too; made "
            f"and moved in {statistics.median(got['sk_moved']['seconds']):.2f} s",
        ),
        Result(
            label,
            KINDS["plain"][0],
            n / statistics.median(got["plain"]["seconds"]),
            detail=f"{per('plain', 'traced'):.0f} B an object (tracemalloc; RSS "
            f"{per('plain', 'rss'):.0f} B); {made('plain')}",
        ),
    ]
    for kind in ("tr_one", "tr_each", "psm"):
        rows.append(
            Result(
                label,
                KINDS[kind][0],
                n / statistics.median(got[kind]["seconds"]),
                detail=f"adds {per(kind, 'rss') - per('plain', 'rss'):,.0f} B an object "
                f"(RSS, over the plain object's); {made(kind)}",
            )
        )
    return rows


# -- 3. store.send against store.save -----------------------------------------------------

SAVE = "entity.state = Switch.on; store.save(entity) (the reference)"
SEND = "store.send(entity, 'flip') (send + save, one transaction)"
SEND_THEN_SAVE = "entity.send('flip'); store.save(entity) (no transaction around them)"


def _template(workdir: str, name: str, n: int) -> str:
    """A SQLite file holding n new lamps (made once; each trial copies it)."""
    path = os.path.join(workdir, f"{name}_template.db")
    remove_db(path)
    with statekeep.open(f"sqlite:///{path}") as store:
        store.save_many(_lamps(n))
    return path


def _copy(template: str, path: str) -> str:
    remove_db(path)
    shutil.copyfile(template, path)
    with contextlib.suppress(FileNotFoundError):
        shutil.copyfile(template + "-wal", path + "-wal")
    return f"sqlite:///{path}"


def _stored(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    n = sizes.machine_stored
    template = _template(workdir, "machines_stored", n)
    path = os.path.join(workdir, "machines_stored.db")

    def trial(name: str) -> Trial:
        def make() -> tuple[Run, Cleanup]:
            store = statekeep.open(_copy(template, path))
            lamps = list(store.find(Lamp))
            assert len(lamps) == n
            send, save = store.send, store.save

            if name == SEND:

                def run() -> None:
                    for lamp in lamps:
                        send(lamp, "flip")

            elif name == SAVE:

                def run() -> None:
                    for lamp in lamps:
                        lamp.state = Switch.on
                        save(lamp)

            else:

                def run() -> None:
                    for lamp in lamps:
                        lamp.send("flip")
                        save(lamp)

            def cleanup() -> None:
                assert store.count(Lamp, state=Switch.on) == n
                store.close()
                remove_db(path)

            return run, cleanup

        return make

    times = rounds(
        {name: trial(name) for name in (SAVE, SEND, SEND_THEN_SAVE)},
        sizes.repeats,
        progress,
        "machines store.send vs store.save",
    )
    remove_db(template)
    median = {name: statistics.median(t) for name, t in times.items()}
    best = {name: min(t) for name, t in times.items()}
    label = f"machines: stored transition vs a save of the same change ({n:,}, SQLite file)"
    rows = [
        Result(
            label,
            SAVE,
            n / median[SAVE],
            1.0,
            detail=f"{micros(median[SAVE] / n)} a call (best {micros(best[SAVE] / n)})",
        )
    ]
    for name in (SEND, SEND_THEN_SAVE):
        # each round's pair ran back to back: judge the median of the paired ratios
        paired = sorted(t / s for t, s in zip(times[name], times[SAVE], strict=True))
        overhead = statistics.median(paired) - 1
        detail = (
            f"{overhead:+.1%} over save (median of {len(paired)} paired rounds, "
            f"{paired[0] - 1:+.1%} to {paired[-1] - 1:+.1%}; best / best "
            f"{best[name] / best[SAVE] - 1:+.1%}); {micros(median[name] / n)} a call"
        )
        target: dict[str, Any] = {}
        if name == SEND:
            target = {
                "target": f"overhead <= {MOST_OVERHEAD:.0%}",
                "passed": overhead <= MOST_OVERHEAD,
            }
        rows.append(
            Result(
                label, name, n / median[name], median[SAVE] / median[name], detail=detail, **target
            )
        )
    return rows


# -- 4. transition_many --------------------------------------------------------------------

MANY = "store.transition_many(Lamp, 'flip', state=Switch.off)"
LOOP = "find, then entity.send + store.save each (a commit each; the reference)"
LOOP_IN_TX = "find, then entity.send + store.save each, in one store.transaction()"
SAVE_MANY = "by hand: find, entity.send each, one store.save_many"


def _many(sizes: Sizes, workdir: str, progress: Progress) -> list[Result]:
    n = sizes.machine_entities
    progress(f"machines transition_many: storing {n:,} lamps")
    template = _template(workdir, "machines_many", n)
    path = os.path.join(workdir, "machines_many.db")

    def trial(name: str) -> Trial:
        def make() -> tuple[Run, Cleanup]:
            store = statekeep.open(_copy(template, path))
            store.count(Lamp)
            moved: list[int] = []

            def found() -> list[Lamp]:
                return list(store.find(Lamp, state=Switch.off))

            if name == MANY:

                def run() -> None:
                    moved.append(store.transition_many(Lamp, "flip", state=Switch.off).moved)

            elif name == SAVE_MANY:

                def run() -> None:
                    lamps = found()
                    for lamp in lamps:
                        lamp.send("flip")
                    store.save_many(lamps)

            else:
                transaction = store.transaction if name == LOOP_IN_TX else contextlib.nullcontext

                def run() -> None:
                    lamps = found()
                    save = store.save
                    with transaction():
                        for lamp in lamps:
                            lamp.send("flip")
                            save(lamp)

            def cleanup() -> None:
                assert moved in ([], [n]), moved
                assert store.count(Lamp, state=Switch.on) == n
                store.close()
                remove_db(path)

            return run, cleanup

        return make

    times = rounds(
        {name: trial(name) for name in (LOOP, MANY, LOOP_IN_TX, SAVE_MANY)},
        sizes.repeats,
        progress,
        "machines transition_many",
        slow={LOOP},  # a commit each: ten times slower
        slow_repeats=sizes.slow_repeats,
    )
    remove_db(template)
    median = {name: statistics.median(t) for name, t in times.items()}
    best = {name: min(t) for name, t in times.items()}
    label = f"machines: transition_many of {n:,} entities (SQLite file), vs a loop"
    rows = []
    for name in (LOOP, MANY, LOOP_IN_TX, SAVE_MANY):
        speedup = median[LOOP] / median[name]
        rows.append(
            Result(
                label,
                name,
                n / median[name],
                speedup,
                detail=f"{median[name]:.2f} s (best {best[name]:.2f}; median of "
                f"{len(times[name])})"
                + ("" if name == LOOP else f"; {speedup:.1f}x faster than the loop"),
            )
        )
    return rows
