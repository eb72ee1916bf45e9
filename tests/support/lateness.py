"""How late a timer fires on this machine right now: the scheduling delay a recovery bound must allow for.

A recovery (a SIGKILLed worker's job running again) is a chain of timers in several processes — the
lease expiring in Redis, a reaper pass every interval, a worker waking to claim, the test's reader waking
to see it. On an idle machine each fires within a millisecond of its time; with a load average of 13 on 2
cores, a runnable process waits its turn for hundreds of milliseconds. A bound written as configured
intervals plus a fixed slack is then either too tight (fails under load) or too loose (passes a broken
reaper). :class:`TimerLateness` measures the delay instead, during the scenario, with a timer of its own
(every ``period``: sleep, then see how much later than asked it woke), so a bound can be the intervals
plus a slack for the claim plus a few timer delays *as measured right then*; on an idle machine that is
the bare intervals plus the slack, as tight as before.
"""

from __future__ import annotations

import bisect
import threading
import time


class TimerLateness:
    """A daemon thread sampling timer lateness every ``period`` s until :meth:`stop` (or use ``with``)."""

    def __init__(self, period: float = 0.05) -> None:
        self.period = period
        self.samples: list[tuple[float, float]] = []  # (monotonic time of waking, seconds late), in order
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="timer-lateness", daemon=True)

    def start(self) -> TimerLateness:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def __enter__(self) -> TimerLateness:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            asked = time.monotonic()
            time.sleep(self.period)
            woke = time.monotonic()
            self.samples.append((woke, max(0.0, woke - asked - self.period)))

    def worst(self, start: float = float("-inf"), end: float = float("inf")) -> float:
        """The largest lateness seen between ``start`` and ``end`` (monotonic); the first sample after ``end``
        counts too: it measured a wait that began inside the window."""
        samples = list(self.samples)
        times = [t for t, _ in samples]
        lo, hi = bisect.bisect_left(times, start), bisect.bisect_right(times, end) + 1
        return max((late for _, late in samples[lo:hi]), default=0.0)


def heartbeat_interval(lease_seconds: float) -> float:
    """A worker's heartbeat interval for a lease (``jobs_worker.worker.Worker``: lease / 3, at least 0.2 s).
    An idle worker blocks on its wake list at most until its next heartbeat, and runs its reaper when it
    wakes: a reaper pass comes every max(reaper interval, heartbeat interval) at worst."""
    return max(0.2, lease_seconds / 3)


#: timer delays on the recovery path: the reaper's loop waking, the claiming worker waking, the test's
#: reader seeing the event
DELAYS_ON_THE_PATH = 3


def recovery_bound(lease_seconds: float, reaper_interval: float, claim_slack: float, late: float) -> float:
    """Seconds from a worker's SIGKILL to its job's next claim, at worst: the lease runs out (at most a full
    lease after the kill), the next reaper pass hands the job back, a worker claims it (``claim_slack``),
    plus :data:`DELAYS_ON_THE_PATH` timer delays as late as ``late`` (measured by :class:`TimerLateness`
    during the recovery; ~0 on an idle machine)."""
    reaper_period = max(reaper_interval, heartbeat_interval(lease_seconds))
    return lease_seconds + reaper_period + claim_slack + DELAYS_ON_THE_PATH * late
