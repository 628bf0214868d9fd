"""State machines bound to entity fields.

    class Flow(statekeep.Machine):
        idle = State(initial=True)
        active, done = State(), State(final=True)
        start = idle.to(active, cond="ready")
        end = active.to(done)

    class Job(statekeep.Entity):
        state: Flow = Flow.idle
        ready: bool = False

    job.send("start")            # in memory: TransitionError when refused
    store.send(job, "end")       # sent and saved in one transaction

See docs/machines.md.
"""

from ._define import State, Transition, TransitionSpec
from ._machine import Machine
from ._records import Transitioned, TransitionRecord, history_class
from ._stored import TransitionReport, asend_stored, history, send_stored, transition_many

__all__ = [
    "Machine",
    "State",
    "Transition",
    "TransitionRecord",
    "TransitionReport",
    "TransitionSpec",
    "Transitioned",
    "asend_stored",
    "history",
    "history_class",
    "send_stored",
    "transition_many",
]
