"""The worker loop's finish path: store attempts' outcomes in one round trip (claiming for the freed slots in
the same script), keep them while Redis is down, and hand running jobs back when stopping."""

from __future__ import annotations

import logging
import time

from jobs_core import tracing
from jobs_core.store import Finish

from jobs_worker.loop_state import REDIS_DOWN, WorkerState, job_fields
from jobs_worker.outcomes import Outcome

log = logging.getLogger("jobs.worker")


class Finishing(WorkerState):
    """Storing outcomes (with the refill claim) and the hand-back of running jobs."""

    def _save(self, ended: list[Outcome], refill: bool = False) -> None:
        """Write outcomes in one round trip, claiming jobs for the free slots in the same script when
        ``refill``; keep the outcomes for later if Redis is unreachable."""
        pending = [o for o in ended if o not in self.unsaved]
        batch = [*self.unsaved, *pending]
        self.unsaved = batch  # kept until Redis has them
        free = self._free() if refill else []
        for o in batch:
            if o.final_message is not None:
                self.store.set_progress(self.worker_id, o.job.id, o.job.attempt, None, o.final_message)
        finishes = [Finish(o.job.id, o.job.attempt, o.kind, o.result, o.error, o.retry_delay) for o in batch]
        with tracing.current(self.spans.span_of([o.job for o in batch])):
            statuses, claimed = self.store.finish_and_claim(self.worker_id, finishes, len(free))
        self.unsaved = []
        self.claimed_short = refill and len(claimed) < len(free)  # the queues were empty: see _fill_slots
        for o, status in zip(batch, statuses, strict=True):
            self.spans.ended(o.job, o.kind if status is not None else "lost", o.error, o.result)
            if status is None:
                self.metrics.lost(o.job.task)
                log.warning("attempt was no longer ours; outcome dropped",
                            extra={**job_fields(o.job), "outcome": o.kind})
            else:
                self.metrics.outcome(o.job.task, o.kind, o.job.queue)
                if log.isEnabledFor(logging.INFO):
                    log.info("job attempt ended", extra={**job_fields(o.job), "outcome": o.kind, "status": status,
                                                         "error": o.error.type if o.error else None})
        if claimed:
            self._dispatch(free, claimed)
        elif not self._busy():
            self.pod_cost.set_busy(False)

    def _hand_back_all(self) -> None:
        """Stop running jobs and put them back at the head of the queue, attempt not charged."""
        ended: list[Outcome] = []
        for slot in self._busy():
            running = slot.running
            assert running is not None
            slot.running = None
            if slot.alive and slot.process is not None:
                slot.process.kill()
            ended.append(Outcome(running.job, "handback"))
        for attempt in range(3):
            try:
                self._save(ended)
                log.info("handed back running jobs", extra={"jobs": [o.job.id for o in ended]})
                return
            except REDIS_DOWN as e:
                ended = []
                if attempt == 2:
                    log.error("could not hand back jobs; the reaper will recover them", extra={"error": str(e)})
                time.sleep(0.5)
