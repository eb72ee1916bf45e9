"""The worker loop's claiming: look for work when slots are idle, wait for it, hand claimed jobs to slots.

An idle worker blocks on its queues' wake list with its claim pipelined behind the wait; a partially busy
one waits for a wake token on a second connection (:mod:`jobs_worker.waker`) beside its children's pipes.
"""

from __future__ import annotations

import logging

from jobs_core.store import ClaimedJob

from jobs_worker.loop_state import REDIS_DOWN, WorkerState, job_fields
from jobs_worker.slot import Slot, monotonic
from jobs_worker.supervision import PROGRESS_INTERVAL_SECONDS

log = logging.getLogger("jobs.worker")

BUSY_POLL_SECONDS = 0.05  # while some slots run and the queue is empty, look for work this often when the
# second connection's wait (jobs_worker.waker) cannot be made
BLOCK_SECONDS = 1.0  # longest blocking wait on the queue when every slot is idle
# a partially busy worker blocks for a wake token once its oldest running job has run this long: a lone short
# job ends before, and the idle worker's own wait follows (a job submitted meanwhile waits at most this long)
ARM_AFTER_SECONDS = 0.01


class ClaimLoop(WorkerState):
    """Claiming jobs for idle slots, waiting for work, and handing what a claim got to the slots."""

    def _fill_slots(self) -> bool:
        """Give queued jobs to idle slots; block briefly for work (a wake token) when every slot is idle, or
        wait for one on the second connection (the waker) beside the children when some are busy."""
        free = self._free()
        self.waker.overdue(monotonic())
        woke = self.waker.take()  # the partially busy worker's wait came back: a token, its timeout, or unknown
        if woke is not None and (not free or (self.once and self.claimed_any)):
            self.waker.pass_on(woke)  # its slots filled meanwhile: the token is another worker's
            return False
        if not free or (self.once and self.claimed_any):
            return False
        idle = len(free) == len(self.slots)
        if woke is not None:
            # after a wait that may have taken a token: the claim passes one on when it fills up with work left
            # (the wake rule, includes/claim_batch.lua), as an idle worker's claim after its wait does
            self.claimed_short = self.waited_empty = False
            return self._dispatch_claimed(free, self.store.finish_and_claim(self.worker_id, (), -len(free))[1])
        if self.waker.pending:
            return False  # its reply wakes the loop (_collect waits on it): no claim meanwhile
        if self.claimed_short:
            # the last claim emptied the queues: claiming again at once finds nothing but costs a Redis round
            # trip, during which a job just started may end (its result then waits in the pipe: issue 16's
            # round trip). Busy: block for a wake token on the second connection, beside the children (a
            # job queued since left a token: it was queued on an empty list), once the oldest running job
            # has run ARM_AFTER_SECONDS: a lone short job ends before, and the idle worker's wait, its
            # claim pipelined behind it, follows (a token the second connection took would cost the next
            # job a round trip more). Without that connection, wait for the children first (at most
            # BUSY_POLL_SECONDS), then look again. Idle: straight to the blocking wait, whose claim follows it
            if not idle:
                now = monotonic()
                if now < self._arm_at():
                    return False  # (claimed_short kept: _wait_time wakes the loop then)
                self.claimed_short = False
                self.waker.arm(now)
                return False
            self.claimed_short = False
            self.waited_empty = True
        self.claimed_short = False
        # an idle worker whose wait just ended with an empty claim goes straight back to waiting (a wake
        # token pushed since is in its wake list, so the wait returns at once)
        jobs = [] if idle and self.waited_empty else self.store.claim(self.worker_id, len(free))
        self.waited_empty = False
        if not jobs and idle:
            timeout = min(BLOCK_SECONDS, max(0.05, self.next_heartbeat - monotonic()))
            # the claim is pipelined behind the blocking wait: Redis runs it as soon as a token arrives
            jobs = self.store.wait_and_claim(self.worker_id, len(free), timeout)
            self.waited_empty = not jobs
        return self._dispatch_claimed(free, jobs)

    def _dispatch_claimed(self, free: list[Slot], jobs: list[ClaimedJob]) -> bool:
        """Start what a claim for ``free`` slots got; whether it got any."""
        if not jobs:
            self.claimed_short = True
            return False
        self.claimed_short = len(jobs) < len(free)
        self._dispatch(free, jobs)
        return True

    def _settle_waker(self) -> None:
        """Stopping: cut the second connection's wait short; a token it took is passed on, not claimed."""
        if not self.waker.pending and self.waker.news is None:
            return
        try:
            woke = self.waker.settle()
            if woke is not None:
                self.waker.pass_on(woke)
        except REDIS_DOWN as e:
            log.warning("could not pass on a wake token; idle workers look for work at their wait's timeout",
                        extra={"error": str(e)})

    def _dispatch(self, free: list[Slot], jobs: list[ClaimedJob]) -> None:
        """Hand claimed jobs to idle slots (never more jobs than ``free`` slots: claims ask for that many)."""
        was_idle = len(free) == len(self.slots)
        now = monotonic()
        self.claimed_any = self.claimed_any or bool(jobs)
        jobs = self.spans.claimed(jobs)
        for slot, job in zip(free, jobs, strict=False):
            slot.send(job, now, self.settings.default_timeout_seconds)
            self.metrics.started(job.task, job.queue)
            if log.isEnabledFor(logging.INFO):  # the fields cost more than the level check
                log.info("job started", extra={**job_fields(job), "worker": self.worker_id})
        if was_idle and jobs:
            self.pod_cost.set_busy(True)

    def _arm_at(self) -> float:
        """When a partially busy worker starts its wait for a wake token: ARM_AFTER_SECONDS after its oldest
        running job started (see _fill_slots)."""
        return min(s.running.started for s in self._busy() if s.running) + ARM_AFTER_SECONDS

    def _wait_time(self) -> float:
        """How long to wait for children when nothing else is due."""
        until_beat = max(0.0, self.next_heartbeat - monotonic())
        if self._free() and not self.waker.pending:  # (the waker's reply ends the wait when work comes)
            if self.claimed_short and self._busy():
                return max(0.0, min(until_beat, self._arm_at() - monotonic()))  # then the waker is armed
            return min(BUSY_POLL_SECONDS, until_beat)
        deadlines = [s.running.deadline for s in self._busy() if s.running]
        cancels = [s.running.cancel_at for s in self._busy() if s.running and s.running.cancel_at]
        soonest = min([*deadlines, *cancels], default=monotonic() + until_beat)
        return max(0.0, min(until_beat, soonest - monotonic(), PROGRESS_INTERVAL_SECONDS))

    def _queue_empty(self) -> bool:
        """No waiting or delayed job in this worker's queues (asked after a claim found nothing, so parked
        jobs left are of tasks it lacks: not its to wait for; a paused queue's jobs neither)."""
        counts = self.store.queue_counts(self.store.queues).values()
        return all(c["queued"] == 0 and c["delayed"] == 0 for c in counts)
