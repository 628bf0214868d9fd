"""The timelines in docs/flow.md, drawn from a real run (`make docs`).

`python docs/_timelines.py` runs a Throttle and a Debounce on the real clock
and prints text timelines of when calls went through; with a path it rewrites
the block between the `<!-- timelines -->` markers of that file. Columns are
coarse (50 ms) so that a run on a loaded machine draws the same picture.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

from statekeep.flow import Debounce, Throttle

COLUMN = 0.05  # seconds a character stands for
START, END = "<!-- timelines -->", "<!-- /timelines -->"


def throttle_timeline() -> str:
    """12 callers arrive at once at a Throttle(rate=10, burst=3)."""
    throttle = Throttle(rate=10, burst=3)
    admitted: list[float] = []
    lock = threading.Lock()
    start = time.monotonic()

    def call() -> None:
        throttle.acquire()
        with lock:
            admitted.append(time.monotonic() - start)

    callers = [threading.Thread(target=call) for _ in range(12)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    rows = ["Throttle(rate=10, burst=3): 12 calls at t=0, each # one admitted"]
    for tenth in range(11):
        n = sum(1 for t in admitted if int(t / 0.1 + 0.2) == tenth)
        rows.append(f"  t={tenth * 100:4d} ms  {'#' * n}")
    return "\n".join(rows)


def debounce_timeline() -> str:
    """Bursts of calls into a Debounce(wait=0.2, max_wait=0.65) (no call
    within 50 ms of an invocation, so the picture does not depend on jitter)."""
    invoked: list[tuple[float, int]] = []
    start = time.monotonic()
    debounced = Debounce(lambda n: invoked.append((time.monotonic() - start, n)), 0.2, 0.65)
    calls = [0.0, 0.1, 0.2, 0.3, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7]
    for n, moment in enumerate(calls):
        delay = start + moment - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        debounced(n)
    time.sleep(0.4)
    debounced.close()
    width = int(2.2 / COLUMN)
    lane_calls = [" "] * width
    lane_invoked = [" "] * width
    for moment in calls:
        lane_calls[_column(moment)] = "|"
    for moment, _ in invoked:
        lane_invoked[min(width - 1, _column(moment))] = "*"
    ruler = "".join("+" if i % 10 == 0 else "." for i in range(width))
    args = ", ".join(f"call {n}" for _, n in invoked)
    return "\n".join(
        [
            "Debounce(fn, wait=0.2, max_wait=0.65): | a call, * an invocation (50 ms a column)",
            f"  calls    {''.join(lane_calls)}",
            f"  invoked  {''.join(lane_invoked)}",
            f"  seconds  {ruler}",
            "           0         0.5       1.0       1.5       2.0",
            f"  invoked with the arguments of: {args}",
        ]
    )


def _column(moment: float) -> int:
    """The column of a moment: a real event comes late, never early, so a
    column holds from 10 ms before its start to 40 ms after."""
    return int(moment / COLUMN + 0.2)


def timelines() -> str:
    drawn = f"{throttle_timeline()}\n\n{debounce_timeline()}"
    return "```text\n" + "\n".join(line.rstrip() for line in drawn.splitlines()) + "\n```"


def rewrite(path: Path) -> None:
    text = path.read_text()
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{START}\n{timelines()}\n{END}{tail}")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        rewrite(Path(sys.argv[1]))
    else:
        print(timelines())
