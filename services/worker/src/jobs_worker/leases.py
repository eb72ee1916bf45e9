"""The worker loop's lease keeping: heartbeats that renew the leases of the jobs it holds (and learn of
cancels and lost leases), the release of claims whose reply was lost, and the reaper of other workers'
expired leases."""

from __future__ import annotations

import logging
import os

from jobs_core.model import JobError
from jobs_core.store import ClaimedJob

from jobs_worker.loop_state import WorkerState, job_fields
from jobs_worker.slot import monotonic

log = logging.getLogger("jobs.worker")

CANCEL_GRACE_SECONDS = 1.0  # a cancelled task may stop by itself this long before it is killed

WORKER_LOST = JobError("WorkerLost", "the worker running this attempt stopped heartbeating (killed or lost)")


class LeaseKeeping(WorkerState):
    """Heartbeats, the release of unknown claims after a Redis error, and the reaper."""

    def _heartbeat(self, now: float) -> None:
        self.next_heartbeat = now + self.heartbeat_interval
        held: list[ClaimedJob] = [s.running.job for s in self._busy() if s.running]
        held += [o.job for o in self.unsaved]
        status = {
            "id": self.worker_id, "queue": self.store.queues[0], "queues": list(self.store.queues),
            "tasks": self.offered, "once": self.once, "pid": os.getpid(),
            "concurrency": self.concurrency, "busy": len(self._busy()), "started_at": self.started,
            "jobs": [j.id for j in held], "stopping": self.stopping,
        }
        ttl = max(3, int(self.heartbeat_interval * 3 + 1))
        cancel, lost = self.store.heartbeat(self.worker_id, [(j.id, j.attempt) for j in held], status, ttl)
        self.metrics.busy_slots(len(self._busy()))
        if self.recheck_claims:
            self._release_unknown_claims(held)
        for slot in self._busy():
            running = slot.running
            assert running is not None
            if running.job.id in lost:
                log.warning("lease lost; stopping the job here", extra=job_fields(running.job))
                self.metrics.lost(running.job.task)
                self.spans.ended(running.job, "lost")
                slot.kill()
                slot.wait_ready()
            elif running.job.id in cancel and running.cancel_at is None:
                slot.cancel_flag.value = 1
                running.cancel_at = monotonic() + CANCEL_GRACE_SECONDS
        if lost:
            self.unsaved = [o for o in self.unsaved if o.job.id not in lost]

    def _release_unknown_claims(self, held: list[ClaimedJob]) -> None:
        """After a Redis error: a claim that ran in Redis but whose reply was lost with the connection leased
        jobs to this worker that it never heard of. Hand them back (attempt not charged) rather than leave
        them to the reaper, which would charge them an attempt (and fail a max_attempts=1 job unrun)."""
        known = {(j.id, j.attempt) for j in held}
        strays = [(i, a) for i, a in self.store.leased_to(self.worker_id) if (i, a) not in known]
        for job_id, attempt in strays:
            self.store.finish(self.worker_id, job_id, attempt, "handback")
        self.recheck_claims = False
        if strays:
            log.warning("handed back jobs claimed by a call whose reply was lost",
                        extra={"jobs": [i for i, _ in strays]})

    def _reap(self, now: float) -> None:
        self.next_reap = now + self.settings.reaper_interval_seconds
        if now >= self.next_prune:  # every known queue, not only ours: a pool whose workers all died (or
            # that scaled to zero) still gets its expired leases handed back and its cap slots freed
            self.reap_queues = list(dict.fromkeys([*self.store.queues, *self.store.queue_names()]))
        for queue in self.reap_queues:
            report = self.store.reap(queue=queue)
            if report.ran and (report.requeued or report.failed):
                log.warning("reaper handed back jobs of lost workers", extra={
                    "queue": queue, "requeued": list(report.requeued), "failed": list(report.failed)})
                self.spans.reaped([*report.requeued, *report.failed], WORKER_LOST)
            if report.ran:
                self.metrics.reaped(queue, len(report.requeued), len(report.failed))
        if now >= self.next_prune:
            self.next_prune = now + 60
            self.store.prune_indexes()
            self.store.retire_stale_tasks()
